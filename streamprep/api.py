"""streamprep as a library: results (or bare tensors) from video, in a few lines.

    import streamprep

    for result in streamprep.stream("video.mp4", fps=5):           # a synchronous iterator
        print(result.source, result.pts, result.detections)

    async with streamprep.open(["rtsp://cam/1", "rtsp://cam/2"], model="fastestdet_352") as run:
        async for result in run:                                    # the same, async
            print(run.snapshot().sources)

    for batch in streamprep.tensors("video.mp4", "my_model.onnx", batch=8):   # your own inference
        outputs = my_session.run(batch.tensor)
        boxes = batch.slots[0].to_source(my_boxes)                  # back to source pixels

Everything the command line can do is here: the same supervision, sampling, batching, preprocessing and
accounting. Options are the config's keys (top level or ``[model]``), by name. It is bounded by default:
a consumer slower than a live source makes that source's results drop (counted in ``snapshot()``), it never
makes memory grow; results from files wait for the consumer instead, so none is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from streamprep.config.schema import Config, ModelConfig, parse
from streamprep.flow.queues import BoundedQueue
from streamprep.inference.decoders.base import Decoded
from streamprep.inference.model import LoadedModel, load_model
from streamprep.inference.onnx import ModelInfo
from streamprep.preprocess.geometry import Geometry
from streamprep.preprocess.kernels import Preprocessor
from streamprep.preprocess.spec import PreprocessSpec
from streamprep.run.pipeline import Pipeline, RunReport
from streamprep.sinks.base import Sink
from streamprep.sources.base import Source
from streamprep.values.errors import ConfigError
from streamprep.values.events import EventOutput
from streamprep.values.frames import Frame, Result, SourceStatus, Tensor
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
    return parse(data), custom


class _Consumer:
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

    Leaving the ``async with`` block stops the sources and finishes what is in flight (within the config's
    ``drain_timeout_s``); results not read by then are discarded. :attr:`report` has the counts afterwards.
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
        self._custom = dict(custom or {})
        self._frames = frames
        self._buffer = buffer
        self._extra = list(sinks)
        self._models = dict(models) if models is not None else None
        self._consumer = _Consumer(buffer, cfg.events is not None)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[RunReport] | None = None
        self.pipeline: Pipeline | None = None
        self.report: RunReport | None = None

    async def __aenter__(self) -> Run:
        models = self._models
        if models is None:
            models = {}
            for key in self.cfg.used_models():
                models[key] = await asyncio.to_thread(load_model, self.cfg.model_for(key))
        for sink in self._extra:
            await sink.open()
        self.pipeline = Pipeline(
            self.cfg,
            models,
            [self._consumer, *self._extra],
            sources=self._custom,
            keep_frames=self._frames,
            sink_queue=self._buffer,
        )
        self._task = asyncio.create_task(self.pipeline.run(self._stop), name="streamprep run")
        return self

    def __aiter__(self) -> Run:
        return self

    async def __anext__(self) -> Result:
        item = await self._consumer.queue.get()
        if item is None:
            raise StopAsyncIteration
        return item  # type: ignore[return-value]  # an Event too when the config has [events]

    def snapshot(self) -> Snapshot:
        """The run's counters now: per source state, decoded, sampled, processed, dropped; sinks; timings."""
        if self.pipeline is None:
            raise RuntimeError("the run has not started: use it in `async with`")
        return self.pipeline.snapshot()

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
        if self._task is not None:
            self.report = await self._task


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
    be loaded, say) are raised here; a source that fails is in the report and its status.
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


# -- bare tensors, for your own inference
@dataclass(frozen=True)
class Slot:
    """One frame's row of a :class:`TensorBatch`: where it came from, and the way back to its pixels."""

    index: int  # its row of the batch tensor (with test-time augmentation off: one row per frame)
    source: str
    seq: int
    pts: float | None
    frame_index: int
    width: int
    height: int
    geometry: Geometry
    frame: Frame | None = dataclasses.field(default=None, repr=False)

    def to_source(self, boxes: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Boxes ``[N, 4]`` (x1, y1, x2, y2) in the model input's pixels, in the source frame's pixels."""
        return np.asarray(self.geometry.boxes_to_source(np.asarray(boxes, dtype=np.float64)), dtype=np.float64)


@dataclass(frozen=True)
class TensorBatch:
    """A batch of preprocessed frames, exactly as the model would get it, and what each row is."""

    tensor: Tensor
    slots: tuple[Slot, ...]


class _Copy:
    """An engine that runs nothing: its one output is a copy of the batch tensor."""

    def __init__(self, info: ModelInfo) -> None:
        self.info = info

    def run(self, tensor: Tensor) -> list[Tensor]:
        return [np.array(tensor, copy=True)]


class _Rows:
    """A decoder that says which row of the copied tensor is this frame's, and how it was made."""

    kind = "raw"

    def decode(self, outputs: list[Tensor], index: int, geometry: Geometry) -> Decoded:
        return Decoded(outputs={"tensor": outputs[0], "row": index, "geometry": geometry})


def _tensor_model(model_or_spec: str | Path | PreprocessSpec | Mapping[str, Any], batch: int) -> LoadedModel:
    if isinstance(model_or_spec, PreprocessSpec):
        spec = model_or_spec
        if not (spec.width and spec.height):
            raise ConfigError("tensors: the spec needs width and height")
        info = ModelInfo(Path("spec"), "tensors", (), (), {}, {}, ())
        return LoadedModel("tensors", _Copy(info), spec, {}, Preprocessor(spec), _Rows(), spec.batch or batch)
    table: dict[str, Any] = (
        {"path": str(model_or_spec)} if isinstance(model_or_spec, str | Path) else dict(model_or_spec)
    )
    table.setdefault("batch", batch)
    loaded = load_model(parse({"model": table}).model)
    return dataclasses.replace(loaded, engine=_Copy(loaded.engine.info), decoder=_Rows())


def tensors(
    sources: SourceLike | Sequence[SourceLike],
    model_or_spec: str | Path | PreprocessSpec | Mapping[str, Any],
    *,
    fps: float | None = None,
    batch: int = 8,
    max_wait_ms: float = 50.0,
    frames: bool = False,
    buffer: int = BUFFER,
    **options: Any,
) -> Iterator[TensorBatch]:
    """``for batch in streamprep.tensors(sources, "model.onnx", batch=8): ...`` — preprocessed batches
    (from a model's contract, or a :class:`~streamprep.preprocess.spec.PreprocessSpec`) for inference you
    run yourself: PyTorch, TensorRT, a remote server. Every slot says its source, pts and geometry, with
    the inverse mapping to source pixels. Sampling, batching across sources and supervision as in a run.
    """
    loaded = _tensor_model(model_or_spec, batch)
    cfg, custom = configure(sources, None, fps, max_wait_ms=max_wait_ms, **options)
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"batch": loaded.max_batch})})
    rows = _iterate(
        lambda: Run(cfg, custom, frames=frames, buffer=buffer * max(1, loaded.max_batch), models={"default": loaded}),
        buffer * max(1, loaded.max_batch),
    )
    return _batches(rows)


def _batches(results: Iterable[Result]) -> Iterator[TensorBatch]:
    """Results of one batch come one after another and share the copied tensor: group them."""
    current: Tensor | None = None
    slots: list[Slot] = []
    for r in results:
        out = r.outputs or {}
        tensor = out["tensor"]
        if current is not None and tensor is not current:
            yield TensorBatch(current, tuple(slots))
            slots = []
        current = tensor
        slots.append(
            Slot(out["row"], r.source, r.seq, r.pts, r.frame_index, r.width, r.height, out["geometry"], r.frame)
        )
    if current is not None:
        yield TensorBatch(current, tuple(slots))
