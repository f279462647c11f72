"""A sink that calls your function with every result: the shortest way to act on results in Python.

    def alarm(result):
        if any(d.label == "person" for d in result.detections or ()):
            notify(result.source)

    streamprep.stream(...) / streamprep.open(..., sinks=[streamprep.CallbackSink(alarm)])

A plain function runs in a thread of the sink's own (it may block: a slow function holds up only this
sink, whose live results are then dropped and counted); a coroutine function is awaited on the loop.
An exception from the function fails the sink (logged once, later results dropped and counted).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from streamprep.flow.threads import WriterThread
from streamprep.values.events import EventOutput
from streamprep.values.frames import Result, SourceStatus
from streamprep.values.metrics import SinkSnapshot


class CallbackSink:
    def __init__(
        self,
        on_result: Callable[[Result], Any] | Callable[[Result], Awaitable[Any]],
        on_event: Callable[[EventOutput], Any] | None = None,
        name: str = "callback",
    ) -> None:
        self.name = name
        self._on_result = on_result
        self._on_event = on_event
        self._thread: WriterThread | None = None
        self._closing = asyncio.Event()
        self.sent = 0

    async def open(self) -> None:
        if not inspect.iscoroutinefunction(self._on_result):
            self._thread = WriterThread(f"sink {self.name}")

    async def _call(self, fn: Callable[..., Any], item: Any) -> None:
        if inspect.iscoroutinefunction(fn):
            await fn(item)
        elif self._thread is not None:
            await asyncio.wrap_future(self._thread.submit(fn, item))
        else:
            fn(item)

    async def send(self, result: Result) -> None:
        await self._call(self._on_result, result)
        self.sent += 1

    async def send_event(self, item: EventOutput) -> None:
        if self._on_event is not None:
            await self._call(self._on_event, item)

    async def send_status(self, status: SourceStatus) -> None:
        """Statuses are in the run's snapshot."""

    async def serve(self) -> None:
        await self._closing.wait()

    async def close(self) -> None:
        self._closing.set()

    async def shutdown(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=False)
            self._thread = None

    def stats(self) -> SinkSnapshot:
        return SinkSnapshot(self.name, True, self.sent, 0, 0)
