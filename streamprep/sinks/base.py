"""The sink seam: where results go.

Delivery contract (the pipeline's side is :mod:`streamprep.run.fanout`): a sink receives results in order per
source. Life cycle: ``open`` (fails fast with a SinkError) → ``send``/``send_status``/``send_event`` while
``serve`` runs in the pipeline's TaskGroup doing any background delivery → ``close`` (no more input: ``serve``
delivers what is left, then returns) → ``shutdown`` (release everything; safe to call twice, and after
``serve`` was cancelled).

A sink is an async context manager: ``async with sink:`` opens it and shuts it down on the way out, so its
owner (the run) holds every sink in one :class:`contextlib.AsyncExitStack`.

``send`` may take its time (the pipeline gives each sink its own delivery task and bounded queue) but must
never block the event loop: blocking I/O belongs in a thread. An exception from ``send`` marks the sink
failed: its later results are dropped and counted, and the run exits 5.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

from streamprep.values.events import EventOutput
from streamprep.values.frames import Result, SourceStatus
from streamprep.values.metrics import SinkSnapshot

SHUTDOWN_S = 3.0  # leaving ``async with sink``: the most its shutdown may take


class Sink:
    """A sink: subclass it and write :meth:`send`; every other step has a do-nothing default."""

    name: str = "sink"
    sent: int = 0  # results delivered, for the default :meth:`stats`

    async def open(self) -> None:
        """Connect, open files; raise SinkError if it cannot."""

    async def send(self, result: Result) -> None:
        raise NotImplementedError

    async def send_status(self, status: SourceStatus) -> None:
        """A source changed state (sinks that publish state, such as MQTT, retain it)."""

    async def send_event(self, item: EventOutput) -> None:
        """An event, or a zone's or line's new count (retained state), in order with the results."""

    async def serve(self) -> None:
        """Background delivery, if the sink has any: runs until :meth:`close` and everything is delivered."""

    async def close(self) -> None:
        """No more input."""

    async def shutdown(self) -> None:
        """Release everything (idempotent)."""

    def stats(self) -> SinkSnapshot:
        """Counters for the dashboard and metrics."""
        return SinkSnapshot(self.name, True, self.sent, 0, 0)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Shut down, at most :data:`SHUTDOWN_S` (it may have been shut down already, or be stuck)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.shutdown(), SHUTDOWN_S)
