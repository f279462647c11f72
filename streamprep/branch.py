"""One model's share of the pipeline: batcher → prepare → infer and decode → results.

    per-source queues ──► Batcher ──► prepare (preprocess into a pooled batch tensor)
                                          ──► infer (ONNX Runtime, then each frame's decoder) ──► emit

Preprocessing and inference run in executors of their own, so neither waits behind decoding. Whatever goes
wrong with one frame (its region of interest, its preprocessing, the decoding of its share of the model's
output) is that frame's source's business: the frame is dropped as ``failed`` and ``on_failure`` tells the
supervisor, which ends (or restarts) that source alone. Every frame the branch takes is accounted for: it
becomes a result, or it is dropped as ``failed``, or as ``stopped`` when the run is cut short.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass

from streamprep.batching import Batcher
from streamprep.errors import StreamprepError, internal_error
from streamprep.events.engine import EventHub
from streamprep.events.values import EventOutput
from streamprep.frames import DropReason, Frame, Result, Tensor, Timings
from streamprep.metrics import Metrics
from streamprep.model import LoadedModel
from streamprep.preprocess.geometry import Geometry, Region
from streamprep.queues import BoundedQueue, DropPolicy

log = logging.getLogger(__name__)

_BUFFERS = 3  # batch tensors in flight: one being filled, one queued, one in inference

FailureCallback = Callable[[str, str], None]  # (source id, reason)
Emit = Callable[[Result, list[EventOutput]], Awaitable[None]]  # a result and the events it caused


@dataclass(frozen=True)
class PreparedBatch:
    items: tuple[Frame, ...]
    tensor: Tensor
    geometries: tuple[tuple[Geometry, ...], ...]  # per frame, one per view (test-time augmentation)
    preprocess_ms: tuple[float, ...]
    started: float


def frame_failure(exc: BaseException) -> str:
    """The reason a frame failed, in one line: our own errors as they are, anything else as a bug."""
    return str(exc) if isinstance(exc, StreamprepError) else internal_error(exc)


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
    ) -> None:
        self.key = key
        self.model = model
        self.batcher: Batcher[Frame] = Batcher(model.max_batch, max_wait)
        self._metrics = metrics
        self._run_id = run_id
        self._regions = regions
        self._on_failure = on_failure
        self._prepare_executor = prepare_executor
        self._infer_executor = infer_executor
        self._events = events
        self._keep_frames = keep_frames  # results carry their decoded frame (library use)
        self._prepared: BoundedQueue[PreparedBatch] = BoundedQueue(1)
        self._free: asyncio.Queue[Tensor] = asyncio.Queue()
        for _ in range(_BUFFERS):
            self._free.put_nowait(model.new_batch())
        self._demand = asyncio.Semaphore(0)
        self._live_queues: set[int] = set()
        self._in_hand: tuple[Frame, ...] = ()  # taken from the batcher, not yet prepared
        self._in_inference: tuple[Frame, ...] = ()  # prepared or inferred, not yet emitted

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
        """Start both stages in ``tg``; they end once the last result has been emitted."""
        return [
            tg.create_task(self._prepare_stage(), name=f"prepare {self.key}"),
            tg.create_task(self._infer_stage(emit), name=f"infer {self.key}"),
        ]

    def _shape(self, items: list[Frame], tensor: Tensor) -> tuple[Tensor, list[Frame], list[tuple[Frame, str]]]:
        """The tensor ``items`` go into (a view shaped for them with ``resize = rect``), and the frames whose
        size or region cannot be planned at all, set apart."""
        pre, views, regions = self.model.preprocessor, self.model.views, self._regions

        def shape(frames: list[Frame]) -> Tensor:
            return views.batch_for(pre, tensor, [(f.width, f.height, regions.get(f.source)) for f in frames])

        try:
            return shape(items), items, []
        except Exception:
            good: list[Frame] = []
            failed: list[tuple[Frame, str]] = []
            for f in items:
                try:
                    shape([f])
                    good.append(f)
                except Exception as exc:
                    failed.append((f, frame_failure(exc)))
            return (shape(good) if good else tensor), good, failed

    def _fill(self, items: list[Frame], tensor: Tensor) -> tuple[PreparedBatch, list[tuple[Frame, str]]]:
        """Preprocess ``items`` into ``tensor`` (worker thread); a frame that fails takes no slot."""
        pre, views, regions = self.model.preprocessor, self.model.views, self._regions
        started = time.monotonic()
        tensor, items, failed = self._shape(items, tensor)
        kept: list[Frame] = []
        geometries: list[tuple[Geometry, ...]] = []
        times: list[float] = []
        for f in items:
            t0 = time.perf_counter()
            try:
                geometry = views.prepare(
                    pre,
                    tensor,
                    len(kept),
                    f.image,
                    f.pixel_format,
                    regions.get(f.source),
                    f.color_matrix,
                    f.color_range,
                )
            except Exception as exc:
                log.debug("source %s: frame %d failed in preprocessing", f.source, f.seq, exc_info=True)
                failed.append((f, frame_failure(exc)))
                continue
            kept.append(f)
            geometries.append(geometry)
            times.append((time.perf_counter() - t0) * 1000.0)
        return PreparedBatch(tuple(kept), tensor, tuple(geometries), tuple(times), started), failed

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
                tensor = await self._free.get()
                try:
                    batch, failed = await loop.run_in_executor(self._prepare_executor, self._fill, items, tensor)
                except BaseException:
                    self._free.put_nowait(tensor)
                    raise
                self._fail(failed)
                if not batch.items:
                    self._free.put_nowait(tensor)
                    self._in_hand = ()
                    self._demand.release()
                    continue
                await self._prepared.put(batch)
                self._in_hand = ()
        finally:
            self._prepared.close()

    def _fail(self, failed: list[tuple[Frame, str]]) -> None:
        for frame, reason in failed:
            self._metrics.source(frame.source).drops[DropReason.FAILED] += 1
            self._on_failure(frame.source, reason)

    def _infer(self, batch: PreparedBatch) -> tuple[list[tuple[Result, list[EventOutput]]], list[tuple[Frame, str]]]:
        """Run the model on a prepared batch, decode each frame's share and, with ``[events]``, track its
        objects and make its events (worker thread; snapshots come from the very frame)."""
        model = self.model
        n = len(batch.items)
        started = time.monotonic()
        t0 = time.perf_counter()
        try:
            fixed = model.spec.batch is not None
            outputs = model.engine.run(batch.tensor if fixed else batch.tensor[: n * model.views.count])
        except Exception as exc:
            reason = frame_failure(exc)
            return [], [(f, reason) for f in batch.items]
        inference_ms = (time.perf_counter() - t0) * 1000.0
        results: list[tuple[Result, list[EventOutput]]] = []
        failed: list[tuple[Frame, str]] = []
        for i, (f, geo) in enumerate(zip(batch.items, batch.geometries, strict=True)):
            try:
                decoded = model.views.decode(model.decoder, outputs, i, geo)
            except Exception as exc:
                log.debug("source %s: frame %d failed in decoding", f.source, f.seq, exc_info=True)
                failed.append((f, f"model {model.name}: decoding its output failed: {frame_failure(exc)}"))
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
                    preprocess_ms=batch.preprocess_ms[i],
                    inference_ms=inference_ms,
                    age_ms=(started - f.decoded_mono) * 1000.0,
                    total_ms=(time.monotonic() - f.decoded_mono) * 1000.0,
                ),
                detections=decoded.detections,
                classifications=decoded.classifications,
                outputs=decoded.outputs,
                frame=f if self._keep_frames else None,
            )
            if self._events is None:
                results.append((result, []))
                continue
            try:
                results.append(self._events.process(result, f.image, f.pixel_format))
            except Exception as exc:
                log.debug("source %s: frame %d failed in tracking", f.source, f.seq, exc_info=True)
                failed.append((f, f"events: {frame_failure(exc)}"))
        return results, failed

    async def _infer_stage(self, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        metrics = self._metrics
        try:
            while True:
                self._demand.release()  # ask for the next batch only now (see _prepare_stage)
                if (batch := await self._prepared.get()) is None:
                    break
                self._in_inference = batch.items
                try:
                    results, failed = await loop.run_in_executor(self._infer_executor, self._infer, batch)
                finally:
                    self._free.put_nowait(batch.tensor)
                self._fail(failed)
                if results:
                    inference_ms = results[0][0].timings.inference_ms
                    metrics.batches += 1
                    metrics.frames += len(results)
                    metrics.batch_sizes.add(len(batch.items))
                    metrics.inference_ms.add(inference_ms)
                    metrics.histograms["inference_ms"].add(inference_ms)
                emitted = {id(f) for f, _ in failed}
                for frame, (result, outputs) in _pair(batch.items, results):
                    await emit(result, outputs)
                    emitted.add(id(frame))
                    self._in_inference = tuple(f for f in batch.items if id(f) not in emitted)
                    counters = metrics.source(result.source)
                    counters.processed += 1
                    counters.age_ms.add(result.timings.age_ms)
                    metrics.histograms["age_ms"].add(result.timings.age_ms)
                    metrics.preprocess_ms.add(result.timings.preprocess_ms)
                    metrics.histograms["preprocess_ms"].add(result.timings.preprocess_ms)
                self._in_inference = ()
        finally:
            self._prepared.close()

    # -- stopping
    def abandon(self) -> int:
        """The run is cut short: count every frame the branch still holds as dropped (``stopped``)."""
        frames = list(self._in_hand) + list(self._in_inference)
        self._in_hand = self._in_inference = ()
        while (batch := self._prepared.get_nowait()) is not None:
            frames.extend(batch.items)
        for queue in self.batcher.queues:
            while (frame := queue.get_nowait()) is not None:
                frames.append(frame)
        for frame in frames:
            self._metrics.source(frame.source).drops[DropReason.STOPPED] += 1
        return len(frames)


Made = tuple[Result, list[EventOutput]]


def _pair(items: tuple[Frame, ...], results: list[Made]) -> list[tuple[Frame, Made]]:
    """Each result with the frame it came from (results keep the frames' order, minus failed ones)."""
    by_key = {(f.source, f.seq): f for f in items}
    return [(by_key[(made[0].source, made[0].seq)], made) for made in results]
