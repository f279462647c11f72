"""Second models on crops of a branch's detections (issue 21, ``[[model.then]]``).

    ModelBranch (first model) ──► Cascade.put ──► per second model: Batcher of crops ──► crop + prepare +
                                   (held, in order)                   (its batch, max wait)   infer + decode
                                                                                           (its own thread)
                              ◄── deliver (in the order the frames came), or fail the frame ◄──┘

The branch hands over each decoded result (with its frame) instead of emitting it. For every detection a
second model wants (``on_labels``, ``min_score``), the box widened by ``margin`` is cut from the decoded
frame at native resolution (:func:`~streamprep.regions.values.box_region`, :func:`~streamprep.regions.crop`:
an I420 crop is converted exactly as the whole frame would be) and preprocessed by that model's own
contract. Crops of many frames and sources share a batch, up to the second model's batch size, a batch
going as soon as it is full or nothing more waits, and at most ``max_wait_ms`` after its first crop.

A frame is delivered once every crop of it is answered, in the order the frames were handed over. A crop
that cannot be cut or preprocessed, a failed inference or decoding fails the frames concerned and only
them: each is dropped as ``failed`` and its source is told, exactly as a failure in the first model.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from streamprep.flow.queues import DropPolicy
from streamprep.flow.threads import pool
from streamprep.inference.decoders.base import Decoded
from streamprep.inference.model import LoadedThen
from streamprep.preprocess.geometry import Geometry
from streamprep.regions.values import Region, box_region, crop, to_source
from streamprep.run.batching import Batcher
from streamprep.values.errors import frame_failure
from streamprep.values.events import EventOutput
from streamprep.values.frames import Detection, Frame, Result, StageClass
from streamprep.values.metrics import Metrics

log = logging.getLogger(__name__)

_MAX_CROPS_PER_FRAME = 10_000  # a frame's detections at most (model.max_detections' upper bound)

Deliver = Callable[[Frame, Result, list[EventOutput]], Awaitable[None]]  # emit a finished result
Fail = Callable[[list[tuple[Frame, str]]], None]  # drop frames as failed, telling their sources


@dataclass
class _Answer:
    """What second models made of one detection's crop so far."""

    classes: list[StageClass] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    outputs: dict[str, Any] | None = None
    classified: bool = False
    detected: bool = False


@dataclass
class _Held:
    """A result handed over by the branch, waiting for its crops' answers."""

    frame: Frame
    result: Result
    events: list[EventOutput]
    waiting: int = 0  # crops not answered yet
    failure: str | None = None
    answers: dict[int, _Answer] = field(default_factory=dict)  # by the detection's index
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def settle(self) -> None:
        self.waiting -= 1
        if self.waiting <= 0:
            self.done.set()


@dataclass(frozen=True)
class _Crop:
    held: _Held
    index: int  # the detection's index in the result
    region: Region


class _Stage:
    """One second model: its crops' batcher, its batch tensor and its inference thread."""

    def __init__(self, then: LoadedThen, name: str, crops_waiting: int) -> None:
        self.then = then
        model = then.model
        self.batcher: Batcher[_Crop] = Batcher(model.max_batch, then.max_wait)
        self.queue = self.batcher.add_queue(crops_waiting, DropPolicy.BLOCK)
        self.tensor = model.new_batch()
        self.executor = pool(name, 1)

    def run(self, crops: list[_Crop]) -> list[Decoded | str]:
        """Cut, preprocess, infer and decode a batch of crops (worker thread): each crop's answer, or why it
        failed (a failed inference fails them all)."""
        model = self.then.model
        pre, views = model.preprocessor, model.views
        answers: list[Decoded | str] = []
        slots: list[tuple[int, tuple[Geometry, ...]]] = []  # (index in crops, geometries) of prepared ones
        try:
            tensor = views.batch_for(pre, self.tensor, [(c.region.width, c.region.height, None) for c in crops])
        except Exception as exc:
            return [f"model {model.name}: {frame_failure(exc)}"] * len(crops)
        for i, c in enumerate(crops):
            f = c.held.frame
            try:
                image = crop(f.image, c.region, f.pixel_format)
                geometry = views.prepare(
                    pre, tensor, len(slots), image, f.pixel_format, None, f.color_matrix, f.color_range
                )
            except Exception as exc:
                log.debug("source %s: frame %d: a crop failed in preprocessing", f.source, f.seq, exc_info=True)
                answers.append(f"model {model.name}: crop {list(c.region.roi)}: {frame_failure(exc)}")
                continue
            slots.append((i, geometry))
            answers.append("")
        if not slots:
            return answers
        try:
            n = len(slots) * views.count
            outputs = model.engine.run(tensor if model.spec.batch is not None else tensor[:n])
        except Exception as exc:
            reason = f"model {model.name}: {frame_failure(exc)}"
            return [reason] * len(crops)
        for slot, (i, geometry) in enumerate(slots):
            try:
                answers[i] = views.decode(model.decoder, outputs, slot, geometry)
            except Exception as exc:
                answers[i] = f"model {model.name}: decoding its output failed: {frame_failure(exc)}"
        return answers


class Cascade:
    """The second models of one branch (``[[model.then]]``): takes its decoded results, delivers them with
    what the second models made of their detections' crops."""

    def __init__(self, key: str, stages: tuple[LoadedThen, ...], metrics: Metrics, first_batch: int = 1) -> None:
        held = max(8, 2 * first_batch, *(2 * t.model.max_batch for t in stages))
        self._metrics = metrics
        # a result is handed over in one step once there is room for it (see put), so its crops never wait
        self._stages = [_Stage(t, f"then-{key}-{i}", held * _MAX_CROPS_PER_FRAME) for i, t in enumerate(stages)]
        self._room = asyncio.Semaphore(held)  # results held at once (handing over waits beyond it)
        self._held: collections.deque[_Held] = collections.deque()  # in the order they came
        self._order: asyncio.Queue[_Held | None] = asyncio.Queue()

    # -- the branch's side
    def start(self, tg: asyncio.TaskGroup, deliver: Deliver, fail: Fail) -> list[asyncio.Task[None]]:
        tasks = [tg.create_task(self._stage(s, fail), name=f"then {s.then.model.name}") for s in self._stages]
        tasks.append(tg.create_task(self._deliver(deliver, fail), name="then deliver"))
        return tasks

    async def put(self, frame: Frame, result: Result, events: list[EventOutput]) -> None:
        """Hand over one decoded result; it is delivered (or failed) later, in the order handed over. Waits
        only for room, before taking anything: once it returns the result is held here (and counted by
        :meth:`abandon` if the run is cut short), until then it is still the caller's."""
        await self._room.acquire()
        held = _Held(frame, result, events)
        self._held.append(held)
        self._order.put_nowait(held)
        crops: list[tuple[_Stage, _Crop]] = []
        for i, d in enumerate(result.detections or ()):
            for stage in self._stages:
                if not stage.then.wants(d.label, d.score):
                    continue
                try:
                    region = box_region((d.box.x1, d.box.y1, d.box.x2, d.box.y2), stage.then.margin, *_size(result))
                except ValueError as exc:
                    held.failure = f"model {stage.then.model.name}: {exc}"
                    held.done.set()
                    return
                crops.append((stage, _Crop(held, i, region)))
        held.waiting = len(crops)
        if not crops:
            held.done.set()
        self._metrics.source(result.source).crops += len(crops)
        for stage, c in crops:
            stage.queue.offer(c)  # never full: room for every crop of every held result

    def close(self) -> None:
        """No more results will come: the stages end once their crops are answered, delivery after the last."""
        for stage in self._stages:
            stage.queue.close()
            stage.batcher.seal()
        self._order.put_nowait(None)

    def abandon(self) -> list[Frame]:
        """The run is cut short: the frames still held (the caller counts them as ``stopped``)."""
        frames = [h.frame for h in self._held]
        self._held.clear()
        for stage in self._stages:
            stage.queue.clear()
            stage.executor.shutdown(wait=False, cancel_futures=True)
        return frames

    # -- stages
    async def _stage(self, stage: _Stage, fail: Fail) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (crops := await stage.batcher.next_batch()) is not None:
                live = [c for c in crops if c.held.failure is None]
                answers = await loop.run_in_executor(stage.executor, stage.run, live) if live else []
                model = stage.then.model
                for c, answer in zip(live, answers, strict=True):
                    if isinstance(answer, str):
                        if c.held.failure is None:
                            c.held.failure = answer
                        continue
                    _record(c, answer, model.name)
                for c in crops:
                    c.held.settle()
        finally:
            stage.executor.shutdown(wait=False)

    async def _deliver(self, deliver: Deliver, fail: Fail) -> None:
        while (held := await self._order.get()) is not None:
            await held.done.wait()
            if self._held and self._held[0] is held:
                self._held.popleft()
            try:
                if held.failure is not None:
                    fail([(held.frame, held.failure)])
                else:
                    await deliver(held.frame, _answered(held), held.events)
            finally:
                self._room.release()


def _size(result: Result) -> tuple[int, int]:
    return result.width, result.height


def _record(c: _Crop, decoded: Decoded, model: str) -> None:
    """Put one crop's answer on its detection."""
    answer = c.held.answers.setdefault(c.index, _Answer())
    if decoded.classifications is not None:
        answer.classified = True
        answer.classes += [StageClass(model, k.label, k.class_id, k.score) for k in decoded.classifications]
    elif decoded.detections is not None:
        answer.detected = True
        answer.detections += to_source(decoded.detections, c.region)
    elif decoded.outputs is not None:
        answer.outputs = {**(answer.outputs or {}), **decoded.outputs}


def _answered(held: _Held) -> Result:
    """The held result with its detections' answers, its total time counted to now."""
    result = held.result
    if not held.answers or result.detections is None:
        return _timed(held)
    detections = list(result.detections)
    for i, a in held.answers.items():
        detections[i] = replace(
            detections[i],
            classes=tuple(a.classes) if a.classified else None,
            detections=tuple(sorted(a.detections, key=lambda d: -d.score)) if a.detected else None,
            outputs=a.outputs,
        )
    return replace(_timed(held), detections=tuple(detections))


def _timed(held: _Held) -> Result:
    """The held result with ``total_ms`` counted to now: the second models' time included."""
    t = held.result.timings
    total = max(t.total_ms, (time.monotonic() - held.frame.decoded_mono) * 1000.0)
    return replace(held.result, timings=replace(t, total_ms=total))
