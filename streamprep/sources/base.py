"""The source seam: an async iterator of sampled frames, and the counts a source keeps about itself."""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from streamprep.values.frames import DropReason, Frame, SourceStatus

StatusCallback = Callable[[SourceStatus], None]


@dataclass
class SourceCounts:
    """What a source has done so far. ``sampled`` counts the frames its sampler kept; of those, the ones
    that never left the source (a live hand-off that dropped the older frame, frames still inside when it
    was stopped) are in ``dropped`` by reason. Written by the source, read by the supervisor."""

    decoded: int = 0
    skipped: int = 0  # frames left undecoded because the sampler would not select them
    sampled: int = 0
    corrupt: int = 0
    reconnects: int = 0
    dropped: collections.Counter[DropReason] = field(default_factory=collections.Counter)
    position_s: float = 0.0  # presentation time of the last frame decoded (files: how far the replay is)
    duration_s: float | None = None  # the file's duration, when it says

    def add(self, other: SourceCounts) -> None:
        self.decoded += other.decoded
        self.skipped += other.skipped
        self.sampled += other.sampled
        self.corrupt += other.corrupt
        self.reconnects += other.reconnects
        self.dropped.update(other.dropped)


class Source(Protocol):
    """Produces sampled frames in order; ``frames()`` ends when the source is finished.

    Opening and decoding happen off the event loop. Expected failures are
    :class:`streamprep.values.errors.SourceError` with a message safe to show (no secrets); anything else that
    escapes ``frames()`` is treated as a bug in that source and ends it alone. ``live`` sources get
    latest-frame semantics (drop the oldest) and are restarted after a failure; others are replayed
    completely. A source counts what it does in ``counts``: every frame it yields must have been counted
    in ``counts.sampled``, with ``seq`` numbering the sampled frames from ``first_seq`` on.
    """

    id: str
    live: bool
    counts: SourceCounts

    def frames(self) -> AsyncIterator[Frame]: ...
