"""The sink seam: where results go."""

from __future__ import annotations

import re
from typing import Protocol

from streamprep.frames import Result
from streamprep.sources.base import SourceStatus


class Sink(Protocol):
    """Receives results in order per source. ``open`` fails fast with a SinkError; ``close`` flushes."""

    name: str

    async def open(self) -> None: ...

    async def send(self, result: Result) -> None: ...

    async def send_status(self, status: SourceStatus) -> None:
        """A source changed state (sinks that publish state, such as MQTT, retain it)."""
        ...

    async def close(self) -> None: ...


_UNSAFE_LEVEL = re.compile(r"[/#+\x00-\x1f\x7f]")


def topic_level(name: str) -> str:
    """``name`` made safe as one MQTT topic level: no ``/``, ``#``, ``+`` or control characters."""
    safe = _UNSAFE_LEVEL.sub("_", name).strip()
    return safe if safe and not safe.startswith("$") else f"_{safe}"
