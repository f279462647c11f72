"""From per-frame detections to events: one :class:`EventEngine` per source, fed every result in order.

:class:`EventHub` is what a pipeline holds: it keeps an engine per source (a new one when the source's
zones or lines change), the snapshot store, and turns each :class:`~streamprep.values.frames.Result` (plus the
image of its frame) into the same result with ``track_id`` set on its detections, and the events and
retained counts it caused. Both are synchronous and meant for a worker thread: JPEG rendering happens
here when an event carries a snapshot; files are written by the store's own thread.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from streamprep.events.geometry import Line, LineState, Zone, ZoneState, bottom_centre, inside, resolve
from streamprep.events.settings import EventsConfig, LineConfig, ZoneConfig
from streamprep.events.snapshots import SnapshotStore, fit_jpeg, render_crop, render_full
from streamprep.events.tracking import Matcher, Tracker, TrackView, greedy_match
from streamprep.values.events import Event, EventOutput, LineCount, SnapshotRef, ZoneCount
from streamprep.values.frames import BoxTuple, Detection, Image, Result
from streamprep.values.names import topic_level

log = logging.getLogger(__name__)

SourceGeometry = tuple[tuple[ZoneConfig, ...], tuple[LineConfig, ...]]
_Resolved = tuple[
    list[tuple[Zone, tuple[tuple[float, float], ...]]], list[tuple[Line, tuple[tuple[float, float], ...]]]
]


def _boxes(detections: Sequence[Detection]) -> npt.NDArray[np.float64]:
    """The detections' boxes, n×4 (x1, y1, x2, y2)."""
    return np.array([[d.box.x1, d.box.y1, d.box.x2, d.box.y2] for d in detections], dtype=np.float64).reshape(-1, 4)


@dataclass
class _Best:
    """The frame where the object scored best: the frame's own image (never copied: frames are immutable)."""

    score: float
    pts: float | None
    box: BoxTuple
    image: Image | None = field(repr=False)
    pixel_format: str


@dataclass
class _Visit:
    track_id: int
    event_id: str
    label: str
    first_pts: float
    last_pts: float
    box: BoxTuple
    zones: dict[str, ZoneState]
    lines: dict[str, LineState]
    confirmed: bool = False
    seq: int = 0
    best: _Best | None = None
    reported_best: float = 0.0
    last_update: float | None = None
    score_pending: bool = False
    entered: list[str] = field(default_factory=list)
    pending_crossings: list[tuple[str, str]] = field(default_factory=list)
    snapshot: SnapshotRef | None = None
    snapshot_of: _Best | None = None  # the best frame the snapshot was rendered from


@dataclass(frozen=True)
class _Frame:
    result: Result
    t: float
    image: Image | None
    pixel_format: str


class EventEngine:
    """Tracking, zones, lines and events for one source."""

    def __init__(
        self,
        source: str,
        cfg: EventsConfig,
        zones: Sequence[Zone] = (),
        lines: Sequence[Line] = (),
        run_id: str = "",
        store: SnapshotStore | None = None,
        matcher: Matcher = greedy_match,
        first_track_id: int = 1,
    ) -> None:
        self.source = source
        self.cfg = cfg
        self.zones = tuple(zones)
        self.lines = tuple(lines)
        self.tracker = Tracker(cfg.tracker(), matcher, first_track_id)
        self.store = store
        self._prefix = f"{run_id}-{topic_level(source)}-" if run_id else f"{topic_level(source)}-"
        self._labels = frozenset(cfg.labels) if cfg.labels else None
        self._visits: dict[int, _Visit] = {}
        self._occupancy: dict[tuple[str, str], int] = {}
        self._crossings: dict[tuple[str, str, str], int] = {}
        self._resolved: dict[tuple[int, int], _Resolved] = {}
        self._last: _Frame | None = None
        self._started = False

    # -- public
    def process(
        self, result: Result, image: Image | None = None, pixel_format: str = "bgr24"
    ) -> tuple[Result, list[EventOutput]]:
        """One result, in order; ``image`` is its frame (for snapshots). Returns it with track ids, and outputs."""
        if result.detections is None:
            return result, []
        out: list[EventOutput] = []
        if not self._started:
            self._started = True
            out += self._initial_counts()
        t = result.pts if result.pts is not None else (self._last.t if self._last is not None else 0.0)
        if self._last is not None and t < self._last.t:
            out += self.finish("stopped")  # the source started again from an earlier time
        frame = _Frame(result, t, image, pixel_format)
        # carried detections (regions = "motion") are no sightings, and keep the track id they had; those carried
        # because nothing moved where they are hold their objects' tracks there (no drift, no ageing out)
        wanted = [i for i, d in enumerate(result.detections) if self._labels is None or d.label in self._labels]
        tracked = [i for i in wanted if not result.detections[i].carried]
        dets = [result.detections[i] for i in tracked]
        still = [result.detections[i] for i in wanted if result.detections[i].still]
        step = self.tracker.update(
            t,
            _boxes(dets),
            np.array([d.score for d in dets], dtype=np.float64),
            [d.label for d in dets],
            _boxes(still),
            [d.label for d in still],
        )
        self._last = frame
        for view in step.ended:
            out += self._end(view, frame, "lost")
        live = {v.id for v in step.tracks}
        for track_id in [k for k in self._visits if k not in live]:
            del self._visits[track_id]  # a tentative track that never got confirmed
        confirmed_now = set(step.confirmed)
        for view in step.tracks:
            if view.detection is not None:
                out += self._observe(view, frame, view.id in confirmed_now)
        ids: list[int | None] = [None] * len(result.detections)
        for k, i in enumerate(tracked):
            ids[i] = step.assigned[k]
        detections = tuple(
            d if ids[i] is None else dataclasses.replace(d, track_id=ids[i]) for i, d in enumerate(result.detections)
        )
        return dataclasses.replace(result, detections=detections), out

    def finish(self, reason: str = "stopped") -> list[EventOutput]:
        """The source ended: every object still there ends now (as last seen)."""
        out: list[EventOutput] = []
        frame = self._last
        views = self.tracker.finish()
        if frame is not None:
            for view in views:
                out += self._end(view, frame, reason)
        self._visits.clear()
        self._last = None
        return out

    @property
    def next_track_id(self) -> int:
        return self.tracker.next_id

    # -- internals
    def _initial_counts(self) -> list[EventOutput]:
        out: list[EventOutput] = []
        for zone in self.zones:
            for label in sorted(zone.labels or self._labels or ()):
                self._occupancy[(zone.name, label)] = 0
                out.append(ZoneCount(self.source, zone.name, label, 0))
        for line in self.lines:
            for label in sorted(line.labels or self._labels or ()):
                for direction in ("positive", "negative"):
                    self._crossings[(line.name, label, direction)] = 0
                    out.append(LineCount(self.source, line.name, label, direction, 0))
        return out

    def _geometry(self, width: int, height: int) -> _Resolved:
        key = (width, height)
        if key not in self._resolved:
            zones = [(z, resolve(z.polygon, width, height)) for z in self.zones]
            lines = [(ln, resolve(ln.points, width, height)) for ln in self.lines]
            self._resolved[key] = (zones, lines)
        return self._resolved[key]

    def _observe(self, view: TrackView, frame: _Frame, confirmed_now: bool) -> list[EventOutput]:
        result = frame.result
        visit = self._visits.get(view.id)
        if visit is None:
            visit = _Visit(
                view.id,
                f"{self._prefix}{view.id}",
                view.label,
                frame.t,
                frame.t,
                view.box,
                {z.name: ZoneState(z.min_frames) for z in self.zones if z.applies(view.label)},
                {ln.name: LineState(ln.min_frames) for ln in self.lines if ln.applies(view.label)},
            )
            self._visits[view.id] = visit
        visit.last_pts, visit.box = frame.t, view.box
        score = view.score if view.score is not None else 0.0
        if visit.best is None or score > visit.best.score:
            visit.best = _Best(score, result.pts, view.box, frame.image, frame.pixel_format)
        zones, lines = self._geometry(result.width, result.height)
        point = bottom_centre(view.box)
        entered: list[str] = []
        left: list[str] = []
        for zone, polygon in zones:
            state = visit.zones.get(zone.name)
            if state is not None and state.update(inside(polygon, point)):
                (entered if state.inside else left).append(zone.name)
        for line, (a, b) in lines:
            state_l = visit.lines.get(line.name)
            if state_l is not None and (direction := state_l.update(a, b, point)) is not None:
                visit.pending_crossings.append((line.name, direction))
        out: list[EventOutput] = []
        if confirmed_now:
            visit.confirmed = True
            visit.entered += [z for z, s in visit.zones.items() if s.inside]
            out += self._zone_counts(visit, [z for z, s in visit.zones.items() if s.inside], [])
            out.append(self._event(visit, "new", frame, view.score, snapshot=True))
            visit.last_update = frame.t
            visit.reported_best = visit.best.score if visit.best else score
        elif visit.confirmed and (entered or left):
            visit.entered += [z for z in entered if z not in visit.entered]
            out += self._zone_counts(visit, entered, left)
            out.append(self._event(visit, "update", frame, view.score, entered=entered, left=left, reason="zones"))
            visit.last_update = frame.t
        if visit.confirmed:
            for line_name, direction in visit.pending_crossings:
                out += self._crossing(visit, frame, view.score, line_name, direction)
            visit.pending_crossings.clear()
            best = visit.best.score if visit.best else score
            if best >= visit.reported_best + self.cfg.score_margin and best > visit.reported_best:
                visit.score_pending = True
            interval_over = visit.last_update is None or frame.t - visit.last_update >= self.cfg.update_interval_s
            if visit.score_pending and interval_over:
                out.append(self._event(visit, "update", frame, view.score, reason="score", snapshot=True))
                visit.last_update = frame.t
                visit.reported_best = best
                visit.score_pending = False
        return out

    def _zone_counts(self, visit: _Visit, entered: list[str], left: list[str]) -> list[EventOutput]:
        out: list[EventOutput] = []
        for name, delta in [(z, 1) for z in entered] + [(z, -1) for z in left]:
            key = (name, visit.label)
            self._occupancy[key] = max(0, self._occupancy.get(key, 0) + delta)
            out.append(ZoneCount(self.source, name, visit.label, self._occupancy[key]))
        return out

    def _crossing(
        self, visit: _Visit, frame: _Frame, score: float | None, line: str, direction: str
    ) -> list[EventOutput]:
        key = (line, visit.label, direction)
        self._crossings[key] = self._crossings.get(key, 0) + 1
        count = self._crossings[key]
        event = self._event(visit, "crossing", frame, score, line=line, direction=direction, count=count)
        return [event, LineCount(self.source, line, visit.label, direction, count)]

    def _end(self, view: TrackView, frame: _Frame, reason: str) -> list[EventOutput]:
        visit = self._visits.pop(view.id, None)
        if visit is None or not visit.confirmed:
            return []
        inside_now = [z for z, s in visit.zones.items() if s.inside]
        out = self._zone_counts(visit, [], inside_now)
        out.append(self._event(visit, "end", frame, None, reason=reason, snapshot=True, final=True))
        return out

    def _event(
        self,
        visit: _Visit,
        kind: str,
        frame: _Frame,
        score: float | None,
        *,
        entered: Sequence[str] = (),
        left: Sequence[str] = (),
        reason: str | None = None,
        line: str | None = None,
        direction: str | None = None,
        count: int | None = None,
        snapshot: bool = False,
        final: bool = False,
    ) -> Event:
        jpeg = None
        best = visit.best
        if snapshot and self.store is not None and best is not None and best.image is not None:
            self._render(visit, best, best.image)
            if final and self.cfg.snapshots.publish:
                s = self.cfg.snapshots
                jpeg = fit_jpeg(best.image, best.pixel_format, best.box, s.margin, s.quality, s.publish_max_bytes)
                if jpeg is None:
                    log.warning(
                        "snapshot of %s is over publish_max_bytes even at low quality: not published", visit.event_id
                    )
        result = frame.result
        event = Event(
            type=kind,
            event_id=visit.event_id,
            seq=visit.seq,
            source=self.source,
            model=result.model,
            track_id=visit.track_id,
            label=visit.label,
            pts=result.pts,
            captured_at=result.captured_at,
            frame=(result.width, result.height),
            first_pts=visit.first_pts,
            last_pts=visit.last_pts,
            score=score,
            best_score=visit.best.score if visit.best else 0.0,
            box=visit.box,
            zones=tuple(z for z, s in visit.zones.items() if s.inside and not final),
            entered_zones=tuple(visit.entered),
            entered=tuple(entered),
            left=tuple(left),
            reason=reason,
            line=line,
            direction=direction,
            count=count,
            snapshot=visit.snapshot,
            jpeg=jpeg,
        )
        visit.seq += 1
        return event

    def _render(self, visit: _Visit, best: _Best, image: Image) -> None:
        """Write the best frame's snapshot (once per best frame) and remember where it is."""
        s = self.cfg.snapshots
        assert self.store is not None
        if visit.snapshot_of is best:
            return
        name = f"{topic_level(self.source)}/{visit.event_id}"
        crop = render_crop(image, best.pixel_format, best.box, s.margin, s.quality)
        crop_written = self.store.save(f"{name}.jpg", crop)
        full_written = None
        if s.full_frame:
            caption = f"{visit.label} {best.score:.2f}"
            full = render_full(image, best.pixel_format, best.box, caption, s.quality)
            full_written = self.store.save(f"{name}-full.jpg", full)
        # an event names only files that are there: after a failed (or too slow) write it names the snapshot of
        # an earlier best frame if one was written (the failed write left that file as it was), else none;
        # the next event that carries a snapshot tries again
        if not self.store.wait_written(crop_written):
            return
        full_path = f"{name}-full.jpg" if full_written is not None and self.store.wait_written(full_written) else None
        visit.snapshot = SnapshotRef(f"{name}.jpg", full_path, best.pts, best.box, best.score)
        visit.snapshot_of = best


class EventHub:
    """The engines of every source of a pipeline, and their snapshot store. Thread-safe per source:
    results of one source must come in order (from one thread at a time); sources may use different threads.
    """

    def __init__(
        self,
        cfg: EventsConfig,
        geometry: Callable[[str], SourceGeometry],
        run_id: str,
        state_dir: Path | None = None,
        matcher: Matcher = greedy_match,
    ) -> None:
        self.cfg = cfg
        self._geometry = geometry
        self._run_id = run_id
        self._matcher = matcher
        self._engines: dict[str, tuple[SourceGeometry, EventEngine]] = {}
        self._next_ids: dict[str, int] = {}
        self._lock = threading.Lock()
        self.store: SnapshotStore | None = None
        if (root := cfg.snapshot_dir(state_dir)) is not None:
            self.store = SnapshotStore(root, int(cfg.snapshots.max_total_mb * 1_000_000))

    def process(self, result: Result, image: Image | None, pixel_format: str) -> tuple[Result, list[EventOutput]]:
        out: list[EventOutput] = []
        geometry = self._geometry(result.source)
        with self._lock:
            current = self._engines.get(result.source)
            if current is not None and current[0] != geometry:
                out += current[1].finish("stopped")  # zones or lines changed: a fresh start
                self._next_ids[result.source] = current[1].next_track_id
                current = None
            if current is None:
                zones = [z.zone() for z in geometry[0]]
                lines = [ln.line() for ln in geometry[1]]
                engine = EventEngine(
                    result.source,
                    self.cfg,
                    zones,
                    lines,
                    self._run_id,
                    self.store,
                    self._matcher,
                    self._next_ids.get(result.source, 1),
                )
                current = (geometry, engine)
                self._engines[result.source] = current
        result, more = current[1].process(result, image, pixel_format)
        return result, out + more

    def finish(self) -> list[EventOutput]:
        """Every source ended: end every visit still open."""
        out: list[EventOutput] = []
        with self._lock:
            for source, (_, engine) in self._engines.items():
                out += engine.finish("stopped")
                self._next_ids[source] = engine.next_track_id
            self._engines.clear()
        return out

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
