"""Detections from several regions of one frame → one set, each object reported once.

Input: per region of a :class:`RegionPlan`, the detections the model made there, in source pixels (decoded
with the region as the preprocessor's region of interest, or moved there with
:func:`~streamprep.regions.values.to_source`).

Rules, in order:

1. **Truncated sides.** A box side within ``edge_px`` (default: 2 px or 2 % of the region's side, the larger)
   of an edge of its region that lies inside the frame (an *interior* edge, a cut made by the planner, not
   the frame's border) is a *truncated* side: the object may go on beyond it. Boxes of the full-frame region
   are never truncated.
2. **Pieces of one object fuse.** Two boxes of the same class from different regions belong to one object
   when either
   - one is truncated on a side and the other *continues it across that cut*: it reaches past the cut
     line by more than ``edge_px``, starts before it (they meet along that axis), and along the cut the two
     boxes' extents overlap by at least ``along`` (default 0.5) of the shorter one; or
   - one is truncated and at least ``contained`` (default 0.7) of its area lies inside the other.
   Pieces fuse transitively (an object cut by a corner of four tiles comes from four pieces). A group's box
   is the box of a member that is not truncated and contains ``contained`` of every other member when
   there is one (the tile that saw the whole object wins), otherwise the union of the members' boxes (an
   object no single region saw whole); its score is the best member's, and so are its label and class.
3. **Class-aware NMS** (IoU ``iou_threshold``, default 0.45, as the decoders) over what is left removes
   the duplicates of objects seen whole by two overlapping regions.

Results are sorted by descending score. Two different objects of one class that touch across a cut may be
fused into one: the price of not double-counting the far more common object split by a tile border.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamprep.events.tracking import iou_matrix
from streamprep.regions.values import Region, RegionKind, RegionPlan, box_of, inside_fraction
from streamprep.values.frames import Box, BoxTuple, Detection

# the sides of a box, as indices into (x1, y1, x2, y2)
LEFT, TOP, RIGHT, BOTTOM = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class MergeSettings:
    iou_threshold: float = 0.45
    along: float = 0.5
    contained: float = 0.7
    edge_fraction: float = 0.02
    edge_min_px: float = 2.0

    def edge_px(self, region: Region) -> float:
        return max(self.edge_min_px, self.edge_fraction * min(region.width, region.height))


@dataclass(frozen=True, slots=True)
class _Piece:
    detection: Detection
    box: BoxTuple
    region: int
    truncated: frozenset[int]  # sides (LEFT, TOP, RIGHT, BOTTOM) cut by an interior region edge
    edge_px: float


def truncated_sides(box: BoxTuple, region: Region, width: int, height: int, edge_px: float) -> frozenset[int]:
    """The sides of ``box`` that lie on an interior edge of ``region`` (within ``edge_px``)."""
    if region.kind is RegionKind.FULL:
        return frozenset()
    sides = set()
    if region.x > 0 and box[0] <= region.x + edge_px:
        sides.add(LEFT)
    if region.y > 0 and box[1] <= region.y + edge_px:
        sides.add(TOP)
    if region.x2 < width and box[2] >= region.x2 - edge_px:
        sides.add(RIGHT)
    if region.y2 < height and box[3] >= region.y2 - edge_px:
        sides.add(BOTTOM)
    return frozenset(sides)


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    """Overlap of two intervals as a fraction of the shorter one."""
    shorter = min(a1 - a0, b1 - b0)
    return max(0.0, min(a1, b1) - max(a0, b0)) / shorter if shorter > 0 else 0.0


def _continues(a: _Piece, b: _Piece, along: float) -> bool:
    """Whether ``b`` goes on across a cut that truncates ``a``."""
    tol = a.edge_px
    for side in a.truncated:
        if side in (LEFT, RIGHT):
            cut = a.box[side]
            beyond = b.box[2] > cut + tol and b.box[0] <= cut if side == RIGHT else b.box[0] < cut - tol <= b.box[2]
            if beyond and _overlap(a.box[1], a.box[3], b.box[1], b.box[3]) >= along:
                return True
        else:
            cut = a.box[side]
            beyond = b.box[3] > cut + tol and b.box[1] <= cut if side == BOTTOM else b.box[1] < cut - tol <= b.box[3]
            if beyond and _overlap(a.box[0], a.box[2], b.box[0], b.box[2]) >= along:
                return True
    return False


def _same_object(a: _Piece, b: _Piece, s: MergeSettings) -> bool:
    if a.region == b.region or a.detection.class_id != b.detection.class_id:
        return False
    if (a.truncated and inside_fraction(a.box, b.box) >= s.contained) or (
        b.truncated and inside_fraction(b.box, a.box) >= s.contained
    ):
        return True
    return _continues(a, b, s.along) or _continues(b, a, s.along)


def _fuse(group: list[_Piece], s: MergeSettings) -> Detection:
    best = max(group, key=lambda p: p.detection.score)
    whole = [
        p
        for p in group
        if not p.truncated and all(q is p or inside_fraction(q.box, p.box) >= s.contained for q in group)
    ]
    if whole:
        keeper = max(whole, key=lambda p: p.detection.score)
        box = keeper.box
    else:
        box = (
            min(p.box[0] for p in group),
            min(p.box[1] for p in group),
            max(p.box[2] for p in group),
            max(p.box[3] for p in group),
        )
    d = best.detection
    return Detection(d.label, d.class_id, d.score, Box(*box), d.track_id)


def nms(detections: Sequence[Detection], iou_threshold: float) -> tuple[Detection, ...]:
    """Class-aware greedy NMS: per class, the best box wins over every box overlapping it by more than
    ``iou_threshold`` IoU. Sorted by descending score (ties keep their order)."""
    order = sorted(range(len(detections)), key=lambda i: -detections[i].score)
    ranked = [detections[i] for i in order]
    boxes = np.array([box_of(d) for d in ranked], dtype=np.float64).reshape(-1, 4)
    iou = iou_matrix(boxes, boxes)
    kept: list[int] = []
    for i, d in enumerate(ranked):
        if all(ranked[k].class_id != d.class_id or iou[k, i] <= iou_threshold for k in kept):
            kept.append(i)
    return tuple(ranked[i] for i in kept)


def merge(
    plan: RegionPlan, per_region: Sequence[Sequence[Detection]], settings: MergeSettings | None = None
) -> tuple[Detection, ...]:
    """One frame's detections from ``per_region`` (aligned with ``plan.regions``) merged as the module says."""
    s = settings or MergeSettings()
    if len(per_region) != len(plan.regions):
        raise ValueError(f"{len(per_region)} detection lists for a plan of {len(plan.regions)} regions")
    pieces: list[_Piece] = []
    for index, (region, found) in enumerate(zip(plan.regions, per_region, strict=True)):
        edge = s.edge_px(region)
        for d in found:
            box = box_of(d)
            pieces.append(_Piece(d, box, index, truncated_sides(box, region, plan.width, plan.height, edge), edge))
    parent = list(range(len(pieces)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(pieces)):
        for j in range(i + 1, len(pieces)):
            if _same_object(pieces[i], pieces[j], s):
                parent[root(j)] = root(i)
    groups: dict[int, list[_Piece]] = {}
    for i, piece in enumerate(pieces):
        groups.setdefault(root(i), []).append(piece)
    return nms([_fuse(g, s) for g in groups.values()], s.iou_threshold)
