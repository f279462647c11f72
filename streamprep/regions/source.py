"""One source's regions, as a model branch uses them: the plan for each sampled frame and what it reports.

:class:`SourceRegions` keeps what a source needs between frames: the tile plan (made once per frame size)
or the :class:`~streamprep.regions.motion.MotionRegions` (a new one when the frame size changes), behind a
lock, since a branch plans a frame in one worker while it finishes an earlier one in another. Per frame:

    plan = regions.plan(image, width, height, pts, pixel_format)    # tiles or motion (full: no plan)
    ... the model runs on each of plan.regions (no regions: no run) ...
    detections = regions.report(plan, per_region, pts, iou)          # merged; motion: with the carried ones
    regions.remember(detections)                                      # after tracking: the carried keep ids

Frames of one source are planned in order and reported in order (the branch makes sure), but a frame may
be planned before the one before it is reported (the branch prepares a batch while the previous one is in
inference). Such a plan does not know the objects found on that frame: the report then counts every
tracked object that lies in one of the plan's regions as looked at (what :func:`plan_motion` says of
objects inside a motion region), so an object that moves is followed rather than left behind as a carried
copy; and a plan marks the objects it looks at as checked at once (not only when its frame is reported),
so the frames planned meanwhile do not re-check them again.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from streamprep.regions.merge import MergeSettings, merge
from streamprep.regions.motion import MotionRegions, MotionSettings
from streamprep.regions.tiles import tile_plan
from streamprep.regions.values import RegionMode, RegionPlan, box_of
from streamprep.values.frames import Detection, Image

Polygon = tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class RegionSettings:
    """A source's ``regions`` keys (the config's, with the top-level defaults filled in)."""

    mode: RegionMode = RegionMode.FULL
    tile_overlap: float = 0.2
    tile_scale: float = 1.0
    full_frame: bool = False
    recheck_s: float = 2.0
    masks: tuple[Polygon, ...] = ()

    def motion(self) -> MotionSettings:
        """The motion settings: the defaults, with this source's re-check time, masks and scale."""
        return MotionSettings(
            masks=self.masks, recheck_s=self.recheck_s, region_scale=self.tile_scale, tile_overlap=self.tile_overlap
        )


class SourceRegions:
    """The region state of one source for one model whose input is ``model_side`` pixels square (its longer
    side). Thread-safe."""

    def __init__(self, settings: RegionSettings, model_side: int) -> None:
        self.settings = settings
        self.model_side = model_side
        self._lock = threading.Lock()
        self._tiles: RegionPlan | None = None
        self._motion: MotionRegions | None = None

    @property
    def mode(self) -> RegionMode:
        return self.settings.mode

    def plan(self, image: Image, width: int, height: int, pts: float, pixel_format: str) -> RegionPlan:
        """The regions for one frame (``tiles`` or ``motion``: with ``full`` the frame goes to the model whole,
        no plan needed)."""
        s = self.settings
        if s.mode is RegionMode.FULL:
            raise ValueError('regions = "full" has no plan: the frame goes to the model whole')
        with self._lock:
            if s.mode is RegionMode.TILES:
                if self._tiles is None or (self._tiles.width, self._tiles.height) != (width, height):
                    self._tiles = tile_plan(width, height, self.model_side, s.tile_scale, s.tile_overlap, s.full_frame)
                return self._tiles
            motion = self._motion
            if motion is None or (motion.width, motion.height) != (width, height):
                motion = self._motion = MotionRegions(width, height, self.model_side, s.motion())
            plan = motion.plan(image, pts, pixel_format)
            if plan.checked:  # looked at now: not due again on the frames planned before this one's report
                keys = set(plan.checked)
                motion.tracked = tuple(
                    dataclasses.replace(t, checked_pts=pts) if t.key in keys and t.misses == 0 else t
                    for t in motion.tracked
                )
            return plan

    def report(
        self, plan: RegionPlan, per_region: Sequence[Sequence[Detection]], pts: float, iou_threshold: float
    ) -> tuple[Detection, ...]:
        """One frame's detections: the regions' merged (one per object), and with ``motion`` the carried ones
        after them (``carried = True``)."""
        found = merge(plan, per_region, MergeSettings(iou_threshold=iou_threshold))
        if self.settings.mode is not RegionMode.MOTION:
            return found
        with self._lock:
            motion = self._motion
            if motion is None or (motion.width, motion.height) != (plan.width, plan.height):
                return found  # the frame size changed since this frame was planned: a fresh state starts
            # The plan may predate the objects found on the frames just before this one (planned before they
            # were reported): whatever lies in its regions was looked at, as plan_motion would have said.
            covered = {t.key for t in motion.tracked if any(r.contains(box_of(t.detection), 0.5) for r in plan.regions)}
            if not covered <= set(plan.checked):
                plan = dataclasses.replace(plan, checked=tuple(dict.fromkeys((*plan.checked, *covered))))
            reported = motion.update(plan, found, pts)
        return reported.found + tuple(dataclasses.replace(d, carried=True) for d in reported.carried)

    def remember(self, before: Sequence[Detection], after: Sequence[Detection]) -> None:
        """Tracking gave ``before`` (a report) the track ids in ``after``: the tracked objects keep them, so
        that their carried detections repeat them."""
        ids = {id(b): a.track_id for b, a in zip(before, after, strict=True) if not b.carried}
        with self._lock:
            motion = self._motion
            if motion is None or not ids:
                return
            motion.tracked = tuple(
                dataclasses.replace(t, detection=dataclasses.replace(t.detection, track_id=ids[id(t.detection)]))
                if id(t.detection) in ids
                else t
                for t in motion.tracked
            )
