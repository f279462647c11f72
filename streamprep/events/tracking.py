"""Multi-object tracking per source, in the style of ByteTrack, on the source's own timeline.

Each track has a Kalman filter over its box, stepped by the time between frames (their ``pts``), not by
frame counts, so the tracker behaves the same whether a source is sampled at 2 or 30 fps. The centre moves
at constant velocity; width and height are a random walk (a box cut short while its object goes behind
something must not be extrapolated to nothing); a detection's weight falls with its score (NSA Kalman:
low scores are often partly hidden objects whose boxes are cut short).

One :meth:`Tracker.update` per frame:

1. every track's box is predicted to the frame's time;
2. high-score detections (``score >= high_score``) are matched to all tracks by IoU with the predicted box;
3. the low-score detections are matched to the tracks that were seen in the previous frame and are still
   unmatched (ByteTrack's second stage: it keeps a track through a frame where its object scored low,
   without letting weak detections revive lost tracks);
4. an unmatched confirmed track unseen for longer than ``max_age_s`` ends (reported in ``ended``), an
   unmatched tentative track is dropped, and an unmatched high-score detection with
   ``score >= new_track_score`` starts a tentative track, confirmed after ``min_hits`` consecutive matches.

Matching never pairs a detection with a track of another label. The matcher is a seam
(:class:`Matcher`): the default is greedy by descending IoU; ``bench/tracking.py`` compares it with an
optimal (Hungarian) assignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from streamprep.values.frames import BoxTuple

FloatArray = npt.NDArray[np.float64]
HELD_IOU = 0.5  # a held box keeps the unmatched track whose last box it overlaps this much (Tracker.update)


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    """Tracker parameters (``[events]`` in the config). Times are in seconds of the source's timeline."""

    high_score: float = 0.5
    new_track_score: float = 0.6
    match_iou: float = 0.2
    low_match_iou: float = 0.5
    max_age_s: float = 1.5
    min_hits: int = 3
    max_tracks: int = 100
    # Kalman noise, relative to the box height: measurement std, and white-noise acceleration (per s²)
    measurement_std: float = 0.05
    acceleration_std: float = 0.5
    size_std: float = 0.2  # per √s: how fast a box's size may drift


@dataclass(frozen=True, slots=True)
class TrackView:
    """A track as it stands after one update.

    ``box`` is the matched detection's box when ``detection`` is set (the object was seen in this frame),
    else the filter's prediction. ``score`` is the matched detection's score, else None.
    """

    id: int
    label: str
    box: BoxTuple
    score: float | None
    detection: int | None
    confirmed: bool
    first_seen: float
    last_seen: float


@dataclass(frozen=True, slots=True)
class TrackerStep:
    """What one frame did: the live tracks, the ids confirmed in it, the confirmed tracks that ended."""

    tracks: tuple[TrackView, ...]
    confirmed: tuple[int, ...]
    ended: tuple[TrackView, ...]
    assigned: tuple[int | None, ...]  # per detection: the id of the confirmed track it belongs to

    def track(self, track_id: int) -> TrackView:
        return next(t for t in self.tracks if t.id == track_id)


class Matcher(Protocol):
    """Pairs rows (tracks) with columns (detections) of an IoU matrix, each pair at least ``threshold``."""

    def __call__(self, iou: FloatArray, threshold: float) -> list[tuple[int, int]]: ...


def greedy_match(iou: FloatArray, threshold: float) -> list[tuple[int, int]]:
    """Take the pair with the highest IoU, remove its row and column, repeat while IoU >= threshold."""
    if iou.size == 0:
        return []
    rows, cols = np.nonzero(iou >= threshold)
    if rows.size == 0:
        return []
    order = np.argsort(-iou[rows, cols], kind="stable")
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r in used_rows or c in used_cols:
            continue
        used_rows.add(r)
        used_cols.add(c)
        pairs.append((r, c))
    return pairs


def iou_matrix(a: FloatArray, b: FloatArray) -> FloatArray:
    """IoU of every box of ``a`` (n×4) with every box of ``b`` (m×4), as an n×m array."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    out: FloatArray = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return out


def _to_state(box: FloatArray) -> FloatArray:
    """x1, y1, x2, y2 → cx, cy, w, h."""
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]])


def _to_boxes(z: FloatArray) -> FloatArray:
    """n×4 cx, cy, w, h → n×4 x1, y1, x2, y2 (sizes kept positive)."""
    w = np.maximum(z[:, 2], 1e-3)
    h = np.maximum(z[:, 3], 1e-3)
    return np.stack([z[:, 0] - w / 2, z[:, 1] - h / 2, z[:, 0] + w / 2, z[:, 1] + h / 2], axis=1)


class _Tracks:
    """All tracks' filters as arrays: ``x`` n×4×2 (position, velocity per coordinate), ``p`` n×4×2×2."""

    def __init__(self) -> None:
        self.x: FloatArray = np.zeros((0, 4, 2))
        self.p: FloatArray = np.zeros((0, 4, 2, 2))
        self.ids: list[int] = []
        self.labels: list[str] = []
        self.hits: list[int] = []
        self.confirmed: list[bool] = []
        self.first_seen: list[float] = []
        self.last_seen: list[float] = []
        self.last_box: list[BoxTuple] = []

    def __len__(self) -> int:
        return len(self.ids)

    def keep(self, mask: Sequence[bool]) -> None:
        m = np.asarray(mask, dtype=bool)
        self.x, self.p = self.x[m], self.p[m]
        for name in ("ids", "labels", "hits", "confirmed", "first_seen", "last_seen", "last_box"):
            values = getattr(self, name)
            setattr(self, name, [v for v, k in zip(values, mask, strict=True) if k])

    def add(self, track_id: int, label: str, box: FloatArray, t: float, s: TrackerSettings) -> None:
        z = _to_state(box)
        x = np.zeros((1, 4, 2))
        x[0, :, 0] = z
        h = max(float(z[3]), 1.0)
        p = np.zeros((1, 4, 2, 2))
        p[0, :, 0, 0] = (2 * s.measurement_std * h) ** 2
        p[0, :2, 1, 1] = h**2  # velocity unknown: one box height per second, either way
        self.x = np.concatenate([self.x, x])
        self.p = np.concatenate([self.p, p])
        self.ids.append(track_id)
        self.labels.append(label)
        self.hits.append(1)
        self.confirmed.append(False)
        self.first_seen.append(t)
        self.last_seen.append(t)
        self.last_box.append((float(box[0]), float(box[1]), float(box[2]), float(box[3])))


class Tracker:
    """Tracks the detections of one source. Not thread-safe: feed it one frame at a time, in pts order."""

    def __init__(self, settings: TrackerSettings | None = None, matcher: Matcher = greedy_match, first_id: int = 1):
        self.settings = settings or TrackerSettings()
        self.matcher = matcher
        self.next_id = first_id
        self.refused = 0  # detections that would have started a track beyond max_tracks
        self._tracks = _Tracks()
        self._time: float | None = None

    @property
    def time(self) -> float | None:
        """The time of the last update."""
        return self._time

    def _predict(self, t: float) -> None:
        tr, s = self._tracks, self.settings
        if not len(tr) or self._time is None:
            return
        dt = t - self._time
        if dt <= 0:
            return
        x, p = tr.x, tr.p
        # the centre moves at constant velocity; the size is a random walk (a box shrinking while its
        # object goes behind something must not be extrapolated to nothing)
        x[:, :2, 0] += dt * x[:, :2, 1]
        # P ← F P Fᵀ + Q for F = [[1, dt], [0, 1]] and white-noise acceleration Q
        c = p[:, :2]
        p00, p01, p11 = c[:, :, 0, 0], c[:, :, 0, 1], c[:, :, 1, 1]
        h = np.maximum(x[:, 3, 0], 1.0)[:, None]
        q = (s.acceleration_std * h) ** 2
        n00 = p00 + dt * (2 * p01 + dt * p11) + q * dt**3 / 3
        n01 = p01 + dt * p11 + q * dt**2 / 2
        n11 = p11 + q * dt
        c[:, :, 0, 0], c[:, :, 0, 1], c[:, :, 1, 0], c[:, :, 1, 1] = n00, n01, n01, n11
        p[:, 2:, 0, 0] += (s.size_std * h) ** 2 * dt

    def _correct(self, rows: list[int], boxes: FloatArray, scores: FloatArray) -> None:
        if not rows:
            return
        tr, s = self._tracks, self.settings
        idx = np.asarray(rows)
        z = np.stack([_to_state(b) for b in boxes])
        x, p = tr.x[idx], tr.p[idx]
        # NSA Kalman: a low score (often a partly hidden object, its box cut short) is trusted less;
        # a score of 0.75 gets the nominal measurement noise
        trust = np.clip(4.0 * (1.0 - scores), 0.2, 4.0)[:, None]
        r = (s.measurement_std * np.maximum(z[:, 3], 1.0))[:, None] ** 2 * trust
        innovation = z - x[:, :, 0]
        sv = p[:, :, 0, 0] + r
        k0, k1 = p[:, :, 0, 0] / sv, p[:, :, 1, 0] / sv
        x[:, :, 0] += k0 * innovation
        x[:, :, 1] += k1 * innovation
        p00, p01, p11 = p[:, :, 0, 0].copy(), p[:, :, 0, 1].copy(), p[:, :, 1, 1].copy()
        p[:, :, 0, 0] = (1 - k0) * p00
        p[:, :, 0, 1] = (1 - k0) * p01
        p[:, :, 1, 0] = p[:, :, 0, 1]
        p[:, :, 1, 1] = p11 - k1 * p01
        tr.x[idx], tr.p[idx] = x, p

    def _match(
        self,
        rows: list[int],
        dets: list[int],
        boxes: FloatArray,
        predicted: FloatArray,
        labels: Sequence[str],
        iou: float,
    ) -> list[tuple[int, int]]:
        if not rows or not dets:
            return []
        tr = self._tracks
        m = iou_matrix(predicted[rows], boxes[dets])
        same = np.array([[tr.labels[r] == labels[d] for d in dets] for r in rows], dtype=bool)
        m = np.where(same, m, 0.0)
        return [(rows[i], dets[j]) for i, j in self.matcher(m, iou)]

    def update(
        self,
        t: float,
        boxes: FloatArray,
        scores: FloatArray,
        labels: Sequence[str],
        held: FloatArray | None = None,
        held_labels: Sequence[str] = (),
    ) -> TrackerStep:
        """One frame at time ``t`` (seconds, non-decreasing) with its detections (n×4 x1,y1,x2,y2).

        ``held`` (m×4, with ``held_labels``) are objects known to be still where they were last seen without
        being looked at in this frame (``regions = "motion"``'s carried detections: no motion in their box).
        A track that no detection matched and whose last box overlaps one of them by :data:`HELD_IOU` is
        *held*: its box goes back to where it was last seen (no drift while it is not looked at), it counts as
        seen now (it does not age out) and, tentative, is not dropped, though a held frame is no hit (only
        detections confirm a track)."""
        s, tr = self.settings, self._tracks
        if self._time is not None and t < self._time:
            raise ValueError(f"time went backwards: {t} after {self._time}")
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        previous = self._time
        # 1. predict
        self._predict(t)
        self._time = t
        predicted = _to_boxes(tr.x[:, :, 0]) if len(tr) else np.zeros((0, 4))
        # 2. high-score detections against every track
        high = [d for d in range(len(scores)) if scores[d] >= s.high_score]
        low = [d for d in range(len(scores)) if scores[d] < s.high_score]
        rows = list(range(len(tr)))
        pairs = self._match(rows, high, boxes, predicted, labels, s.match_iou)
        # 3. low-score detections against the tracks seen in the previous frame
        matched_rows = {r for r, _ in pairs}
        recent = [r for r in rows if r not in matched_rows and previous is not None and tr.last_seen[r] == previous]
        pairs += self._match(recent, low, boxes, predicted, labels, s.low_match_iou)
        pairs.sort()
        chosen = [d for _, d in pairs]
        self._correct([r for r, _ in pairs], boxes[chosen], scores[chosen])
        detection_of: dict[int, int] = {}
        confirmed_now: list[int] = []
        for r, d in pairs:
            detection_of[r] = d
            tr.hits[r] += 1
            tr.last_seen[r] = t
            tr.last_box[r] = (float(boxes[d, 0]), float(boxes[d, 1]), float(boxes[d, 2]), float(boxes[d, 3]))
            if not tr.confirmed[r] and tr.hits[r] >= s.min_hits:
                tr.confirmed[r] = True
                confirmed_now.append(tr.ids[r])
        held_rows = self._hold(t, [r for r in rows if r not in detection_of], held, held_labels)
        # 4. end tracks unseen for longer than max_age, drop unmatched tentative ones; start new tracks
        ended: list[TrackView] = []
        keep = [
            r in detection_of or r in held_rows or (tr.confirmed[r] and t - tr.last_seen[r] <= s.max_age_s)
            for r in rows
        ]
        for r in rows:
            if not keep[r] and tr.confirmed[r]:
                ended.append(self._view(r, None, None, tr.last_box[r]))
        if not all(keep):
            remap = {old: new for new, old in enumerate(r for r in rows if keep[r])}
            detection_of = {remap[r]: d for r, d in detection_of.items()}
            tr.keep(keep)
        used = set(detection_of.values())
        for d in high:
            if d in used or scores[d] < s.new_track_score:
                continue
            if len(tr) >= s.max_tracks:
                self.refused += 1
                continue
            tr.add(self.next_id, labels[d], boxes[d], t, s)
            detection_of[len(tr) - 1] = d
            self.next_id += 1
            if s.min_hits <= 1:
                tr.confirmed[-1] = True
                confirmed_now.append(tr.ids[-1])
        current = _to_boxes(tr.x[:, :, 0]) if len(tr) else np.zeros((0, 4))
        views = []
        assigned: list[int | None] = [None] * len(scores)
        for r in range(len(tr)):
            matched = detection_of.get(r)
            if matched is not None:
                views.append(self._view(r, matched, float(scores[matched]), tr.last_box[r]))
                if tr.confirmed[r]:
                    assigned[matched] = tr.ids[r]
            else:
                c = current[r]
                views.append(self._view(r, None, None, (float(c[0]), float(c[1]), float(c[2]), float(c[3]))))
        return TrackerStep(tuple(views), tuple(confirmed_now), tuple(ended), tuple(assigned))

    def _hold(self, t: float, rows: list[int], held: FloatArray | None, held_labels: Sequence[str]) -> set[int]:
        """The unmatched ``rows`` that a held box keeps (see :meth:`update`), each put back at its last box."""
        if held is None or not rows or not len(held):
            return set()
        tr = self._tracks
        boxes = np.asarray(held, dtype=np.float64).reshape(-1, 4)
        last = np.array([tr.last_box[r] for r in rows], dtype=np.float64).reshape(-1, 4)
        m = iou_matrix(last, boxes)
        same = np.array([[tr.labels[r] == label for label in held_labels] for r in rows], dtype=bool)
        kept: set[int] = set()
        for i, _ in greedy_match(np.where(same, m, 0.0), HELD_IOU):
            r = rows[i]
            kept.add(r)
            tr.x[r, :, 0] = _to_state(np.asarray(tr.last_box[r], dtype=np.float64))  # no drift while held
            tr.last_seen[r] = t
        return kept

    def finish(self) -> tuple[TrackView, ...]:
        """End every track (the source ended): returns the confirmed ones, as last seen."""
        tr = self._tracks
        out = tuple(self._view(i, None, None, tr.last_box[i]) for i in range(len(tr)) if tr.confirmed[i])
        self._tracks = _Tracks()
        self._time = None
        return out

    def _view(self, r: int, detection: int | None, score: float | None, box: BoxTuple) -> TrackView:
        tr = self._tracks
        return TrackView(
            tr.ids[r], tr.labels[r], box, score, detection, tr.confirmed[r], tr.first_seen[r], tr.last_seen[r]
        )
