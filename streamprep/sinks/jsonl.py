"""JSON lines to stdout or a file: one line per result (and per event), written as it comes.

Writes happen in a thread of the sink's own, straight to the file descriptor (never through ``sys.stdout``'s
buffer and lock), so an output that blocks — a pipe nobody reads, a stalled disk — holds up only this sink:
the fan-out drops live results for it (counted) and the event loop, the other sinks and the sources carry
on. A write that fails (a full disk, a closed pipe) is a :class:`~streamprep.values.errors.SinkError`, once.
"""

from __future__ import annotations

import asyncio
import os
import sys

from streamprep.flow.threads import WriterThread
from streamprep.values.errors import SinkError
from streamprep.values.events import Event, EventOutput, encode_event
from streamprep.values.frames import Result, SourceStatus
from streamprep.values.metrics import SinkSnapshot
from streamprep.values.published import encode

_SHUTDOWN_TIMEOUT = 2.0


class JsonLinesSink:
    def __init__(self, target: str, device: str) -> None:
        self.name = "stdout" if target == "-" else target
        self._target = target
        self._device = device
        self._fd: int | None = None
        self._writer: WriterThread | None = None
        self._closing = asyncio.Event()
        self.sent = 0

    def _open(self) -> int:
        if self._target == "-":
            return sys.stdout.fileno()
        return os.open(self._target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)

    async def open(self) -> None:
        writer = WriterThread(f"write {self.name}")
        try:
            self._fd = await asyncio.wrap_future(writer.submit(self._open))
        except (OSError, ValueError) as exc:
            writer.shutdown(wait=False)
            raise SinkError(f"output file {self._target}: {getattr(exc, 'strerror', None) or exc}") from None
        self._writer = writer

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise SinkError(f"output {self.name}: {exc.strerror or exc}") from None

    async def send(self, result: Result) -> None:
        await self._line(encode(result, self._device))
        self.sent += 1

    async def send_event(self, item: EventOutput) -> None:
        """Events are lines beside the results; zone and line counts are not (each event says enough)."""
        if isinstance(item, Event):
            await self._line(encode_event(item, self._device))

    async def _line(self, data: bytes) -> None:
        if self._writer is None:
            raise SinkError(f"output {self.name}: not open")
        await asyncio.wrap_future(self._writer.submit(self._write, data + b"\n"))

    async def send_status(self, status: SourceStatus) -> None:
        """Status goes to the log, not into the results stream."""

    def stats(self) -> SinkSnapshot:
        return SinkSnapshot(self.name, self._fd is not None, self.sent, 0, 0)

    async def serve(self) -> None:
        """Writing happens in ``send``; once closed, wait for the writes already handed to the thread."""
        await self._closing.wait()
        if self._writer is not None:
            await asyncio.wrap_future(self._writer.submit(lambda: None))

    async def close(self) -> None:
        self._closing.set()

    def _release(self) -> None:
        if self._fd is not None and self._target != "-":
            fd, self._fd = self._fd, None
            os.close(fd)

    async def shutdown(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            await asyncio.wait_for(asyncio.wrap_future(writer.submit(self._release)), _SHUTDOWN_TIMEOUT)
        except TimeoutError:
            pass  # the output is blocked: its thread is a daemon and will not hold up exit
        except OSError as exc:
            raise SinkError(f"output {self.name}: {exc.strerror or exc}") from None
        finally:
            writer.shutdown(wait=False)
