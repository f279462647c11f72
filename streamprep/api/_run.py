"""The library's runs: ``streamprep.open()`` (async) and ``streamprep.stream()`` (sync), over the one run owner."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from streamprep.config.schema import Config, parse
from streamprep.flow.queues import BoundedQueue
from streamprep.inference.model import LoadedModel
from streamprep.inference.settings import ModelConfig
from streamprep.run.lifetime import Run as Owner
from streamprep.run.pipeline import Pipeline, RunReport
from streamprep.sinks.base import Sink
from streamprep.sources.base import Source
from streamprep.sources.python import FrameSource
from streamprep.values.errors import ConfigError
from streamprep.values.events import EventOutput
from streamprep.values.frames import Frame, Result, SourceStatus
from streamprep.values.metrics import SinkSnapshot, Snapshot

SourceLike = str | Path | Mapping[str, Any] | Source
ModelLike = str | Path | Mapping[str, Any] | None

BUFFER = 4  # results (or batches) that may wait for the consumer, at each of two hand-offs


class _HasFrames(Protocol):
    id: str

    def frames(self) -> AsyncIterator[Frame]: ...


def configure(
    sources: SourceLike | Sequence[SourceLike], model: ModelLike = None, fps: float | None = None, **options: Any
) -> tuple[Config, dict[str, Source]]:
    """A checked :class:`~streamprep.config.schema.Config` from the API's arguments, and the ready-made sources.

    ``sources``: file paths, URLs (``rtsp://``, ``/dev/video0``, ``lavfi:...``), ``[[sources]]`` tables as
    dicts, or objects with the :class:`~streamprep.sources.base.Source` seam. ``model``: a path, a bundled
    model's name, or a ``[model]`` table as a dict. ``options``: any key of the config's top level or of
    ``[model]``; ConfigError names an unknown one.
    """
    items: list[Any] = (
        [sources] if isinstance(sources, str | Path | Mapping) or hasattr(sources, "frames") else list(sources)
    )
    entries: list[dict[str, Any]] = []
    custom: dict[str, Source] = {}
    for item in items:
        if isinstance(item, str | Path):
            entries.append({"url": str(item)})
        elif isinstance(item, Mapping):
            entries.append(dict(item))
        elif hasattr(item, "frames") and hasattr(item, "id"):
            entries.append({"url": f"python:{item.id}", "id": item.id})
            custom[item.id] = item
        else:
            raise ConfigError(f"sources: {item!r} is neither a path, a URL, a [[sources]] table nor a Source")
    data: dict[str, Any] = {"sources": entries}
    model_table: dict[str, Any] = {}
    if isinstance(model, str | Path):
        model_table["path"] = str(model)
    elif isinstance(model, Mapping):
        model_table.update(model)
    if fps is not None:
        data["fps"] = fps
    for key, value in options.items():
        if key in Config.model_fields and key not in ("sources", "model"):
            data[key] = value
        elif key in ModelConfig.model_fields:
            model_table[key] = value
        else:
            raise ConfigError(f"{key}: not an option (options are the config's top-level and [model] keys)")
    if model_table:
        data["model"] = model_table
    cfg = parse(data)
    for source in custom.values():
        if isinstance(source, FrameSource):
            source.sample_to(cfg.fps)
        elif cfg.fps is not None:
            raise ConfigError(
                f"fps: source {source.id} is your own Source, which samples its frames itself; fps reaches "
                "paths, URLs and FrameSource only (wrap your frames in streamprep.FrameSource, or leave fps out)"
            )
    return cfg, custom


class _Consumer(Sink):
    """The sink the API reads from: a bounded hand-off to the caller."""

    name = "python"

    def __init__(self, size: int, events: bool) -> None:
        self.queue: BoundedQueue[Result | EventOutput] = BoundedQueue(size)
        self._events = events
        self._closed = asyncio.Event()
        self.sent = 0
        self.discarded = 0  # handed over after the caller stopped reading
        self.abandoned = False

    async def open(self) -> None:
        """Nothing to connect to."""

    async def _hand(self, item: Result | EventOutput) -> None:
        if self.abandoned:
            self.discarded += 1
            return
        await self.queue.put(item)
        self.sent += 1

    async def send(self, result: Result) -> None:
        await self._hand(result)

    async def send_event(self, item: EventOutput) -> None:
        if self._events:
            await self._hand(item)

    async def send_status(self, status: SourceStatus) -> None:
        """Statuses are in :meth:`Run.snapshot`."""

    async def serve(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        self.queue.close()
        self._closed.set()

    async def shutdown(self) -> None:
        self.queue.close()

    def abandon(self) -> None:
        """The caller stopped reading: what is waiting, and what comes, is discarded (and counted)."""
        self.abandoned = True
        self.discarded += self.queue.clear()

    def stats(self) -> SinkSnapshot:
        return SinkSnapshot(self.name, True, self.sent, len(self.queue), self.discarded)


class Run:
    """One run of the pipeline: an async context manager, and an async iterator of its results.

    It is the run owner of ``streamprep run`` (:class:`streamprep.run.lifetime.Run`: the same checks, model
    loading, sinks and drain) with the caller as one more sink. Entering refuses what ``streamprep run``
    refuses. Leaving the ``async with`` block stops the sources and finishes what is in flight (within the
    config's ``drain_timeout_s``); results not read by then are discarded. :attr:`report` has the counts
    afterwards.
    """

    def __init__(
        self,
        cfg: Config,
        custom: Mapping[str, Source] | None = None,
        *,
        frames: bool = False,
        buffer: int = BUFFER,
        sinks: Sequence[Sink] = (),
        models: Mapping[str, LoadedModel] | None = None,
    ) -> None:
        self.cfg = cfg
        self._consumer = _Consumer(buffer, cfg.events is not None)
        self._owner = Owner(
            cfg,
            [self._consumer, *sinks],
            sources=custom,
            models=models,
            keep_frames=frames,
            sink_queue=buffer,
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[RunReport] | None = None
        self.report: RunReport | None = None

    @property
    def pipeline(self) -> Pipeline | None:
        return self._owner.pipeline

    async def __aenter__(self) -> Run:
        await self._owner.__aenter__()
        self._task = asyncio.create_task(self._owner.serve(self._stop), name="streamprep run")
        return self

    def __aiter__(self) -> Run:
        return self

    async def __anext__(self) -> Result:
        item = await self._consumer.queue.get()
        if item is None:
            await self._finish()
            raise StopAsyncIteration
        return item  # type: ignore[return-value]  # an Event too when the config has [events]

    async def _finish(self) -> None:
        """The results have all come out: wait for the run's end, and raise the first source that failed
        (the others are in its notes, all of them in :attr:`report`) unless the caller stopped the run."""
        if self._task is None or self.report is not None:
            return
        self.report = await self._task
        raise_failures(self.report, self.cfg.source_ids(), stopped=self._consumer.abandoned)

    def snapshot(self) -> Snapshot:
        """The run's counters now: per source state, decoded, sampled, processed, dropped; sinks; timings."""
        return self._owner.snapshot()

    def stop(self) -> None:
        """Stop the sources; the iterator ends once what is in flight has come out."""
        self._stop.set()

    def cancel(self) -> None:
        """Stop, and discard what has not been read yet (counted in the snapshot's sink ``python``)."""
        self.stop()
        self._consumer.abandon()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self._consumer.abandon()
        try:
            if self._task is not None and self.report is None:
                self.report = await self._task
        finally:
            await self._owner.__aexit__(kind, exc, tb)


def raise_failures(report: RunReport, order: Sequence[str], stopped: bool = False) -> None:
    """Raise the first source failure of a run the caller read to its end: one failing source does not stop
    the others (their results all came first), but it is never silent. "First" is by the sources' order
    (``order``: their ids), not by which failed first, so the same inputs raise the same error; the other
    failures are notes on it."""
    if stopped or not report.failures:
        return
    rank = {sid: i for i, sid in enumerate(order)}
    first, *others = sorted(report.failures, key=lambda f: rank.get(f.source, len(rank)))
    for other in others:
        first.add_note(f"also failed: {other}")
    raise first


def open(
    sources: SourceLike | Sequence[SourceLike],
    model: ModelLike = None,
    *,
    fps: float | None = None,
    frames: bool = False,
    buffer: int = BUFFER,
    sinks: Sequence[Sink] = (),
    **options: Any,
) -> Run:
    """``async with streamprep.open(sources, ...) as run: async for result in run: ...``

    ``frames=True``: every result carries its decoded :class:`~streamprep.values.frames.Frame` (``result.frame``,
    ``result.frame.to_bgr()`` for an OpenCV image). ``sinks``: more sinks to deliver to (the
    :class:`~streamprep.sinks.base.Sink` seam; a JSON-lines or MQTT sink, or your own). With ``events``
    in the options, the iterator gives events too (:class:`~streamprep.values.events.Event`).
    """
    cfg, custom = configure(sources, model, fps, **options)
    return Run(cfg, custom, frames=frames, buffer=buffer, sinks=sinks)


@dataclass(frozen=True)
class _End:
    error: BaseException | None = None


def stream(
    sources: SourceLike | Sequence[SourceLike],
    model: ModelLike = None,
    *,
    fps: float | None = None,
    frames: bool = False,
    buffer: int = BUFFER,
    sinks: Sequence[Sink] = (),
    **options: Any,
) -> Iterator[Result]:
    """``for result in streamprep.stream(sources, ...): ...`` — :func:`open` as a plain iterator.

    The pipeline runs in a thread of its own; leaving the loop (``break``, an exception, closing the
    iterator) stops it and waits for it to finish. Errors that stop the whole run (a model that cannot
    be loaded, say) are raised here; a source that fails raises its
    :class:`~streamprep.values.errors.SourceError` here once the other sources' results have all come.
    """
    cfg, custom = configure(sources, model, fps, **options)
    return _iterate(lambda: Run(cfg, custom, frames=frames, buffer=buffer, sinks=sinks), buffer)


def _iterate(make: Callable[[], Run], buffer: int) -> Iterator[Any]:
    """Run ``make()`` in a thread of its own and hand its items over through a bounded queue."""
    handoff: queue.Queue[Any] = queue.Queue(maxsize=buffer)
    started: list[tuple[asyncio.AbstractEventLoop, Run]] = []

    async def produce() -> None:
        loop = asyncio.get_running_loop()
        async with make() as run:
            started.append((loop, run))
            async for item in run:
                await loop.run_in_executor(None, handoff.put, item)

    def main() -> None:
        try:
            asyncio.run(produce())
        except BaseException as exc:
            handoff.put(_End(exc))
        else:
            handoff.put(_End())

    thread = threading.Thread(target=main, name="streamprep", daemon=True)
    thread.start()
    try:
        while not isinstance(item := handoff.get(), _End):
            yield item
        if item.error is not None:
            raise item.error
    finally:
        if thread.is_alive() and started:  # the caller left early: stop, and discard what is in flight
            loop, run = started[0]
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(run.cancel)
        while thread.is_alive():  # take what the thread still puts, until it has finished
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=0.1)
