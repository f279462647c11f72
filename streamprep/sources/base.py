"""The source seam: an async iterator of sampled frames, plus a status anyone may read."""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Protocol

from streamprep.frames import Frame


class SourceState(enum.StrEnum):
    CONNECTING = "connecting"
    ONLINE = "online"
    STALLED = "stalled"
    OFFLINE = "offline"
    FINISHED = "finished"  # a file reached its end
    FAILED = "failed"  # gave up: the reason says why


@dataclass(frozen=True, slots=True)
class SourceStatus:
    source: str
    state: SourceState
    reason: str = ""
    decoded: int = 0
    sampled: int = 0
    corrupt: int = 0


StatusCallback = Callable[[SourceStatus], None]


class Source(Protocol):
    """Produces frames in decode order. ``frames()`` ends when the source is finished.

    Opening, decoding and colour conversion happen off the event loop. Errors are
    :class:`streamprep.errors.SourceError` with a message safe to show (no secrets).
    """

    id: str
    live: bool
    decoded: int  # frames decoded so far
    sampled: int  # frames the sampler kept
    corrupt: int  # packets that could not be decoded
    reconnects: int
    dropped: int  # sampled frames dropped inside the source (live hand-off)

    def frames(self) -> AsyncGenerator[Frame, None]: ...
