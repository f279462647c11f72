"""The live terminal dashboard (rich), drawn from snapshots: ``run --dashboard`` and ``streamprep top``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from streamprep.metrics import Snapshot

_CLOCK = {"camera": "cam", "arrival": "arr", "decode": "dec"}  # what the age counts from
_STATE_STYLE = {"online": "green", "connecting": "yellow", "stalled": "red", "offline": "red", "failed": "bold red"}


def _rate(cur: float, prev: float | None, dt: float) -> str:
    if prev is None or dt <= 0:
        return "-"
    return f"{max(0.0, cur - prev) / dt:.1f}"


def render(cur: Snapshot, prev: Snapshot | None, title: str = "streamprep") -> RenderableType:
    """One screen: sources, pipeline, sinks, recent errors. Fits 80 columns."""
    dt = cur.at - prev.at if prev is not None else 0.0
    before = {s.source: s for s in prev.sources} if prev is not None else {}
    sources = Table(title="sources", title_justify="left", expand=True, pad_edge=False, box=None)
    for name, justify in (
        ("source", "left"),
        ("state", "left"),
        ("in/s", "right"),
        ("smp/s", "right"),
        ("out/s", "right"),
        ("drops", "right"),
        ("age ms", "right"),
        ("reconn", "right"),
    ):
        sources.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]
    for s in cur.sources:
        p = before.get(s.source)
        sources.add_row(
            s.source,
            Text(s.state, style=_STATE_STYLE.get(s.state, "")),
            _rate(s.decoded, p.decoded if p else None, dt),
            _rate(s.sampled, p.sampled if p else None, dt),
            _rate(s.processed, p.processed if p else None, dt),
            str(s.dropped),
            f"{s.age_p50_ms:.0f} {_CLOCK.get(s.capture_clock, '')}".rstrip(),
            str(s.reconnects),
        )
    pipeline = Text.assemble(
        ("pipeline  ", "bold"),
        f"queue {cur.queued}  batch fill {cur.batch_fill:.1f}  ",
        f"preprocess p50 {cur.preprocess_p50_ms:.1f} p95 {cur.preprocess_p95_ms:.1f} ms  ",
        f"inference p50 {cur.inference_p50_ms:.1f} p95 {cur.inference_p95_ms:.1f} ms",
    )
    sinks = Table(title="sinks", title_justify="left", expand=True, pad_edge=False, box=None)
    for name in ("sink", "connected", "sent/s", "outbox", "dropped"):
        sinks.add_column(name, no_wrap=True, overflow="ellipsis", justify="left" if name == "sink" else "right")
    before_sinks = {k.name: k for k in prev.sinks} if prev is not None else {}
    for k in cur.sinks:
        was = before_sinks.get(k.name)
        sinks.add_row(
            k.name,
            Text("yes" if k.connected else "no", style="green" if k.connected else "red"),
            _rate(k.sent, was.sent if was else None, dt),
            str(k.outbox),
            str(k.dropped),
        )
    errors = Text("recent errors\n", style="bold")
    for line in cur.errors[-4:] or ("none",):
        errors.append(line[:200] + "\n", style="red" if line != "none" else "dim")
    results = _rate(cur.frames, prev.frames if prev else None, dt)
    header = Text.assemble((title, "bold cyan"), f"   {len(cur.sources)} sources   {results} results/s")
    return Group(header, sources, pipeline, sinks, errors)


async def show(snapshot: Callable[[], Awaitable[Snapshot]], console: Console, title: str, period: float = 1.0) -> None:
    """Redraw from ``snapshot()`` every ``period`` seconds until cancelled."""
    prev: Snapshot | None = None
    cur = await snapshot()
    with Live(render(cur, prev, title), console=console, refresh_per_second=4, transient=False) as live:
        while True:
            await asyncio.sleep(period)
            prev, cur = cur, await snapshot()
            live.update(render(cur, prev, title))


def dashboard_companion(console: Console) -> Callable[[Any], Any]:
    """``run --dashboard``: draw the pipeline's own snapshots."""

    async def run(pipeline: Any) -> None:
        async def snap() -> Snapshot:
            result: Snapshot = pipeline.snapshot()
            return result

        await show(snap, console, "streamprep run")

    return run


async def top(path: Path, console: Console, period: float = 1.0) -> None:
    """``streamprep top``: draw a running daemon's snapshots, read from its status socket."""
    from streamprep.service import read_status

    with contextlib.suppress(asyncio.CancelledError):
        await show(lambda: read_status(path), console, f"streamprep top  {path}", period)
