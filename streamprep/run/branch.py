"""One model's share of the pipeline: batcher → prepare → infer and decode → results.

    per-source queues ──► Batcher ──► prepare (each frame, or each of its regions, into pooled batch tensors)
                                          ──► submit ──► infer (the engine, then each frame's decoder)
                                          ──► emit (in the order the batches were submitted)

Preprocessing and inference run in executors of their own, so neither waits behind decoding. A local model
has one batch in inference at a time; a remote one (:mod:`streamprep.inference.remote`) up to its ``max_in_flight``,
their results still emitted in order. What a frame takes in a batch (one slot, or one per region of its
source's ``regions``) is :mod:`streamprep.run.slots`' business; a ``motion`` source's next frame is planned
only once the one before it is reported. Whatever goes wrong with one frame (its region of interest, its
preprocessing, the decoding of its share of the model's output) is that frame's source's business: the
frame is dropped as ``failed`` and ``on_failure`` tells the supervisor, which ends (or restarts) that source
alone. A remote model's server that cannot be reached is nobody's fault: the live frames of the batch are
dropped as ``unavailable``, the batch is sent again with the files' frames after a capped backoff (files
wait), and ``on_trouble`` tells the supervisor which sources are affected and, later, that they recovered.
Every frame the branch takes is accounted for: it becomes a result, or it is dropped as ``failed`` or
``unavailable``, or as ``stopped`` when the run is cut short. With second models (``then``,
:mod:`streamprep.run.cascade`) a decoded result is handed over to them instead of emitted; they deliver it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Set
from concurrent.futures import Executor
from dataclasses import dataclass, field

from streamprep.events.engine import EventHub
from streamprep.flow.backoff import Backoff, BackoffPolicy
from streamprep.flow.queues import BoundedQueue, DropPolicy
from streamprep.inference.decoders.base import Decoded
from streamprep.inference.model import LoadedModel
from streamprep.preprocess.geometry import Region
from streamprep.regions.source import RegionSettings
from streamprep.regions.values import to_source
from streamprep.run.batching import Batcher
from streamprep.run.cascade import Cascade
from streamprep.run.slots import Inferred, Packer, PreparedBatch
from streamprep.values.errors import frame_failure
from streamprep.values.events import EventOutput
from streamprep.values.frames import BoxTuple, DropReason, Frame, Result, Tensor, Timings
from streamprep.values.metrics import Metrics, Timing

log = logging.getLogger(__name__)

_BUFFERS = 2  # batch tensors besides those in inference: one being filled, one queued
_RETRY_FIRST_S = 0.5  # the server is away: the first retry of a batch of file frames comes after this

FailureCallback = Callable[[str, str], None]  # (source id, reason)
TroubleCallback = Callable[[Set[str], "str | None"], None]  # (sources, why no results come; None: recovered)
Emit = Callable[[Result, list[EventOutput]], Awaitable[None]]  # a result and the events it caused


Made = tuple[Result, list[EventOutput]]


@dataclass
class _Flight:
    """A batch submitted to inference and not yet emitted; ``pending`` are its frames neither emitted nor
    dropped yet (what a stop must count)."""

    batch: PreparedBatch
    future: asyncio.Future[Inferred]
    pending: list[Frame] = field(default_factory=list)


class ModelBranch:
    """Batches frames for one model, prepares and runs them, and emits one result per frame."""

    def __init__(
        self,
        key: str,
        model: LoadedModel,
        max_wait: float,
        metrics: Metrics,
        run_id: str,
        regions: Mapping[str, Region],
        on_failure: FailureCallback,
        prepare_executor: Executor,
        infer_executor: Executor,
        events: EventHub | None = None,
        keep_frames: bool = False,
        *,
        live: Callable[[str], bool] = lambda _sid: False,
        on_trouble: TroubleCallback | None = None,
        then: Cascade | None = None,
        region_settings: Mapping[str, RegionSettings] | None = None,
    ) -> None:
        """``infer_executor`` needs ``model.in_flight`` threads; ``live(source)`` says whether a source is
        live (its frames are dropped while the server is away, a file's wait); ``then`` takes the decoded
        results and delivers them (second models); ``region_settings``: each source's ``regions`` (a source
        not in it: the whole frame)."""
        self.key = key
        self.model = model
        self.batcher: Batcher[Frame] = Batcher(model.max_batch, max_wait)
        self._metrics = metrics
        self._run_id = run_id
        self._on_failure = on_failure
        self._prepare_executor = prepare_executor
        self._infer_executor = infer_executor
        self._events = events
        self._keep_frames = keep_frames  # results carry their decoded frame (library use)
        self._is_live = live
        self._on_trouble = on_trouble
        self._then = then
        self._packer = Packer(model, regions, region_settings if region_settings is not None else {})
        self._unreported: collections.Counter[str] = collections.Counter()  # motion sources: batches on their way
        self._reported = asyncio.Event()  # a batch was emitted: a motion source's next frame may be planned
        self._prepared: BoundedQueue[PreparedBatch] = BoundedQueue(1)
        self._free: asyncio.Queue[Tensor] = asyncio.Queue()
        for _ in range(_BUFFERS + model.in_flight):
            self._free.put_nowait(model.new_batch())
        self._demand = asyncio.Semaphore(0)
        self._slots = asyncio.Semaphore(model.in_flight)  # batches submitted and not yet emitted
        self._submitted: asyncio.Queue[_Flight | None] = asyncio.Queue()  # in order; at most in_flight
        self._live_queues: set[int] = set()
        self._in_hand: tuple[Frame, ...] = ()  # taken from the batcher, not yet prepared
        self._flying: list[_Flight] = []  # submitted, not yet emitted
        self._seen: set[str] = set()  # every source that gave this branch a frame
        self._troubled: set[str] = set()  # sources told that the server is away (all seen, while it is)
        self._trouble_reason = ""
        self._backoff = Backoff(BackoffPolicy(first_s=_RETRY_FIRST_S, cap_s=model.retry_cap_s))

    # -- inputs
    def add_queue(self, maxsize: int, policy: DropPolicy, live: bool) -> BoundedQueue[Frame]:
        queue = self.batcher.add_queue(maxsize, policy)
        if live:
            self._live_queues.add(id(queue))
        return queue

    def seal(self) -> None:
        """No more sources will be added: the branch ends once its queues are drained."""
        self.batcher.seal()

    def _live(self) -> bool:
        return any(id(q) in self._live_queues for q in self.batcher.queues)

    # -- stages
    def start(self, tg: asyncio.TaskGroup, emit: Emit) -> list[asyncio.Task[None]]:
        """Start the stages in ``tg``; they end once the last result has been emitted."""
        tasks = [
            tg.create_task(self._prepare_stage(), name=f"prepare {self.key}"),
            tg.create_task(self._submit_stage(), name=f"submit {self.key}"),
            tg.create_task(self._emit_stage(emit), name=f"infer {self.key}"),
        ]
        if self._then is not None:
            tasks += self._then.start(tg, lambda f, r, e: self._deliver(emit, r, e), self._fail)
        return tasks

    def _release(self, batch: PreparedBatch) -> None:
        """The batch's tensors go back: the first to the pool, the others to the spares (bounded)."""
        self._free.put_nowait(batch.buffers[0])
        self._packer.keep_spares(batch.buffers[1:])

    async def _prepare_stage(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if self._live():
                    # Latest-frame semantics: take frames only when inference is ready for them, so a
                    # newer frame can still replace a waiting one in its drop-oldest queue.
                    await self._demand.acquire()
                if (items := await self.batcher.next_batch()) is None:
                    break
                self._in_hand = tuple(items)
                self._seen.update(f.source for f in items)
                if self._troubled and not self._seen <= self._troubled:
                    self._trouble(self._trouble_reason)  # a source joined while the server is away
                pending, first = list(items), True
                while pending:
                    now, pending = self._packer.plannable(pending, self._unreported)
                    if not now:  # motion sources whose last frame is not reported yet
                        self._reported.clear()
                        await self._reported.wait()
                        continue
                    if not first and self._live():
                        await self._demand.acquire()  # a batch of its own: it takes its turn
                    first = False
                    tensor = await self._free.get()
                    try:
                        batch, failed = await loop.run_in_executor(
                            self._prepare_executor, self._packer.fill, now, tensor
                        )
                    except BaseException:
                        self._free.put_nowait(tensor)
                        raise
                    self._fail(failed)
                    if not batch.items:
                        self._release(batch)
                        self._in_hand = tuple(pending)
                        self._demand.release()
                        continue
                    self._unreported.update(batch.motion_sources)
                    await self._prepared.put(batch)
                    self._in_hand = tuple(pending)
        finally:
            self._prepared.close()

    def _fail(self, failed: list[tuple[Frame, str]]) -> None:
        for frame, reason in failed:
            self._metrics.source(frame.source).drops[DropReason.FAILED] += 1
            self._on_failure(frame.source, reason)

    def _finish(self, batch: PreparedBatch, done: Inferred) -> tuple[list[Made], list[tuple[Frame, str]]]:
        """Each decoded frame's result (worker thread): the whole frame's answer, or its regions' detections
        merged in source pixels (with ``motion``, and the carried ones); then, with ``[events]``, its tracking
        and events (snapshots come from the very frame)."""
        model = self.model
        n = len(batch.items)
        results: list[Made] = []
        failed: list[tuple[Frame, str]] = []
        for f, slots, geos, planning, preprocess_ms in zip(
            batch.items, done.decoded, batch.geometries, batch.plans, batch.preprocess_ms, strict=True
        ):
            if slots is None:
                continue
            try:
                if planning is None:
                    decoded = slots[0]
                    g = geos[0][0]  # the part of the frame the model saw: all of it, or its roi
                    x, y = float(g.crop_x), float(g.crop_y)
                    regions: tuple[BoxTuple, ...] = ((x, y, x + g.crop_width, y + g.crop_height),)
                else:
                    plan = planning.plan
                    found = [to_source(d.detections or (), r) for d, r in zip(slots, plan.regions, strict=True)]
                    iou = model.views.options.iou_threshold
                    decoded = Decoded(detections=planning.state.report(plan, found, planning.pts, iou))
                    regions = tuple(r.box for r in plan.regions)
            except Exception as exc:
                log.debug("source %s: frame %d failed in merging its regions", f.source, f.seq, exc_info=True)
                failed.append((f, f"regions: {frame_failure(exc)}"))
                continue
            result = Result(
                source=f.source,
                seq=f.seq,
                frame_index=f.index,
                pts=f.pts,
                captured_at=f.captured_at,
                model=model.name,
                run_id=self._run_id,
                width=f.width,
                height=f.height,
                batch_size=n,
                timings=Timings(
                    queue_ms=(batch.started - f.decoded_mono) * 1000.0,
                    preprocess_ms=preprocess_ms,
                    inference_ms=done.inference_ms,
                    age_ms=(done.started - f.captured_mono) * 1000.0,
                    total_ms=(time.monotonic() - f.decoded_mono) * 1000.0,
                ),
                detections=decoded.detections,
                classifications=decoded.classifications,
                outputs=decoded.outputs,
                capture_clock=f.capture_clock,
                frame=f if self._keep_frames else None,
                regions=regions,
            )
            if self._events is None:
                results.append((result, []))
                continue
            try:
                made = self._events.process(result, f.image, f.pixel_format)
            except Exception as exc:
                log.debug("source %s: frame %d failed in tracking", f.source, f.seq, exc_info=True)
                failed.append((f, f"events: {frame_failure(exc)}"))
                continue
            if planning is not None and result.detections:
                planning.state.remember(result.detections, made[0].detections or ())
            results.append(made)
        return results, failed

    def _launch(self, batch: PreparedBatch) -> asyncio.Future[Inferred]:
        return asyncio.get_running_loop().run_in_executor(self._infer_executor, self._packer.infer, batch)

    async def _submit_stage(self) -> None:
        """Send prepared batches to inference, up to ``model.in_flight`` at once."""
        try:
            while True:
                await self._slots.acquire()  # a batch was emitted (or none is in flight yet)
                self._demand.release()  # ask for the next batch only now (see _prepare_stage)
                if (batch := await self._prepared.get()) is None:
                    break
                flight = _Flight(batch, self._launch(batch), list(batch.items))
                self._flying.append(flight)
                self._submitted.put_nowait(flight)
        finally:
            self._prepared.close()
            self._submitted.put_nowait(None)

    async def _emit_stage(self, emit: Emit) -> None:
        """Take each batch's outcome in submission order, make its results and emit them."""
        metrics = self._metrics
        loop = asyncio.get_running_loop()
        try:
            while (flight := await self._submitted.get()) is not None:
                made: list[Made] = []
                late: list[tuple[Frame, str]] = []
                try:
                    done = await self._settle(flight)
                    if done.decoded:  # results, merging and tracking where the region states live
                        made, late = await loop.run_in_executor(
                            self._prepare_executor, self._finish, flight.batch, done
                        )
                finally:
                    self._release(flight.batch)
                    self._unreported.subtract(flight.batch.motion_sources)
                    self._reported.set()
                self._fail(done.failed + late)
                failed = {id(f) for f, _ in done.failed + late}
                flight.pending = [f for f in flight.pending if id(f) not in failed]
                if made:
                    metrics.batches += 1
                    metrics.frames += len(made)
                    metrics.batch_sizes.add(len(flight.batch.items))
                    metrics.inference_ms.add(done.inference_ms)
                    metrics.histograms[Timing.INFERENCE].add(done.inference_ms)
                for frame, (result, outputs) in _pair(flight.batch.items, made):
                    if self._then is None:
                        await self._deliver(emit, result, outputs)
                    else:
                        await self._then.put(frame, result, outputs)  # delivered once its crops are answered
                    flight.pending = [f for f in flight.pending if f is not frame]
                self._flying.remove(flight)
                self._slots.release()
            if self._then is not None:
                self._then.close()
        finally:
            self._prepared.close()

    async def _deliver(self, emit: Emit, result: Result, outputs: list[EventOutput]) -> None:
        """Emit one result and count it."""
        await emit(result, outputs)
        metrics = self._metrics
        counters = metrics.source(result.source)
        counters.processed += 1
        counters.model_runs += len(result.regions)
        counters.age_ms.add(result.timings.age_ms)
        counters.capture_clock = result.capture_clock
        metrics.histograms[Timing.AGE].add(result.timings.age_ms)
        metrics.preprocess_ms.add(result.timings.preprocess_ms)
        metrics.histograms[Timing.PREPROCESS].add(result.timings.preprocess_ms)

    async def _settle(self, flight: _Flight) -> Inferred:
        """The flight's outcome. While the server is away its live frames are dropped (``unavailable``) and
        the rest is sent again after a capped, jittered backoff, until it answers or the run is stopped."""
        while True:
            done = await flight.future
            if done.unavailable is None:
                self._recovered()
                return done
            batch = flight.batch
            self._trouble(done.unavailable)
            keep = [i for i, f in enumerate(batch.items) if not self._is_live(f.source)]
            for f in batch.items:
                if self._is_live(f.source):
                    self._metrics.source(f.source).drops[DropReason.UNAVAILABLE] += 1
            flight.pending = [f for f in flight.pending if not self._is_live(f.source)]
            if not keep:
                return Inferred([], [])
            flight.batch = self._packer.compact(batch, keep)
            await asyncio.sleep(self._backoff.next_wait())
            flight.future = self._launch(flight.batch)

    def _trouble(self, reason: str) -> None:
        """The server is away: every source of the branch is told (its frames cannot come out either)."""
        if not self._troubled:
            log.warning("model %s: %s; live frames are dropped, frames of files wait", self.model.name, reason)
        self._trouble_reason = reason
        new = self._seen - self._troubled
        self._troubled |= new
        if new and self._on_trouble is not None:
            self._on_trouble(new, f"model {self.model.name}: {reason}")

    def _recovered(self) -> None:
        self._backoff.succeeded()
        if not self._troubled:
            return
        log.info("model %s: the inference server answers again", self.model.name)
        sources, self._troubled = self._troubled, set()
        if self._on_trouble is not None:
            self._on_trouble(sources, None)

    # -- stopping
    def abandon(self) -> int:
        """The run is cut short: count every frame the branch still holds as dropped (``stopped``)."""
        frames = list(self._in_hand) + self.batcher.take_gathering()
        frames += [f for flight in self._flying for f in flight.pending]
        frames += self._then.abandon() if self._then is not None else []
        self._in_hand = ()
        self._flying = []
        while (batch := self._prepared.get_nowait()) is not None:
            frames.extend(batch.items)
        for queue in self.batcher.queues:
            while (frame := queue.get_nowait()) is not None:
                frames.append(frame)
        for frame in frames:
            self._metrics.source(frame.source).drops[DropReason.STOPPED] += 1
        return len(frames)


def _pair(items: tuple[Frame, ...], results: list[Made]) -> list[tuple[Frame, Made]]:
    """Each result with the frame it came from (results keep the frames' order, minus failed ones)."""
    by_key = {(f.source, f.seq): f for f in items}
    return [(by_key[(made[0].source, made[0].seq)], made) for made in results]
