"""The sink seam: where results go."""

from __future__ import annotations

import re
from typing import Protocol

from streamprep.events.values import EventOutput
from streamprep.frames import Result
from streamprep.metrics import SinkSnapshot
from streamprep.sources.base import SourceStatus


class Sink(Protocol):
    """Receives results in order per source.

    Life cycle: ``open`` (fails fast with a SinkError) → ``send``/``send_status`` while ``serve`` runs in
    the pipeline's TaskGroup doing any background delivery → ``close`` (no more input: ``serve`` delivers
    what is left, then returns) → ``shutdown`` (release everything; safe to call twice, and after
    ``serve`` was cancelled).
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


_UNSAFE_LEVEL = re.compile(r"[/#+\x00-\x1f\x7f]")


def topic_level(name: str) -> str:
    """``name`` made safe as one MQTT topic level: no ``/``, ``#``, ``+`` or control characters."""
    safe = _UNSAFE_LEVEL.sub("_", name).strip()
    return safe if safe and not safe.startswith("$") else f"_{safe}"
