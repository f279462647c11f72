"""Counts over workers and their restarts: the exit status of the whole, merged snapshots, settled counts."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from streamprep.values.frames import DropReason, SourceState
from streamprep.values.metrics import HistogramSnapshot, SinkSnapshot, Snapshot, SourceSnapshot, Timing

# -- merging snapshots


@dataclass(frozen=True)
class Carried:
    """What earlier runs of a restarted worker counted, per source: added to the current run's counts."""

    sources: dict[str, SourceSnapshot] = field(default_factory=dict)


def add_source(a: SourceSnapshot, b: SourceSnapshot) -> SourceSnapshot:
    drops = {k: a.drops.get(k, 0) + b.drops.get(k, 0) for k in {*a.drops, *b.drops}}
    return dataclasses.replace(
        b,
        decoded=a.decoded + b.decoded,
        sampled=a.sampled + b.sampled,
        dropped=a.dropped + b.dropped,
        processed=a.processed + b.processed,
        corrupt=a.corrupt + b.corrupt,
        reconnects=a.reconnects + b.reconnects,
        drops=drops,
        sink_dropped=a.sink_dropped + b.sink_dropped,
        sink_drops={k: a.sink_drops.get(k, 0) + b.sink_drops.get(k, 0) for k in {*a.sink_drops, *b.sink_drops}},
    )


def settle(
    source: SourceSnapshot,
    why: str,
    written: int | None = None,
    delivered: int | None = None,
    state: SourceState = SourceState.FAILED,
) -> SourceSnapshot:
    """A source of a worker that died, as its last snapshot said (it may be a second old), made to add up
    with what the supervisor saw: ``written`` results were written for it (then that is its ``processed``);
    ``delivered`` (a file the next run resumes): its sampled frames up to the last one written, those after
    being sampled again by the next run, and of the drops the snapshot lists only as many as fit before.
    Sampled frames neither processed nor dropped for a reason were in flight: counted as stopped, so
    ``sampled = processed + dropped`` holds. One more reconnect."""
    processed = source.processed if written is None else written
    drops = {k: v for k, v in source.drops.items() if v}
    if delivered is not None:
        sampled, room = delivered, delivered - processed
        fitting: dict[DropReason, int] = {}
        for reason, n in sorted(drops.items()):
            if room > 0:
                fitting[reason] = min(n, room)
                room -= fitting[reason]
        drops = fitting
    else:
        sampled = max(source.sampled, processed + sum(drops.values()))
    lost = sampled - processed - sum(drops.values())
    if lost > 0:
        drops[DropReason.STOPPED] = drops.get(DropReason.STOPPED, 0) + lost
    return dataclasses.replace(
        source,
        state=state,
        reason=why,
        sampled=sampled,
        processed=processed,
        dropped=sum(drops.values()),
        drops=drops,
        reconnects=source.reconnects + 1,
        queued=0,
    )


def merge(parts: Sequence[tuple[int, Snapshot | None]], carried: dict[int, Carried], notes: dict[int, str]) -> Snapshot:
    """One snapshot of all workers: ``parts`` are each worker's latest (None before its first); a source's
    counts include what earlier runs of its worker counted (``carried``); a worker with a note (it died, it
    restarts) shows its sources with that reason. Counters are sums; latency medians are weighted by
    results, 95th percentiles the largest of the workers' (an upper bound)."""
    sources: list[SourceSnapshot] = []
    sinks: list[SinkSnapshot] = []
    errors: list[str] = []
    histograms: dict[Timing, HistogramSnapshot] = {}
    totals = {"batches": 0, "frames": 0, "delivered": 0, "queued": 0}
    weighted = {"batch_fill": 0.0, "preprocess_p50_ms": 0.0, "inference_p50_ms": 0.0}
    highest = {"preprocess_p95_ms": 0.0, "inference_p95_ms": 0.0}
    draining, drain_left = False, 0.0
    for index, snap in parts:
        earlier = carried.get(index, Carried()).sources
        note = notes.get(index)
        current = {s.source: s for s in snap.sources} if snap is not None else {}
        for sid in [*current, *(s for s in earlier if s not in current)]:
            now = current.get(sid)
            merged = add_source(earlier[sid], now) if sid in earlier and now is not None else now or earlier[sid]
            if note is not None:
                merged = dataclasses.replace(merged, state=SourceState.FAILED, reason=note)
            sources.append(merged)
        if snap is None:
            continue
        sinks += [dataclasses.replace(k, name=f"{k.name} (worker {index})") for k in snap.sinks]
        errors += [f"{line[:9]}[worker {index}] {line[9:]}" for line in snap.errors]
        for key in totals:
            totals[key] += getattr(snap, key)
        weighted["batch_fill"] += snap.batch_fill * snap.batches
        for key in ("preprocess_p50_ms", "inference_p50_ms"):
            weighted[key] += getattr(snap, key) * snap.frames
        for key in highest:
            highest[key] = max(highest[key], getattr(snap, key))
        for name, h in snap.histograms.items():
            prev = histograms.get(name)
            histograms[name] = (
                h
                if prev is None
                else HistogramSnapshot(
                    h.bounds,
                    tuple(a + b for a, b in zip(prev.counts, h.counts, strict=True)),
                    prev.total + h.total,
                    prev.count + h.count,
                )
            )
        draining = draining or snap.draining
        drain_left = max(drain_left, snap.drain_left_s)
    batches, frames = totals["batches"], totals["frames"]
    return Snapshot(
        at=time.monotonic(),
        sources=tuple(sources),
        sinks=tuple(sinks),
        batches=batches,
        frames=frames,
        delivered=totals["delivered"],
        queued=totals["queued"],
        batch_fill=weighted["batch_fill"] / batches if batches else 0.0,
        preprocess_p50_ms=weighted["preprocess_p50_ms"] / frames if frames else 0.0,
        preprocess_p95_ms=highest["preprocess_p95_ms"],
        inference_p50_ms=weighted["inference_p50_ms"] / frames if frames else 0.0,
        inference_p95_ms=highest["inference_p95_ms"],
        errors=tuple(sorted(errors)[-8:]),
        histograms=histograms,
        draining=draining,
        drain_left_s=drain_left,
    )


# -- the supervisor


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with status {code}"
