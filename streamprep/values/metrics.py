"""What the pipeline counts, and the immutable snapshots everyone else reads.

The pipeline updates :class:`Metrics` on the event loop; the dashboard, ``streamprep top``, the status
socket, the Prometheus exporter and the systemd watchdog only ever see :class:`Snapshot` values, so none of
them reaches into the pipeline. Latency figures come from bounded windows of recent values.
"""

from __future__ import annotations

import collections
import enum
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from streamprep.values.frames import DropReason, RegionMode, SinkDrop, SourceState, SourceStatus

_WINDOW = 512  # recent values kept per latency figure


class Window:
    """The last ``size`` values of a figure; percentiles over them."""

    def __init__(self, size: int = _WINDOW) -> None:
        self._values: collections.deque[float] = collections.deque(maxlen=size)

    def add(self, value: float) -> None:
        self._values.append(value)

    def mean(self) -> float:
        return sum(self._values) / len(self._values) if self._values else 0.0

    def percentiles(self, *qs: float) -> tuple[float, ...]:
        if not self._values:
            return tuple(0.0 for _ in qs)
        arr = np.fromiter(self._values, dtype=np.float64)
        return tuple(float(v) for v in np.percentile(arr, qs))


LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class Histogram:
    """Cumulative counts per upper bound (Prometheus style), plus the sum and count of all values."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS_MS) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.total = 0.0
        self.count = 0

    def add(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1

    def freeze(self) -> HistogramSnapshot:
        return HistogramSnapshot(self.bounds, tuple(self.counts), self.total, self.count)


@dataclass(frozen=True)
class HistogramSnapshot:
    bounds: tuple[float, ...]
    counts: tuple[int, ...]  # cumulative: values <= bounds[i]
    total: float
    count: int


@dataclass
class SourceCounters:
    """One source's ledger. ``decoded``/``sampled``/``corrupt``/``reconnects`` and the drops inside the
    source are copied from the source's own counts (all its runs added up); ``processed`` and the other
    drops are counted by the pipeline where they happen. At any stop ``sampled = processed + dropped``.
    ``sink_dropped`` counts results of this source that a sink dropped after they were made."""

    state: SourceState = SourceState.CONNECTING
    reason: str = ""
    decoded: int = 0
    sampled: int = 0
    processed: int = 0
    corrupt: int = 0
    reconnects: int = 0
    drops: collections.Counter[DropReason] = field(default_factory=collections.Counter)  # by the pipeline
    source_drops: collections.Counter[DropReason] = field(default_factory=collections.Counter)  # by the source
    sink_drops: collections.Counter[SinkDrop] = field(default_factory=collections.Counter)  # results, by why
    position_s: float = 0.0
    duration_s: float | None = None
    age_ms: Window = field(default_factory=Window)
    capture_clock: str = ""  # the clock the latest result's age counts from: camera, arrival or decode
    region_mode: RegionMode = RegionMode.FULL  # the source's regions: full, tiles or motion
    model_runs: int = 0  # regions the model ran on (one per frame with regions = "full")
    crops: int = 0  # detections' crops handed to second models ([[model.then]])

    @property
    def sink_dropped(self) -> int:
        return sum(self.sink_drops.values())

    def all_drops(self) -> collections.Counter[DropReason]:
        return self.drops + self.source_drops

    @property
    def dropped(self) -> int:
        return sum(self.drops.values()) + sum(self.source_drops.values())

    @property
    def unaccounted(self) -> int:
        """Sampled frames neither processed nor dropped yet: in flight (0 once the source has stopped)."""
        return self.sampled - self.processed - self.dropped


class Timing(enum.StrEnum):
    """The timing histograms every run keeps (milliseconds)."""

    PREPROCESS = "preprocess_ms"  # per frame
    INFERENCE = "inference_ms"  # per batch
    AGE = "age_ms"  # a frame's age when inference started, from its capture


@dataclass(frozen=True)
class SourceSnapshot:
    source: str
    state: SourceState
    reason: str
    decoded: int
    sampled: int
    dropped: int
    processed: int
    corrupt: int
    reconnects: int
    queued: int
    age_p50_ms: float
    age_p95_ms: float
    drops: dict[DropReason, int] = field(default_factory=dict)  # dropped, by reason
    sink_dropped: int = 0
    sink_drops: dict[SinkDrop, int] = field(default_factory=dict)  # the same, by why
    position_s: float = 0.0  # files: how far the replay is, and of how long
    duration_s: float | None = None
    capture_clock: str = ""  # live: "camera" when stamped by the camera's clock, else "decode"
    region_mode: RegionMode = RegionMode.FULL  # regions: full, tiles or motion
    model_runs: int = 0  # regions the model ran on (one per processed frame with regions = "full")
    crops: int = 0  # detections' crops handed to second models ([[model.then]])

    def status_counts(self) -> dict[str, int]:
        """The counts a retained MQTT status carries (``dropped_<reason>`` per reason): its wire form."""
        counts = {
            "decoded": self.decoded,
            "sampled": self.sampled,
            "processed": self.processed,
            "dropped": self.dropped,
        }
        counts |= {f"dropped_{reason.value}": n for reason, n in self.drops.items()}
        counts["sink_dropped"] = self.sink_dropped
        counts |= {f"sink_dropped_{why.value}": n for why, n in self.sink_drops.items() if n}
        if self.crops:
            counts["crops"] = self.crops  # second models ([[model.then]])
        return counts

    def summary(self) -> str:
        """One line of counts, as the end-of-run summary and the final status give them."""
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.drops.items()) if v)
        line = f"{self.decoded} decoded, {self.sampled} sampled, {self.processed} processed, {self.dropped} dropped"
        line += f" ({reasons})" if reasons else ""
        line += (
            f"; {self.model_runs} model runs ({self.region_mode})" if self.region_mode is not RegionMode.FULL else ""
        )
        line += f"; {self.crops} crop(s) to second models" if self.crops else ""
        if self.sink_dropped:
            whys = ", ".join(f"{k} {v}" for k, v in sorted(self.sink_drops.items()) if v)
            line += f"; sinks dropped {self.sink_dropped} result(s)" + (f" ({whys})" if whys else "")
        return line


@dataclass(frozen=True)
class SinkSnapshot:
    name: str
    connected: bool
    sent: int
    outbox: int
    dropped: int


@dataclass(frozen=True)
class Snapshot:
    at: float  # time.monotonic() when taken: rates are differences between two snapshots
    sources: tuple[SourceSnapshot, ...]
    sinks: tuple[SinkSnapshot, ...]
    batches: int
    frames: int
    delivered: int
    queued: int
    batch_fill: float  # mean frames per batch over the recent window
    preprocess_p50_ms: float
    preprocess_p95_ms: float
    inference_p50_ms: float
    inference_p95_ms: float
    errors: tuple[str, ...]
    histograms: dict[Timing, HistogramSnapshot] = field(default_factory=dict)
    draining: bool = False  # stopping: what is in flight is being finished
    drain_left_s: float = 0.0  # while draining: time left before the rest is cut short

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        sources = tuple(
            SourceSnapshot(
                **{
                    **s,
                    "state": SourceState(s["state"]),
                    "drops": {DropReason(k): v for k, v in s.get("drops", {}).items()},
                    "sink_drops": {SinkDrop(k): v for k, v in s.get("sink_drops", {}).items()},
                    "region_mode": RegionMode(s.get("region_mode", RegionMode.FULL)),
                }
            )
            for s in data["sources"]
        )
        sinks = tuple(SinkSnapshot(**s) for s in data["sinks"])
        histograms = {
            Timing(k): HistogramSnapshot(tuple(h["bounds"]), tuple(h["counts"]), h["total"], h["count"])
            for k, h in data.get("histograms", {}).items()
        }
        rest = {k: v for k, v in data.items() if k not in ("sources", "sinks", "errors", "histograms")}
        return cls(sources=sources, sinks=sinks, errors=tuple(data["errors"]), histograms=histograms, **rest)


@dataclass
class Metrics:
    sources: dict[str, SourceCounters] = field(default_factory=dict)
    batches: int = 0
    frames: int = 0
    delivered: int = 0
    batch_sizes: Window = field(default_factory=Window)
    preprocess_ms: Window = field(default_factory=Window)
    inference_ms: Window = field(default_factory=Window)
    errors: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=8))
    histograms: dict[Timing, Histogram] = field(default_factory=lambda: {t: Histogram() for t in Timing})

    def source(self, source_id: str) -> SourceCounters:
        return self.sources.setdefault(source_id, SourceCounters())

    def on_status(self, status: SourceStatus) -> None:
        c = self.source(status.source)
        c.state, c.reason = status.state, status.reason

    def error(self, line: str) -> None:
        self.errors.append(f"{time.strftime('%H:%M:%S')} {line}")

    def snapshot(
        self,
        queued: dict[str, int],
        sinks: Iterable[SinkSnapshot] = (),
        draining: bool = False,
        drain_left_s: float = 0.0,
    ) -> Snapshot:
        sources = []
        for name, c in self.sources.items():
            p50, p95 = c.age_ms.percentiles(50, 95)
            drops = c.all_drops()
            sources.append(
                SourceSnapshot(
                    name,
                    c.state,
                    c.reason,
                    c.decoded,
                    c.sampled,
                    c.dropped,
                    c.processed,
                    c.corrupt,
                    c.reconnects,
                    queued.get(name, 0),
                    p50,
                    p95,
                    {reason: drops[reason] for reason in DropReason},
                    c.sink_dropped,
                    dict(c.sink_drops),
                    c.position_s,
                    c.duration_s,
                    c.capture_clock,
                    region_mode=c.region_mode,
                    model_runs=c.model_runs,
                    crops=c.crops,
                )
            )
        pre50, pre95 = self.preprocess_ms.percentiles(50, 95)
        inf50, inf95 = self.inference_ms.percentiles(50, 95)
        return Snapshot(
            at=time.monotonic(),
            sources=tuple(sources),
            sinks=tuple(sinks),
            batches=self.batches,
            frames=self.frames,
            delivered=self.delivered,
            queued=sum(queued.values()),
            batch_fill=self.batch_sizes.mean(),
            preprocess_p50_ms=pre50,
            preprocess_p95_ms=pre95,
            inference_p50_ms=inf50,
            inference_p95_ms=inf95,
            errors=tuple(self.errors),
            histograms={name: h.freeze() for name, h in self.histograms.items()},
            draining=draining,
            drain_left_s=drain_left_s,
        )
