"""Wire the stages together under one TaskGroup.

    source tasks ──► per-source queues ──► batcher ──► preprocess ──► inference+decode ──► sink tasks

Each stage is a task; stages are joined by bounded queues, so a slow stage slows the ones before it
(files) or makes them drop (live sources, by their queue's policy). CPU work runs in worker threads.
Shutdown: ``stop`` cancels the source tasks only; every later stage drains what is in flight and ends
when its input closes, and sinks flush. A source's failure ends that source alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamprep.batching import Batcher
from streamprep.config import DEFAULT_MODEL_KEY, Config, SourceConfig
from streamprep.errors import ConfigError, SourceError
from streamprep.frames import Frame, Result, Timings
from streamprep.inference import Tensor
from streamprep.metrics import Metrics, Snapshot
from streamprep.model import LoadedModel
from streamprep.preprocess.geometry import Geometry, Region
from streamprep.queues import BoundedQueue, DropPolicy
from streamprep.redact import redact_text, redact_url
from streamprep.sinks.base import Sink
from streamprep.sources import make_source
from streamprep.sources.base import Source, SourceState, SourceStatus

log = logging.getLogger(__name__)

_BUFFERS = 3  # batch tensors in flight: one being filled, one queued, one in inference
_SINK_QUEUE = 256
_STATUS_QUEUE = 64
_BAD_STATES = (SourceState.FAILED, SourceState.OFFLINE, SourceState.STALLED)


@dataclass(frozen=True)
class PreparedBatch:
    items: tuple[Frame, ...]
    tensor: Tensor
    geometries: tuple[Geometry, ...]
    preprocess_ms: tuple[float, ...]
    started: float


@dataclass(frozen=True)
class RunReport:
    metrics: Metrics
    snapshot: Snapshot
    failures: tuple[SourceError, ...]
    stopped: bool


@dataclass
class _Branch:
    """One model's stages: its batcher, the prepared-batch queue, and its reusable batch tensors."""

    model: LoadedModel
    batcher: Batcher[Frame]
    prepared: BoundedQueue[PreparedBatch]
    free: asyncio.Queue[Tensor]
    demand: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(0))


@dataclass
class _Running:
    spec: SourceConfig
    source: Source
    queue: BoundedQueue[Frame]
    task: asyncio.Task[None]


Companion = Callable[["Pipeline"], Coroutine[Any, Any, None]]


class Pipeline:
    """Sources → model branches → sinks. ``models`` maps each model key of the config (``default`` for
    ``[model]``, else the keys of ``[models.NAME]``) that some source uses to its loaded model."""

    def __init__(
        self,
        cfg: Config,
        models: LoadedModel | Mapping[str, LoadedModel],
        sinks: list[Sink],
        drain_timeout: float = 10.0,
    ) -> None:
        self.cfg = cfg
        self.models = {DEFAULT_MODEL_KEY: models} if isinstance(models, LoadedModel) else dict(models)
        self.sinks = sinks
        self.metrics = Metrics()
        self.run_id = secrets.token_hex(6)  # makes every result id unique across runs
        self.drain_timeout = drain_timeout
        self._failures: list[SourceError] = []
        self._stopped = False
        self._branches: dict[str, _Branch] = {}
        self._running: dict[str, _Running] = {}
        self._rois: dict[str, Region] = {}
        self._specs: dict[str, SourceConfig] = {}  # every source started so far, as configured
        self._tg: asyncio.TaskGroup | None = None
        self._status_queues = [BoundedQueue[SourceStatus](_STATUS_QUEUE, DropPolicy.DROP_OLDEST) for _ in sinks]

    async def run(self, stop: asyncio.Event | None = None, companions: Sequence[Companion] = ()) -> RunReport:
        """Run until every source has ended (or ``stop`` is set) and every result is delivered.

        ``companions`` (status socket, metrics, watchdog, dashboard...) run in the same TaskGroup and are
        cancelled once delivery is over.
        """
        stop = stop or asyncio.Event()
        for key, model in self.models.items():
            free: asyncio.Queue[Tensor] = asyncio.Queue()
            for _ in range(_BUFFERS):
                free.put_nowait(model.preprocessor.new_batch(model.max_batch))
            max_wait = self.cfg.model_for(key).max_wait_ms / 1000.0
            self._branches[key] = _Branch(model, Batcher(model.max_batch, max_wait), BoundedQueue(1), free)
        sink_queues = [BoundedQueue[Result](_SINK_QUEUE) for _ in self.sinks]
        done = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            for spec, sid in zip(self.cfg.sources, self.cfg.source_ids(), strict=True):
                self._start_source(spec, sid)
            if not self._running:
                self._seal()
            stages: list[asyncio.Task[None]] = []
            inference: list[asyncio.Task[None]] = []
            for key, branch in self._branches.items():
                stages.append(tg.create_task(self._prepare(branch), name=f"preprocess {key}"))
                inference.append(tg.create_task(self._infer(branch, sink_queues), name=f"inference {key}"))
            stages += inference
            stages.append(tg.create_task(self._close_when_done(inference, sink_queues), name="results end"))
            sink_tasks = [
                tg.create_task(self._deliver(sink, q), name=f"sink {sink.name}")
                for sink, q in zip(self.sinks, sink_queues, strict=True)
            ]
            status_tasks = [
                tg.create_task(self._deliver_status(sink, q), name=f"status {sink.name}")
                for sink, q in zip(self.sinks, self._status_queues, strict=True)
            ]
            serve_tasks = [tg.create_task(sink.serve(), name=f"serve {sink.name}") for sink in self.sinks]
            helpers = [tg.create_task(companion(self), name=f"companion {i}") for i, companion in enumerate(companions)]
            tg.create_task(self._watch(stop, done, stages + sink_tasks), name="stop watcher")
            await asyncio.gather(*sink_tasks, return_exceptions=True)
            done.set()
            for q in self._status_queues:
                q.close()
            await asyncio.gather(*status_tasks, return_exceptions=True)
            await self._finish_sinks(serve_tasks)
            for task in helpers:
                task.cancel()
        self._tg = None
        return RunReport(self.metrics, self.snapshot(), tuple(self._failures), self._stopped)

    # -- sources: started at run, and added or removed by apply() while running
    def _start_source(self, spec: SourceConfig, sid: str) -> None:
        assert self._tg is not None, "sources start inside run()"
        branch = self._branches.get(spec.model or DEFAULT_MODEL_KEY)
        if branch is None:
            raise ConfigError(f"source {sid}: model {spec.model or DEFAULT_MODEL_KEY!r} is not loaded")
        fps = spec.fps if spec.fps is not None else self.cfg.fps
        source = make_source(spec, sid, fps, self.cfg.realtime, self._on_status)
        self.metrics.source(sid)
        if source.live:
            size, policy = self.cfg.live_queue_size, DropPolicy.DROP_OLDEST
        else:
            size, policy = self.cfg.queue_size, DropPolicy.BLOCK
        queue = branch.batcher.add_queue(spec.queue_size or size, spec.policy or policy)
        task = self._tg.create_task(self._produce(source, queue), name=f"source {sid}")
        self._running[sid] = _Running(spec, source, queue, task)
        self._specs[sid] = spec
        if spec.roi is not None:
            self._rois[sid] = spec.roi
        else:
            self._rois.pop(sid, None)

    def _seal(self) -> None:
        for branch in self._branches.values():
            branch.batcher.seal()

    def apply(self, cfg: Config) -> tuple[list[str], list[str]]:
        """Reload: start the sources ``cfg`` adds or changes, stop those it removes or changes; the others
        run on untouched. Returns ``(started, stopped)`` source ids. Other changes need a restart."""
        if self._tg is None or self._stopped:
            raise ConfigError("reload: the pipeline is not running")
        wanted = dict(zip(cfg.source_ids(), cfg.sources, strict=True))
        for i, spec in enumerate(wanted.values()):
            if (spec.model or DEFAULT_MODEL_KEY) not in self._branches:
                raise ConfigError(f"reload: sources.{i}.model {spec.model!r} is not loaded; restart to add models")
        if cfg.model_dump(exclude={"sources"}) != self.cfg.model_dump(exclude={"sources"}):
            log.warning("reload: only [[sources]] changes apply while running; restart for the other changes")
        stopped = [sid for sid, run in self._running.items() if wanted.get(sid) != run.spec]
        # a file that already ended stays ended unless its settings changed
        started = [sid for sid, spec in wanted.items() if self._specs.get(sid) != spec or sid in stopped]
        for sid in stopped:
            self._running[sid].task.cancel()
        for sid in started:
            self._retire(sid)
            self._start_source(wanted[sid], sid)
        self.cfg = self.cfg.model_copy(update={"sources": cfg.sources})
        return started, stopped

    def _retire(self, sid: str) -> None:
        """Forget a source that was stopped (its counters stay until a new one takes the id)."""
        old = self._running.pop(sid, None)
        if old is not None:
            old.queue.close()

    def snapshot(self) -> Snapshot:
        """An immutable picture of the pipeline, for the dashboard, status socket, metrics and watchdog."""
        queued: dict[str, int] = {}
        for sid, run in self._running.items():
            c = self.metrics.source(sid)
            c.decoded, c.sampled, c.corrupt = run.source.decoded, run.source.sampled, run.source.corrupt
            c.reconnects = run.source.reconnects
            c.dropped = run.queue.dropped + run.source.dropped
            queued[sid] = len(run.queue)
        return self.metrics.snapshot(queued, [sink.stats() for sink in self.sinks])

    async def _finish_sinks(self, serve_tasks: list[asyncio.Task[None]]) -> None:
        """Every result has been handed over: let each sink deliver the rest within the drain timeout."""
        for sink in self.sinks:
            await sink.close()
        _, late = await asyncio.wait(serve_tasks, timeout=self.drain_timeout) if serve_tasks else (set(), set())
        for task in late:
            log.error("%s: delivery did not finish within %.1f s", task.get_name(), self.drain_timeout)
            task.cancel()
        if late:
            await asyncio.wait(late)
        for sink in self.sinks:
            await sink.shutdown()

    def _on_status(self, status: SourceStatus) -> None:
        self.metrics.on_status(status)
        level = logging.WARNING if status.state in _BAD_STATES else logging.INFO
        reason = f" ({redact_text(status.reason)})" if status.reason else ""
        log.log(level, "source %s: %s%s", status.source, status.state.value, reason)
        for queue in self._status_queues:
            queue.offer(status)

    async def _watch(self, stop: asyncio.Event, done: asyncio.Event, downstream: list[asyncio.Task[None]]) -> None:
        """On ``stop``: end the sources, give the rest ``drain_timeout`` to finish, then cut it short."""
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(done.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
        if done.is_set():
            return
        self._stopped = True
        log.info("stopping: sources closed, draining what is in flight")
        self._seal()
        for run in self._running.values():
            run.task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), self.drain_timeout)
            return
        log.error("drain did not finish within %.1f s; results still in flight are lost", self.drain_timeout)
        for task in downstream:
            task.cancel()

    async def _produce(self, source: Source, queue: BoundedQueue[Frame]) -> None:
        counters = self.metrics.source(source.id)
        try:
            async with contextlib.aclosing(source.frames()) as frames:
                async for frame in frames:
                    await queue.put(frame)
        except SourceError as exc:
            self._failures.append(exc)
            counters.state, counters.reason = SourceState.FAILED, exc.reason
            self.metrics.error(str(exc))
            log.error("%s", exc)
        finally:
            counters.dropped = queue.dropped + source.dropped
            queue.close()
            current = self._running.get(source.id)
            if current is not None and current.source is source:
                counters.decoded, counters.sampled = source.decoded, source.sampled
                counters.corrupt, counters.reconnects = source.corrupt, source.reconnects
                del self._running[source.id]
            if not self._running:
                self._seal()

    async def _prepare(self, branch: _Branch) -> None:
        pre, batcher, free, out = branch.model.preprocessor, branch.batcher, branch.free, branch.prepared
        rois = self._rois

        def fill(items: list[Frame], tensor: Tensor) -> PreparedBatch:
            started = time.monotonic()
            geometries, times = [], []
            for i, f in enumerate(items):
                t0 = time.perf_counter()
                geometries.append(pre.into(f.image, tensor[i], f.pixel_format, rois.get(f.source)))
                times.append((time.perf_counter() - t0) * 1000.0)
            return PreparedBatch(tuple(items), tensor, tuple(geometries), tuple(times), started)

        try:
            while True:
                if self._live(branch):
                    # Latest-frame semantics: take frames only when inference is ready for them, so a
                    # newer frame can still replace a waiting one in its drop-oldest queue.
                    await branch.demand.acquire()
                if (items := await batcher.next_batch()) is None:
                    break
                tensor = await free.get()
                await out.put(await asyncio.to_thread(fill, items, tensor))
        finally:
            out.close()

    def _live(self, branch: _Branch) -> bool:
        return any(run.source.live for run in self._running.values() if run.queue in branch.batcher.queues)

    async def _close_when_done(self, inference: list[asyncio.Task[None]], sinks: list[BoundedQueue[Result]]) -> None:
        """Results end when every model's inference has ended (normally or not)."""
        try:
            await asyncio.gather(*inference, return_exceptions=True)
        finally:
            for q in sinks:
                q.close()

    async def _infer(self, branch: _Branch, sinks: list[BoundedQueue[Result]]) -> None:
        model, prepared, free = branch.model, branch.prepared, branch.free
        fixed = model.spec.batch is not None

        def run(batch: PreparedBatch) -> list[Result]:
            n = len(batch.items)
            started = time.monotonic()
            t0 = time.perf_counter()
            outputs = model.engine.run(batch.tensor if fixed else batch.tensor[:n])
            inference_ms = (time.perf_counter() - t0) * 1000.0
            results = []
            for i, (f, geo) in enumerate(zip(batch.items, batch.geometries, strict=True)):
                decoded = model.decoder.decode(outputs, i, geo)
                results.append(
                    Result(
                        source=f.source,
                        seq=f.seq,
                        frame_index=f.index,
                        pts=f.pts,
                        captured_at=f.captured_at,
                        model=model.name,
                        run_id=self.run_id,
                        width=f.width,
                        height=f.height,
                        batch_size=n,
                        timings=Timings(
                            queue_ms=(batch.started - f.decoded_mono) * 1000.0,
                            preprocess_ms=batch.preprocess_ms[i],
                            inference_ms=inference_ms,
                            age_ms=(started - f.captured_mono) * 1000.0,
                            total_ms=(time.monotonic() - f.decoded_mono) * 1000.0,
                        ),
                        detections=decoded.detections,
                        classifications=decoded.classifications,
                        outputs=decoded.outputs,
                        capture_clock=f.capture_clock,
                    )
                )
            return results

        try:
            while True:
                branch.demand.release()  # ask for the next batch only now (see _prepare)
                if (batch := await prepared.get()) is None:
                    break
                try:
                    results = await asyncio.to_thread(run, batch)
                finally:
                    free.put_nowait(batch.tensor)
                self.metrics.batches += 1
                self.metrics.frames += len(results)
                self.metrics.batch_sizes.add(len(results))
                self.metrics.inference_ms.add(results[0].timings.inference_ms)
                self.metrics.histograms["inference_ms"].add(results[0].timings.inference_ms)
                for result in results:
                    counters = self.metrics.source(result.source)
                    counters.processed += 1
                    counters.age_ms.add(result.timings.age_ms)
                    counters.capture_clock = result.capture_clock
                    self.metrics.histograms["age_ms"].add(result.timings.age_ms)
                    self.metrics.preprocess_ms.add(result.timings.preprocess_ms)
                    self.metrics.histograms["preprocess_ms"].add(result.timings.preprocess_ms)
                    for q in sinks:
                        await q.put(result)
        finally:
            prepared.close()

    async def _deliver_status(self, sink: Sink, queue: BoundedQueue[SourceStatus]) -> None:
        while (status := await queue.get()) is not None:
            await sink.send_status(status)

    async def _deliver(self, sink: Sink, queue: BoundedQueue[Result]) -> None:
        while (result := await queue.get()) is not None:
            await sink.send(result)
            self.metrics.delivered += 1


def describe_sources(cfg: Config) -> list[str]:
    return [f"{sid}={redact_url(s.url)}" for s, sid in zip(cfg.sources, cfg.source_ids(), strict=True)]
