"""One source's regions, as a model branch uses them: the plan for each sampled frame and what it reports.

:class:`SourceRegions` keeps what a source needs between frames: the tile plan (made once per frame size)
or the :class:`~streamprep.regions.planner.MotionRegions` (a new one when the frame size changes), behind a
lock, since a branch plans a frame in one worker while it finishes an earlier one in another. Per frame:

    plan = regions.plan(image, width, height, pts, pixel_format)    # tiles or motion (full: no plan)
    ... the model runs on each of plan.regions (no regions: no run) ...
    detections = regions.report(plan, per_region, pts, iou)          # merged; motion: with the carried ones
    regions.remember(detections)                                      # after tracking: the carried keep ids

A ``motion`` source's frames must be planned and reported in turn, each plan after the report of the
frame before it (its re-checks and carried objects come from that report): the branch plans a motion
source's next frame only once the previous one is reported.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from streamprep.regions.merge import MergeSettings, merge
from streamprep.regions.motion import MotionSettings
from streamprep.regions.planner import MotionRegions
from streamprep.regions.tiles import tile_plan
from streamprep.regions.values import RegionPlan
from streamprep.values.frames import Detection, Image, RegionMode

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
            return motion.plan(image, pts, pixel_format)

    def report(
        self, plan: RegionPlan, per_region: Sequence[Sequence[Detection]], pts: float, iou_threshold: float
    ) -> tuple[Detection, ...]:
        """One frame's detections: the regions' merged (one per object), and with ``motion`` the carried ones
        after them (``carried = True``; ``still`` too when it was not looked at: nothing moved where it is)."""
        found = merge(plan, per_region, MergeSettings(iou_threshold=iou_threshold))
        if self.settings.mode is not RegionMode.MOTION:
            return found
        with self._lock:
            motion = self._motion
            if motion is None or (motion.width, motion.height) != (plan.width, plan.height):
                return found  # the frame size changed since this frame was planned: a fresh state starts
            looked = {id(t.detection) for t in motion.tracked if t.key in plan.checked}  # and missed, if carried
            reported = motion.update(plan, found, pts)
        return reported.found + tuple(
            dataclasses.replace(d, carried=True, still=id(d) not in looked) for d in reported.carried
        )

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
