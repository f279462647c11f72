"""Results and source statuses out to every sink, each sink at its own pace.

Each sink gets a bounded hand-off queue and a delivery task. A result from a file waits for room (nothing is
lost in a replay); a result from a live source never waits: when a sink is behind (a broker that is slow, a
stdout pipe nobody reads), that sink drops it, counted per source, and the live sources keep up with real
time. Statuses are offered to every sink without waiting (latest wins). Shutdown: :meth:`close` says no more
results will come; the delivery tasks hand over what is queued, then every sink gets ``close()`` and its
``serve()`` finishes delivery within the run's single drain deadline, after which it is cut short.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from streamprep.flow.queues import BoundedQueue, DropPolicy, QueueClosed
from streamprep.sinks.base import Sink
from streamprep.values.errors import StreamprepError, internal_error
from streamprep.values.events import Event, EventOutput
from streamprep.values.frames import Result, SinkDrop, SourceStatus
from streamprep.values.metrics import Metrics

log = logging.getLogger(__name__)

RESULTS_QUEUE = 256  # results waiting per sink (by default)
_STATUS_QUEUE = 64


@dataclass
class _Lane:
    sink: Sink
    size: int = RESULTS_QUEUE
    results: BoundedQueue[Result | EventOutput] = field(init=False)
    statuses: BoundedQueue[SourceStatus] = field(
        default_factory=lambda: BoundedQueue[SourceStatus](_STATUS_QUEUE, DropPolicy.DROP_OLDEST)
    )
    dropped: int = 0  # live results this sink was too slow for
    failure: str | None = None

    def __post_init__(self) -> None:
        self.results = BoundedQueue[Result | EventOutput](self.size)


class Fanout:
    def __init__(
        self,
        sinks: list[Sink],
        metrics: Metrics,
        live: Callable[[str], bool],
        publish_results: bool = True,
        queue_size: int = RESULTS_QUEUE,
    ) -> None:
        self._lanes = [_Lane(sink, queue_size) for sink in sinks]
        self._publish_results = publish_results  # False: events only ([events] results = false)
        self._metrics = metrics
        self._live = live
        self._deliveries: list[asyncio.Task[None]] = []
        self._status_deliveries: list[asyncio.Task[None]] = []
        self._serving: list[asyncio.Task[None]] = []
        for sink in sinks:
            if hasattr(sink, "on_drop"):  # a sink that drops results itself (an outbox) says whose
                sink.on_drop = self._dropped_by_sink

    def _dropped_by_sink(self, source: str, why: SinkDrop) -> None:
        self._metrics.source(source).sink_drops[why] += 1

    @property
    def sinks(self) -> list[Sink]:
        return [lane.sink for lane in self._lanes]

    def dropped(self, sink: Sink) -> int:
        """Live results that ``sink`` could not take in time."""
        return next(lane.dropped for lane in self._lanes if lane.sink is sink)

    def start(self, tg: asyncio.TaskGroup) -> None:
        for lane in self._lanes:
            name = lane.sink.name
            self._deliveries.append(tg.create_task(self._deliver(lane), name=f"deliver {name}"))
            self._status_deliveries.append(tg.create_task(self._deliver_statuses(lane), name=f"status {name}"))
            self._serving.append(tg.create_task(self._serve(lane), name=f"serve {name}"))

    async def put(self, result: Result, events: Sequence[EventOutput] = ()) -> None:
        """Hand ``result`` and the events it caused to every sink: waiting for room for a file's, never for
        a live source's (a sink that is behind drops those, counted)."""
        items: list[Result | EventOutput] = [result] if self._publish_results else []
        items += list(events)
        live = self._live(result.source)
        for item in items:
            for lane in self._lanes:
                await self._hand(lane, item, result.source, live)

    async def put_events(self, events: list[EventOutput]) -> None:
        """Events with no result of their own (visits that end when the run ends): never dropped."""
        for item in events:
            for lane in self._lanes:
                await self._hand(lane, item, item.source, live=False)

    async def _hand(self, lane: _Lane, item: Result | EventOutput, source: str, live: bool) -> None:
        if lane.results.closed:
            return
        if live and len(lane.results) >= lane.results.maxsize:
            lane.dropped += 1
            if isinstance(item, Result):
                self._metrics.source(source).sink_drops[SinkDrop.BEHIND] += 1
            return
        try:
            await lane.results.put(item)
        except QueueClosed:  # this sink gave up (see _deliver)
            return

    def status(self, status: SourceStatus) -> None:
        for lane in self._lanes:
            lane.statuses.offer(status)

    def failures(self) -> list[str]:
        """One line per sink that failed (and dropped its results from then on)."""
        return [lane.failure for lane in self._lanes if lane.failure]

    def _failed(self, lane: _Lane, exc: Exception) -> None:
        if lane.failure is None:
            # our own errors name the sink's output; anything else is a bug, named with the sink
            lane.failure = str(exc) if isinstance(exc, StreamprepError) else f"{lane.sink.name}: {internal_error(exc)}"
            log.debug("sink %s failed", lane.sink.name, exc_info=True)
            log.error("%s; results for this sink are dropped from now on", lane.failure)

    async def _deliver(self, lane: _Lane) -> None:
        while (item := await lane.results.get()) is not None:
            if lane.failure is None:
                try:
                    if isinstance(item, Result):
                        await lane.sink.send(item)
                        self._metrics.delivered += 1
                    else:
                        await lane.sink.send_event(item)
                    continue
                except Exception as exc:
                    self._failed(lane, exc)
            lane.dropped += 1
            if isinstance(item, Result):
                self._metrics.source(item.source).sink_drops[SinkDrop.FAILED] += 1

    async def _deliver_statuses(self, lane: _Lane) -> None:
        while (status := await lane.statuses.get()) is not None:
            if lane.failure is None:
                try:
                    await lane.sink.send_status(status)
                except Exception as exc:
                    self._failed(lane, exc)

    async def _serve(self, lane: _Lane) -> None:
        try:
            await lane.sink.serve()
        except Exception as exc:
            self._failed(lane, exc)

    async def finish(self, deadline: float) -> None:
        """No more results: deliver what is queued and let every sink finish by ``deadline`` (loop time)."""
        loop = asyncio.get_running_loop()
        for lane in self._lanes:
            lane.results.close()
        await _within(self._deliveries, deadline - loop.time(), "handing results to the sinks")
        for lane in self._lanes:
            lane.statuses.close()
        # the last statuses (each source's final counts) reach the sinks before they close
        await _within(self._status_deliveries, deadline - loop.time(), "handing statuses to the sinks")
        for lane in self._lanes:
            try:
                await lane.sink.close()
            except Exception as exc:
                self._failed(lane, exc)
        await _within(self._serving, deadline - loop.time(), "delivery")
        for lane in self._lanes:
            try:
                await lane.sink.shutdown()
            except Exception as exc:
                self._failed(lane, exc)

    def abandon(self) -> None:
        """Cut short: what still waits for a sink is dropped there (counted per source)."""
        for lane in self._lanes:
            while (item := lane.results.get_nowait()) is not None:
                lane.dropped += 1
                if isinstance(item, Result):
                    self._metrics.source(item.source).sink_drops[SinkDrop.STOPPED] += 1
                elif isinstance(item, Event):
                    log.warning(
                        "event %s (%s) was not delivered to %s before the run stopped",
                        item.event_id,
                        item.type,
                        lane.sink.name,
                    )
            lane.results.close()
            lane.statuses.close()


async def _within(tasks: list[asyncio.Task[None]], timeout: float, what: str) -> None:
    pending = [t for t in tasks if not t.done()]
    if not pending:
        return
    _, late = await asyncio.wait(pending, timeout=max(0.0, timeout))
    if late:
        log.error("%s did not finish before the drain deadline; cut short", what)
        for task in late:
            task.cancel()
        await asyncio.wait(late)
