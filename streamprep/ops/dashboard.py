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

from streamprep.ops import logs
from streamprep.values.metrics import Snapshot
from streamprep.values.redact import printable

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
        ("runs/s", "right"),  # model runs: one per frame with regions = full, per region otherwise
        ("drops", "right"),
        ("age ms", "right"),
        ("reconn", "right"),
    ):
        sources.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]
    for s in cur.sources:
        p = before.get(s.source)
        sources.add_row(
            Text(printable(s.source)),
            Text(s.state, style=_STATE_STYLE.get(s.state, "")),
            _rate(s.decoded, p.decoded if p else None, dt),
            _rate(s.sampled, p.sampled if p else None, dt),
            _rate(s.processed, p.processed if p else None, dt),
            _rate(s.model_runs, p.model_runs if p else None, dt),
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
            Text(printable(k.name)),
            Text("yes" if k.connected else "no", style="green" if k.connected else "red"),
            _rate(k.sent, was.sent if was else None, dt),
            str(k.outbox),
            str(k.dropped),
        )
    errors = Text("recent errors\n", style="bold")
    for line in cur.errors[-4:] or ("none",):
        errors.append(printable(line[:200]) + "\n", style="red" if line != "none" else "dim")
    results = _rate(cur.frames, prev.frames if prev else None, dt)
    header = Text.assemble((title, "bold cyan"), f"   {len(cur.sources)} sources   {results} results/s")
    return Group(header, sources, pipeline, sinks, errors)


async def show(snapshot: Callable[[], Awaitable[Snapshot]], console: Console, title: str, period: float = 1.0) -> None:
    """Redraw from ``snapshot()`` every ``period`` seconds until cancelled; the last frame drawn is the state
    at the end. Log lines written meanwhile go above the dashboard, not through it."""
    prev: Snapshot | None = None
    cur = await snapshot()
    live = Live(render(cur, prev, title), console=console, refresh_per_second=4, transient=False, redirect_stderr=True)
    with live, logs.following_stderr():
        try:
            while True:
                await asyncio.sleep(period)
                prev, cur = cur, await snapshot()
                live.update(render(cur, prev, title))
        finally:
            with contextlib.suppress(Exception):
                live.update(render(await snapshot(), prev, title), refresh=True)


def dashboard_companion(console: Console) -> Callable[[Any], Any]:
    """``run --dashboard``: draw the pipeline's own snapshots."""

    async def run(pipeline: Any) -> None:
        async def snap() -> Snapshot:
            result: Snapshot = pipeline.snapshot()
            return result

        await show(snap, console, "streamprep run")

    return run


async def top(path: Path, console: Console, period: float = 1.0) -> bool:
    """``streamprep top``: draw a running daemon's snapshots, read from its status socket, until the daemon
    goes away (False) or the user stops it (True)."""
    from streamprep.ops.service import read_status

    last: list[Snapshot] = []

    async def snap() -> Snapshot:
        try:
            last[:] = [await read_status(path)]
        except (OSError, TimeoutError, ValueError):
            if not last:
                raise
            raise _Gone from None
        return last[0]

    try:
        await show(snap, console, f"streamprep top  {path}", period)
    except asyncio.CancelledError:
        return True
    except _Gone:
        return False
    return True


class _Gone(Exception):
    """The daemon's status socket stopped answering."""


def progress_companion(console: Console) -> Callable[[Any], Any]:
    """Replaying files in an interactive terminal: a progress bar per file (position of duration, decoded
    frames per second, time left), log lines above them."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    async def run(pipeline: Any) -> None:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[where]}"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
        )
        progress = Progress(*columns, console=console, redirect_stderr=True, transient=False)
        bars: dict[str, Any] = {}
        before: dict[str, tuple[float, int]] = {}
        with progress, logs.following_stderr():
            try:
                while True:
                    _update(progress, bars, before, pipeline.snapshot())
                    await asyncio.sleep(0.25)
            finally:
                _update(progress, bars, before, pipeline.snapshot())

    return run


def _update(progress: Any, bars: dict[str, Any], before: dict[str, tuple[float, int]], snap: Snapshot) -> None:
    for s in snap.sources:
        if not s.duration_s:
            continue
        bar = bars.get(s.source)
        if bar is None:
            bar = bars[s.source] = progress.add_task(s.source, total=s.duration_s, where="", rate="")
        at, decoded = before.get(s.source, (snap.at, s.decoded))
        rate = (s.decoded - decoded) / (snap.at - at) if snap.at - at >= 1.0 else None
        if rate is not None or s.source not in before:
            before[s.source] = (snap.at, s.decoded)
        done = s.state in ("finished", "failed", "stopped")
        position = s.duration_s if s.state == "finished" else min(s.position_s, s.duration_s)
        where = f"{position:.1f}/{s.duration_s:.1f} s" + (f" {s.state}" if done else "")
        fields = {"where": where} | ({"rate": f"{rate:.0f} fps"} if rate is not None else {})
        progress.update(bar, completed=s.duration_s if s.state == "finished" else s.position_s, **fields)
