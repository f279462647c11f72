"""JSON lines to stdout or a file: one line per result (and per event), flushed as it goes."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TextIO

from streamprep.errors import SinkError
from streamprep.events.values import Event, EventOutput, encode_event
from streamprep.frames import Result
from streamprep.metrics import SinkSnapshot
from streamprep.schema import encode
from streamprep.sources.base import SourceStatus


class JsonLinesSink:
    def __init__(self, target: str, device: str) -> None:
        self.name = "stdout" if target == "-" else target
        self._target = target
        self._device = device
        self._file: TextIO | None = None
        self.sent = 0

    async def open(self) -> None:
        if self._target == "-":
            self._file = sys.stdout
            return
        path = Path(self._target)
        try:
            self._file = path.open("w", encoding="utf-8")
        except OSError as exc:
            raise SinkError(f"output file {path}: {exc.strerror or exc}") from None

    async def send(self, result: Result) -> None:
        self._write(encode(result, self._device))

    async def send_event(self, item: EventOutput) -> None:
        """Events are lines beside the results; zone and line counts are not (each event says enough)."""
        if isinstance(item, Event):
            self._write(encode_event(item, self._device))

    def _write(self, line: bytes) -> None:
        assert self._file is not None, "open() first"
        try:
            self._file.write(line.decode() + "\n")
            self._file.flush()
        except OSError as exc:
            raise SinkError(f"output {self.name}: {exc.strerror or exc}") from None
        self.sent += 1

    async def send_status(self, status: SourceStatus) -> None:
        """Status goes to the log, not into the results stream."""

    def stats(self) -> SinkSnapshot:
        return SinkSnapshot(self.name, self._file is not None, self.sent, 0, 0)

    async def serve(self) -> None:
        """Writing happens in ``send``: nothing to do in the background."""

    async def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.flush()

    async def shutdown(self) -> None:
        if self._file is not None and self._file is not sys.stdout:
            self._file.close()
        self._file = None
