"""The sink seam: where results go."""

from __future__ import annotations

from typing import Protocol

from streamprep.values.events import EventOutput
from streamprep.values.frames import Result, SourceStatus
from streamprep.values.metrics import SinkSnapshot


class Sink(Protocol):
    """Receives results in order per source.

    Life cycle: ``open`` (fails fast with a SinkError) → ``send``/``send_status`` while ``serve`` runs in
    the pipeline's TaskGroup doing any background delivery → ``close`` (no more input: ``serve`` delivers
    what is left, then returns) → ``shutdown`` (release everything; safe to call twice, and after
    ``serve`` was cancelled).

    ``send`` may take its time (the pipeline gives each sink its own delivery task and bounded queue) but
    must never block the event loop: blocking I/O belongs in a thread. An exception from ``send`` marks
    the sink failed: its later results are dropped and counted, and the run exits 5.
    """

    name: str

    async def open(self) -> None: ...

    async def send(self, result: Result) -> None: ...

    async def send_status(self, status: SourceStatus) -> None:
        """A source changed state (sinks that publish state, such as MQTT, retain it)."""
        ...

    async def send_event(self, item: EventOutput) -> None:
        """An event, or a zone's or line's new count (retained state), in order with the results."""
        ...

    async def serve(self) -> None: ...

    async def close(self) -> None: ...

    async def shutdown(self) -> None: ...

    def stats(self) -> SinkSnapshot:
        """Counters for the dashboard and metrics."""
        ...
