"""``motion``, the planner: which regions the model looks at, given the motion and what it found before.

**Planner** (:func:`plan_motion`, and :class:`MotionRegions`, which keeps a source's state). Each moving box
becomes a square region at least the model's input side (``model_side × region_scale`` source pixels, and
``margin`` × the box's longer side, rounded up to a multiple of ``size_step`` so that a source's regions come
in few sizes), clamped inside the frame; two overlapping regions are merged into the
square around both when that square is at most ``merge_growth`` (1.25) × the larger of the two. Objects the model found
earlier (:class:`~streamprep.regions.values.Tracked`) are looked at again when a motion region covers half
of their box (an object that moved is looked for where it went), or, still, every ``recheck_s`` seconds in
a :attr:`RegionKind.RECHECK` region around them; in between, their last detection is *carried* (repeated
with ``carried: true``). The first frame, and a global change (at most once per ``recheck_s``), scan the
whole frame with tiles, so objects that never move are found. A frame with no motion and nothing due yields
no regions: no model run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from streamprep.events.tracking import greedy_match, iou_matrix
from streamprep.regions.motion import _EPS, MotionDetector, MotionResult, MotionSettings, MotionState
from streamprep.regions.tiles import tile_plan
from streamprep.regions.values import (
    Region,
    RegionKind,
    RegionPlan,
    Tracked,
    _up,
    box_of,
    place,
    square_around,
)
from streamprep.values.frames import Detection, Image


def merge_regions(
    regions: Sequence[Region], width: int, height: int, merge_growth: float = 1.25, size_step: int = 2
) -> tuple[Region, ...]:
    """Overlapping regions merged, pair by pair, into the square around both (centred on their union, clamped
    inside the frame) when that square's side is at most ``merge_growth`` × the larger one's: a merge saves a
    model run but shrinks what the model sees, so regions that would have to grow more stay apart (overlapping:
    :func:`~streamprep.regions.merge.merge` reports an object in both once). The merged region is
    :attr:`RegionKind.MOTION` if either was; its side is rounded up to a multiple of ``size_step``. Larger
    regions are merged first."""
    out = sorted(regions, key=lambda r: -r.width * r.height)
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if a.x >= b.x2 or b.x >= a.x2 or a.y >= b.y2 or b.y >= a.y2:
                    continue
                x1, y1, x2, y2 = min(a.x, b.x), min(a.y, b.y), max(a.x2, b.x2), max(a.y2, b.y2)
                limit = merge_growth * max(a.width, a.height, b.width, b.height)
                if max(x2 - x1, y2 - y1) > limit:
                    continue
                kind = RegionKind.MOTION if RegionKind.MOTION in (a.kind, b.kind) else a.kind
                s = _up(max(x2 - x1, y2 - y1), size_step)
                region = place((x1 + x2) / 2, (y1 + y2) / 2, s, s, width, height, kind)
                out = [r for k, r in enumerate(out) if k not in (i, j)] + [region]
                merged = True
                break
            if merged:
                break
    return tuple(sorted(out, key=lambda r: (r.y, r.x)))


def plan_motion(
    motion: MotionResult,
    pts: float,
    tracked: Sequence[Tracked],
    width: int,
    height: int,
    model_side: int,
    settings: MotionSettings | None = None,
    scan: bool = False,
) -> RegionPlan:
    """The regions for one frame of a ``width`` × ``height`` source (pure: see the module docstring).

    ``motion`` is the detector's answer for the frame, ``tracked`` the objects found earlier with the time
    each was last looked at, ``scan`` asks for a whole-frame tile scan (the caller decides when:
    :class:`MotionRegions` does so on the first frame, on a global change and every ``rescan_s``).
    """
    s = settings or MotionSettings()
    side = max(2, round(model_side * s.region_scale / 2) * 2)
    if scan:
        tiles = tile_plan(width, height, model_side, s.region_scale, s.tile_overlap).regions
        regions = tuple(Region(r.x, r.y, r.width, r.height, RegionKind.SCAN) for r in tiles)
        return RegionPlan(width, height, regions, (), tuple(t.key for t in tracked))
    wanted = [square_around(b, side, s.margin, width, height, RegionKind.MOTION, s.size_step) for b in motion.boxes]
    covered = merge_regions(wanted, width, height, s.merge_growth, s.size_step)
    due: list[Region] = []
    checked: list[int] = []
    carried: list[Tracked] = []
    for t in tracked:
        box = box_of(t.detection)
        if any(r.contains(box, 0.5) for r in covered):
            checked.append(t.key)
        elif (
            t.misses > 0
            or not 0 <= pts - t.checked_pts < s.recheck_s - _EPS  # due, or the timeline went back
            or motion.state is MotionState.GLOBAL
        ):
            due.append(square_around(box, side, s.margin, width, height, RegionKind.RECHECK, s.size_step))
            checked.append(t.key)
        else:
            carried.append(t)
    regions = merge_regions([*covered, *due], width, height, s.merge_growth, s.size_step) if due else covered
    return RegionPlan(width, height, regions, tuple(carried), tuple(checked))


@dataclass(frozen=True, slots=True)
class Reported:
    """What one frame reports in ``motion`` mode: ``found`` by the model on this frame (merged), and
    ``carried``: the last detections of tracked objects it did not look at (or looked at and missed fewer
    than ``miss_limit`` times in a row), to publish with ``carried: true``."""

    found: tuple[Detection, ...]
    carried: tuple[Detection, ...]


@dataclass
class MotionRegions:
    """A source's ``motion`` state: its detector, the objects it tracks, and when it last scanned.

    Per frame: ``plan = state.plan(image, pts, pixel_format)``; run the model on ``plan.regions`` (none: no
    run) and merge their detections (:func:`~streamprep.regions.merge.merge`); then
    ``state.update(plan, found, pts)`` gives what to publish. Not thread-safe; one per source.
    """

    width: int
    height: int
    model_side: int
    settings: MotionSettings = field(default_factory=MotionSettings)
    detector: MotionDetector = field(init=False)
    tracked: tuple[Tracked, ...] = field(init=False, default=())
    last_motion: MotionResult | None = field(init=False, default=None)
    _next_key: int = field(init=False, default=1)
    _scanned_pts: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.detector = MotionDetector(self.settings)

    def plan(self, image: Image, pts: float, pixel_format: str = "bgr24") -> RegionPlan:
        """The regions for this frame (see :func:`plan_motion`); also remembers the motion (``last_motion``)."""
        s = self.settings
        rows = image.shape[0] * 2 // 3 if pixel_format in ("yuv420p", "nv12") else image.shape[0]
        if (image.shape[1], rows) != (self.width, self.height):
            raise ValueError(
                f"a {image.shape[1]}x{rows} frame for regions planned at {self.width}x{self.height}: "
                "a source whose frame size changes needs a new MotionRegions"
            )
        motion = self.last_motion = self.detector.update(image, pts, pixel_format)
        last = self._scanned_pts
        scan = (
            motion.state is MotionState.FIRST
            or (motion.state is MotionState.GLOBAL and (last is None or pts - last >= s.recheck_s - _EPS))
            or (s.rescan_s is not None and last is not None and pts - last >= s.rescan_s - _EPS)
        )
        if scan:
            self._scanned_pts = pts
        return plan_motion(motion, pts, self.tracked, self.width, self.height, self.model_side, s, scan)

    def update(self, plan: RegionPlan, found: Sequence[Detection], pts: float) -> Reported:
        """Match this frame's merged detections to the tracked objects and say what to publish.

        A tracked object is updated by the best same-label detection overlapping it by ``match_iou`` (one this
        plan looked at also by the nearest same-label detection whose centre lies within one box size of it);
        not found, it is kept (carried) until ``miss_limit`` checks in a row missed it, then forgotten. A
        detection that matches no tracked object starts a new one.
        """
        s = self.settings
        looked = set(plan.checked)
        found = tuple(found)
        olds = list(self.tracked)
        pairs = _match([t.detection for t in olds], found, s.match_iou)
        # an object that moved further than IoU can follow: the nearest unmatched detection of its class whose
        # centre lies within one box size of its last box, among the objects this plan looked at
        taken = {j for _, j in pairs}
        for i, t in enumerate(olds):
            if t.key not in looked or any(k == i for k, _ in pairs):
                continue
            near = _nearest(t.detection, [(j, d) for j, d in enumerate(found) if j not in taken])
            if near is not None:
                pairs.append((i, near))
                taken.add(near)
        matched_old = {i for i, _ in pairs}
        matched_new = {j for _, j in pairs}
        kept: list[Tracked] = []
        carried: list[Detection] = []
        for i, t in enumerate(olds):
            if i in matched_old:
                j = next(j for k, j in pairs if k == i)
                kept.append(Tracked(t.key, found[j], pts, 0))
            elif t.key in looked:
                if t.misses + 1 < s.miss_limit:
                    kept.append(Tracked(t.key, t.detection, t.checked_pts, t.misses + 1))
                    carried.append(t.detection)
            else:
                kept.append(t)
                carried.append(t.detection)
        for j, d in enumerate(found):
            if j not in matched_new:
                kept.append(Tracked(self._next_key, d, pts, 0))
                self._next_key += 1
        kept.sort(key=lambda t: -t.checked_pts)
        self.tracked = tuple(kept[: s.max_tracked])
        return Reported(found, tuple(carried))


def _match(old: Sequence[Detection], new: Sequence[Detection], threshold: float) -> list[tuple[int, int]]:
    """Greedy IoU pairs of old and new detections with the same class."""
    a = np.array([box_of(d) for d in old], np.float64).reshape(-1, 4)
    b = np.array([box_of(d) for d in new], np.float64).reshape(-1, 4)
    iou = iou_matrix(a, b)
    for i, d in enumerate(old):
        for j, e in enumerate(new):
            if d.class_id != e.class_id:
                iou[i, j] = 0.0
    return greedy_match(iou, threshold)


def _nearest(old: Detection, candidates: Sequence[tuple[int, Detection]]) -> int | None:
    """The index of the candidate of ``old``'s class whose centre is nearest to ``old``'s, if it lies within
    ``old``'s width (horizontally) and height (vertically)."""
    b = old.box
    cx, cy, w, h = (b.x1 + b.x2) / 2, (b.y1 + b.y2) / 2, b.x2 - b.x1, b.y2 - b.y1
    best: tuple[float, int] | None = None
    for j, d in candidates:
        dx, dy = (d.box.x1 + d.box.x2) / 2 - cx, (d.box.y1 + d.box.y2) / 2 - cy
        if d.class_id == old.class_id and abs(dx) <= w and abs(dy) <= h:
            distance = dx * dx + dy * dy
            if best is None or distance < best[0]:
                best = (distance, j)
    return None if best is None else best[1]
