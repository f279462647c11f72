"""Zones and lines on a frame, and the per-track state that turns noisy positions into entries and crossings.

An object's position is the bottom centre of its box (where it stands). Coordinates are source-frame
pixels, or fractions of the frame when every coordinate of a zone or line is at most 1 (as for ``roi``).

Both have hysteresis: a zone is entered once the point has been inside for ``min_frames`` consecutive
frames in which the object was seen, and left after ``min_frames`` outside; a line is crossed once the
point has been on the other side for ``min_frames`` such frames, and only if its path from the last point
on the old side to the first point on the new side passes through the segment between the line's points.
``direction`` is ``"positive"`` when ``cross(P2 − P1, C − P1)`` (image coordinates: x right, y down) goes
from negative to positive, ``"negative"`` the other way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Point = tuple[float, float]


def resolve(points: Sequence[Point], width: int, height: int) -> tuple[Point, ...]:
    """Pixels as they are; fractions (every coordinate <= 1) scaled to the frame."""
    if all(0.0 <= c <= 1.0 for p in points for c in p):
        return tuple((x * width, y * height) for x, y in points)
    return tuple((float(x), float(y)) for x, y in points)


def polygon_area(points: Sequence[Point]) -> float:
    """Signed area (shoelace): zero for a degenerate polygon."""
    n = len(points)
    return sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1] for i in range(n)) / 2


def _tolerance(*points: Point) -> float:
    """How far from exact a point may be and still count as on a segment: a billionth of the coordinates'
    scale (about a millionth of a pixel on a 1080p frame), so coordinates from fractions (``0.6 * 1280``)
    that are off in the last bit still count as on the edge they lie on."""
    return 1e-9 * max(1.0, *(abs(c) for p in points for c in p))


def on_segment(a: Point, b: Point, p: Point) -> bool:
    """Whether ``p`` lies on the segment ``ab`` (its end points included), within :func:`_tolerance`."""
    eps = _tolerance(a, b, p)
    dx, dy = b[0] - a[0], b[1] - a[1]
    length = math.hypot(dx, dy)
    if length <= eps:
        return math.hypot(p[0] - a[0], p[1] - a[1]) <= eps
    if abs(side(a, b, p)) > eps * length:  # |cross| / length is the distance from the line through a and b
        return False
    along = (p[0] - a[0]) * dx + (p[1] - a[1]) * dy  # the projection, times length
    return -eps * length <= along <= length * length + eps * length


def inside(polygon: Sequence[Point], p: Point) -> bool:
    """Whether ``p`` is in the polygon: on its boundary (an edge or a vertex) counts as inside, so a zone that
    ends at the frame's edge holds an object whose box is clipped there; elsewhere the even-odd rule."""
    x, y = p
    n = len(polygon)
    if any(on_segment(polygon[i], polygon[(i + 1) % n], p) for i in range(n)):
        return True
    result = False
    for i in range(n):
        x1, y1 = polygon[i]
        x2, y2 = polygon[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            result = not result
    return result


def side(a: Point, b: Point, c: Point) -> float:
    """cross(B − A, C − A): its sign says on which side of the line A→B the point C lies."""
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def segments_cross(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """Whether the segment p1p2 meets the segment q1q2 (touching counts, within :func:`_tolerance`: a path
    that ends on the line, or passes through an end of it at the frame's edge, meets it)."""
    if any(on_segment(*seg, p) for seg, p in (((q1, q2), p1), ((q1, q2), p2), ((p1, p2), q1), ((p1, p2), q2))):
        return True
    d1, d2 = side(q1, q2, p1), side(q1, q2, p2)
    d3, d4 = side(p1, p2, q1), side(p1, p2, q2)
    return d1 * d2 <= 0 and d3 * d4 <= 0


def bottom_centre(box: tuple[float, float, float, float]) -> Point:
    return ((box[0] + box[2]) / 2, box[3])


@dataclass(frozen=True, slots=True)
class Zone:
    name: str
    polygon: tuple[Point, ...]  # as configured: pixels or fractions
    labels: frozenset[str] | None = None
    min_frames: int = 3

    def applies(self, label: str) -> bool:
        return self.labels is None or label in self.labels


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    points: tuple[Point, Point]
    labels: frozenset[str] | None = None
    min_frames: int = 3

    def applies(self, label: str) -> bool:
        return self.labels is None or label in self.labels


class ZoneState:
    """One track in one zone: ``update`` returns True when the confirmed state flips."""

    __slots__ = ("count", "inside", "min_frames")

    def __init__(self, min_frames: int) -> None:
        self.min_frames = min_frames
        self.inside = False
        self.count = 0  # consecutive observations that disagree with ``inside``

    def update(self, observed_inside: bool) -> bool:
        if observed_inside == self.inside:
            self.count = 0
            return False
        self.count += 1
        if self.count >= self.min_frames:
            self.inside = observed_inside
            self.count = 0
            return True
        return False


class LineState:
    """One track and one line: ``update`` returns ``"positive"``/``"negative"`` when a crossing is confirmed."""

    __slots__ = ("anchor", "candidate", "count", "entry", "min_frames", "stable")

    def __init__(self, min_frames: int) -> None:
        self.min_frames = min_frames
        self.stable = 0  # confirmed side: -1, +1, or 0 until the first min_frames observations agree
        self.anchor: Point | None = None  # the last point seen on the stable side
        self.candidate = 0
        self.count = 0
        self.entry: Point | None = None  # the first point seen on the candidate side

    def update(self, a: Point, b: Point, c: Point) -> str | None:
        value = side(a, b, c)
        s = 1 if value > 0 else -1 if value < 0 else 0
        if s == 0:
            return None  # on the line: no evidence either way
        if s == self.stable:
            self.anchor, self.candidate, self.count = c, 0, 0
            return None
        if s != self.candidate:
            self.candidate, self.count, self.entry = s, 0, c
        self.count += 1
        if self.count < self.min_frames:
            return None
        old, anchor, entry = self.stable, self.anchor, self.entry
        self.stable, self.anchor, self.candidate, self.count = s, c, 0, 0
        if old == 0 or anchor is None or entry is None:
            return None  # the first confirmed side is where the object starts, not a crossing
        if not segments_cross(anchor, entry, a, b):
            return None  # went round the end of the line
        return "positive" if s > 0 else "negative"
