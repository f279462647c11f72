"""A model branch's batch slots: frames, or their regions, packed into batch tensors, run and decoded.

With ``regions = "full"`` a frame takes one slot (the whole frame, or its roi), exactly as before regions;
with ``tiles`` or ``motion`` it takes one slot per region of its plan (:mod:`streamprep.regions`), cropped
at native resolution and preprocessed like a frame. The slots of a batch's frames fill tensors of the
model's batch size, one after the other (a fixed batch of 1: one region per run). Everything here runs in
the branch's worker threads; :class:`~streamprep.run.branch.ModelBranch` coordinates.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from streamprep.inference.decoders.base import Decoded
from streamprep.inference.model import LoadedModel
from streamprep.preprocess.geometry import Geometry, Region
from streamprep.regions.source import RegionSettings, SourceRegions
from streamprep.regions.values import RegionPlan, crop
from streamprep.values.errors import ServerUnavailable, frame_failure
from streamprep.values.frames import Frame, RegionMode, Tensor

log = logging.getLogger(__name__)

SPARES = 64  # batch tensors kept for batches whose regions fill more than one


@dataclass(frozen=True)
class Planned:
    """A frame's regions (``regions`` other than ``full``): its source's state, its plan, its time (s)."""

    state: SourceRegions
    plan: RegionPlan
    pts: float


@dataclass(frozen=True)
class PreparedBatch:
    """Frames preprocessed for one inference step. Each frame takes one slot (the whole frame, ``plans[i]``
    None) or one per region of its plan, at consecutive positions from ``spans[i][0]``; position ``p`` is
    slot ``p % per_tensor`` of ``tensors[p // per_tensor]``, ``used[c]`` the slots tensor ``c`` runs with (a
    frame that failed midway leaves its positions unused). ``buffers`` are the pooled tensors behind them."""

    items: tuple[Frame, ...]
    tensors: tuple[Tensor, ...]
    geometries: tuple[tuple[tuple[Geometry, ...], ...], ...]  # per frame, per slot, one per view
    preprocess_ms: tuple[float, ...]
    started: float
    spans: tuple[tuple[int, int], ...] = ()  # per frame: its first position and its number of slots
    plans: tuple[Planned | None, ...] = ()  # per frame: its regions (None: the whole frame)
    used: tuple[int, ...] = ()  # per tensor
    per_tensor: int = 1
    buffers: tuple[Tensor, ...] = ()
    motion_sources: tuple[str, ...] = ()  # the motion sources of its frames: their next frames wait for it


@dataclass(frozen=True)
class Inferred:
    """What became of a batch in inference: each frame's decoded slots (None: the frame failed), frames that
    failed, or the server was away."""

    decoded: list[list[Decoded] | None]
    failed: list[tuple[Frame, str]]
    unavailable: str | None = None  # why nothing was inferred (ServerUnavailable): the batch may be sent again
    inference_ms: float = 0.0
    started: float = 0.0  # when its inference started (time.monotonic)


class Packer:
    """Plans each frame's slots, fills batch tensors, runs and decodes them, for one model. ``regions``:
    each source's roi; ``region_settings``: each source's regions (a source not in it: the whole frame)."""

    def __init__(
        self, model: LoadedModel, regions: Mapping[str, Region], region_settings: Mapping[str, RegionSettings]
    ) -> None:
        self.model = model
        self._regions = regions
        self._region_settings = region_settings
        self._states: dict[str, SourceRegions] = {}  # per source (regions other than full)
        self._states_lock = threading.Lock()
        self._spare: list[Tensor] = []  # more batch tensors, for batches whose regions fill more than one

    def source_regions(self, sid: str) -> SourceRegions | None:
        """The source's region state (worker thread); None with ``regions = "full"``: the frame goes whole."""
        settings = self._region_settings.get(sid)
        if settings is None or settings.mode is RegionMode.FULL:
            return None
        with self._states_lock:
            state = self._states.get(sid)
            if state is None or state.settings != settings:  # new, or changed by a reload
                state = self._states[sid] = SourceRegions(settings, max(self.model.spec.width, self.model.spec.height))
            return state

    def spare_tensor(self) -> Tensor:
        """One more batch tensor for a batch whose regions fill more than one (worker thread)."""
        try:
            return self._spare.pop()
        except IndexError:
            tensor: Tensor = self.model.new_batch()
            return tensor

    def keep_spares(self, tensors: tuple[Tensor, ...]) -> None:
        """Tensors a batch took beyond its first, kept for the next (at most :data:`SPARES`)."""
        for tensor in tensors:
            if len(self._spare) < SPARES:
                self._spare.append(tensor)

    def motion(self, sid: str) -> bool:
        settings = self._region_settings.get(sid)
        return settings is not None and settings.mode is RegionMode.MOTION

    def plannable(self, frames: list[Frame], unreported: Mapping[str, int]) -> tuple[list[Frame], list[Frame]]:
        """``frames`` split into those that can be planned now and those that must wait: a ``motion``
        source's frame is planned only once the frame before it is reported (its plan depends on what that
        one found), so at most one frame per such source is on its way at a time."""
        now: list[Frame] = []
        later: list[Frame] = []
        taken: set[str] = set()
        for f in frames:
            if self.motion(f.source) and (unreported.get(f.source, 0) or f.source in taken):
                later.append(f)
                continue
            now.append(f)
            taken.add(f.source)
        return now, later

    def fill(self, items: list[Frame], first: Tensor) -> tuple[PreparedBatch, list[tuple[Frame, str]]]:
        """Plan and preprocess ``items`` (worker thread). Each frame takes one slot (the whole frame) or one per
        region of its plan; the slots fill tensors of ``max_batch`` slots, ``first`` and then spare ones. A
        frame that fails is set apart with its reason (its slots stay unused)."""
        model, motion = self.model, RegionMode.MOTION
        pre, views, rois, cap = model.preprocessor, model.views, self._regions, model.max_batch
        started = time.monotonic()
        failed: list[tuple[Frame, str]] = []
        planned: list[tuple[Frame, Planned | None, list[tuple[int, int, Region | None]], float]] = []
        for f in items:
            t0 = time.perf_counter()
            try:
                state = self.source_regions(f.source)
                if state is None:
                    sizes = [(f.width, f.height, rois.get(f.source))]
                    views.batch_for(pre, first, sizes)  # a size or roi that cannot be planned fails here
                    planned.append((f, None, sizes, 0.0))
                    continue
                pts = f.pts if f.pts is not None else f.captured_mono
                plan = state.plan(f.image, f.width, f.height, pts, f.pixel_format)
                sizes = [(r.width, r.height, None) for r in plan.regions]
                if sizes:
                    views.batch_for(pre, first, sizes)
                planned.append((f, Planned(state, plan, pts), sizes, (time.perf_counter() - t0) * 1000.0))
            except Exception as exc:
                log.debug("source %s: frame %d failed in planning", f.source, f.seq, exc_info=True)
                failed.append((f, frame_failure(exc)))
        flat = [size for _, _, sizes, _ in planned for size in sizes]
        buffers = [first] + [self.spare_tensor() for _ in range(1, -(-len(flat) // cap))]
        try:
            tensors = [views.batch_for(pre, b, flat[c * cap : (c + 1) * cap]) for c, b in enumerate(buffers) if flat]
        except Exception as exc:
            reason = frame_failure(exc)
            failed += [(f, reason) for f, _, _, _ in planned]
            return PreparedBatch((), (), (), (), started, buffers=tuple(buffers)), failed
        kept: list[Frame] = []
        geometries: list[tuple[tuple[Geometry, ...], ...]] = []
        times: list[float] = []
        spans: list[tuple[int, int]] = []
        plans: list[Planned | None] = []
        used = [0] * len(tensors)
        position = 0
        for f, planning, sizes, plan_ms in planned:
            start, position = position, position + len(sizes)
            t0 = time.perf_counter()
            geos: list[tuple[Geometry, ...]] = []
            try:
                for k in range(len(sizes)):
                    p = start + k
                    if planning is None:
                        image, roi = f.image, rois.get(f.source)
                    else:
                        image, roi = crop(f.image, planning.plan.regions[k], f.pixel_format), None
                    tensor = tensors[p // cap]
                    geos.append(
                        views.prepare(pre, tensor, p % cap, image, f.pixel_format, roi, f.color_matrix, f.color_range)
                    )
            except Exception as exc:
                log.debug("source %s: frame %d failed in preprocessing", f.source, f.seq, exc_info=True)
                failed.append((f, frame_failure(exc)))
                continue
            for p in range(start, position):
                used[p // cap] = max(used[p // cap], p % cap + 1)
            kept.append(f)
            geometries.append(tuple(geos))
            times.append(plan_ms + (time.perf_counter() - t0) * 1000.0)
            spans.append((start, len(sizes)))
            plans.append(planning)
        batch = PreparedBatch(
            tuple(kept),
            tuple(tensors),
            tuple(geometries),
            tuple(times),
            started,
            tuple(spans),
            tuple(plans),
            tuple(used),
            cap,
            tuple(buffers),
            tuple(dict.fromkeys(f.source for f, p in zip(kept, plans, strict=True) if p and p.state.mode is motion)),
        )
        return batch, failed

    def infer(self, batch: PreparedBatch) -> Inferred:
        """Run the model on a prepared batch (each of its tensors that holds slots) and decode each slot
        (worker thread)."""
        model = self.model
        started = time.monotonic()
        t0 = time.perf_counter()
        fixed = model.spec.batch is not None
        outputs: list[list[Any] | None] = []
        try:
            for tensor, used in zip(batch.tensors, batch.used, strict=True):
                run = tensor if fixed else tensor[: used * model.views.count]
                outputs.append(model.engine.run(run) if used else None)
        except ServerUnavailable as exc:
            return Inferred([], [], unavailable=str(exc))
        except Exception as exc:
            reason = frame_failure(exc)
            return Inferred([], [(f, reason) for f in batch.items])
        inference_ms = (time.perf_counter() - t0) * 1000.0
        decoded: list[list[Decoded] | None] = []
        failed: list[tuple[Frame, str]] = []
        for f, (first, count), geos in zip(batch.items, batch.spans, batch.geometries, strict=True):
            slots: list[Decoded] = []
            try:
                for k in range(count):
                    p = first + k
                    out = outputs[p // batch.per_tensor]
                    assert out is not None
                    slots.append(model.views.decode(model.decoder, out, p % batch.per_tensor, geos[k]))
            except Exception as exc:
                log.debug("source %s: frame %d failed in decoding", f.source, f.seq, exc_info=True)
                failed.append((f, f"model {model.name}: decoding its output failed: {frame_failure(exc)}"))
                decoded.append(None)
                continue
            decoded.append(slots)
        return Inferred(decoded, failed, None, inference_ms, started)

    def compact(self, batch: PreparedBatch, keep: list[int]) -> PreparedBatch:
        """``batch`` with only the frames at ``keep``, their slots moved to the front of the same tensors
        (where the tensors have one shape; else they stay where they are)."""
        views, cap = self.model.views.count, batch.per_tensor
        same = len({t.shape for t in batch.tensors}) <= 1
        used = [0] * len(batch.tensors)
        spans: list[tuple[int, int]] = []
        position = 0
        for i in keep:
            first, count = batch.spans[i]
            start = position if same else first
            for k in range(count):
                src, dst = first + k, start + k
                if src != dst:
                    a, b = batch.tensors[src // cap], batch.tensors[dst // cap]
                    b[(dst % cap) * views : (dst % cap + 1) * views] = a[(src % cap) * views : (src % cap + 1) * views]
                used[dst // cap] = max(used[dst // cap], dst % cap + 1)
            spans.append((start, count))
            position = start + count
        return replace(
            batch,
            items=tuple(batch.items[i] for i in keep),
            geometries=tuple(batch.geometries[i] for i in keep),
            preprocess_ms=tuple(batch.preprocess_ms[i] for i in keep),
            spans=tuple(spans),
            plans=tuple(batch.plans[i] for i in keep),
            used=tuple(used),
        )
