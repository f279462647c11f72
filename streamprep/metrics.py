"""Counters the pipeline updates and anyone may read as an immutable snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamprep.sources.base import SourceState, SourceStatus


@dataclass
class SourceCounters:
    state: SourceState = SourceState.CONNECTING
    reason: str = ""
    decoded: int = 0
    sampled: int = 0
    dropped: int = 0
    processed: int = 0
    corrupt: int = 0


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


@dataclass(frozen=True)
class Snapshot:
    sources: tuple[SourceSnapshot, ...]
    batches: int
    frames: int
    delivered: int


@dataclass
class Metrics:
    sources: dict[str, SourceCounters] = field(default_factory=dict)
    batches: int = 0
    frames: int = 0
    delivered: int = 0

    def source(self, source_id: str) -> SourceCounters:
        return self.sources.setdefault(source_id, SourceCounters())

    def on_status(self, status: SourceStatus) -> None:
        c = self.source(status.source)
        c.state, c.reason = status.state, status.reason
        c.decoded, c.sampled, c.corrupt = status.decoded, status.sampled, status.corrupt

    def snapshot(self) -> Snapshot:
        return Snapshot(
            sources=tuple(
                SourceSnapshot(k, c.state, c.reason, c.decoded, c.sampled, c.dropped, c.processed, c.corrupt)
                for k, c in self.sources.items()
            ),
            batches=self.batches,
            frames=self.frames,
            delivered=self.delivered,
        )
