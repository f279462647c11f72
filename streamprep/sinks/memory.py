"""Results kept in memory: for using streamprep as a library, for tests and for benchmarks."""

from __future__ import annotations

import collections

from streamprep.values.events import EventOutput
from streamprep.values.frames import Result, SourceStatus
from streamprep.values.metrics import SinkSnapshot


class MemorySink:
    """Keeps the last ``keep`` results and events (all when None) and every status change, in arrival order."""

    name = "memory"

    def __init__(self, keep: int | None = None) -> None:
        self.results: collections.deque[Result] = collections.deque(maxlen=keep)
        self.statuses: collections.deque[SourceStatus] = collections.deque(maxlen=10_000)
        self.events: collections.deque[EventOutput] = collections.deque(maxlen=keep)
        self.count = 0
        self.closed = False

    async def open(self) -> None:
        """Nothing to connect to."""

    async def send(self, result: Result) -> None:
        self.results.append(result)
        self.count += 1

    async def send_status(self, status: SourceStatus) -> None:
        self.statuses.append(status)

    async def send_event(self, item: EventOutput) -> None:
        self.events.append(item)

    async def serve(self) -> None:
        """Everything happens in ``send``."""

    async def close(self) -> None:
        self.closed = True

    async def shutdown(self) -> None:
        """Nothing to release."""

    def stats(self) -> SinkSnapshot:
        return SinkSnapshot(self.name, True, self.count, 0, 0)
