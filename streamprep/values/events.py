"""What the event engine emits, and its published form (``streamprep.event/1``).

:class:`Event` is one message about one object's visit; :class:`ZoneCount` and :class:`LineCount` are
retained state (how many objects of a label are in a zone now; how many crossed a line so far).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamprep.values.frames import BoxTuple

EVENT_SCHEMA = "streamprep.event/1"
EVENT_SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schemas" / "event-1.json"
EVENT_VOLATILE_FIELDS = ("id", "event_id", "captured_at")  # differ between two replays of one file


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    """Where an event's snapshot was written, and the frame it shows (its pts, the box drawn, its score)."""

    path: str  # relative to the snapshot directory
    full_path: str | None
    pts: float | None
    box: BoxTuple
    score: float


@dataclass(frozen=True, slots=True)
class Event:
    """One message about one visit of one object (``event_id``), numbered ``seq`` 0, 1, 2 … within it.

    ``type``: ``new`` (the object counts: ``min_hits`` detections in a row), ``update`` (``reason``
    ``zones``: it entered or left zones; ``score``: its best score improved), ``crossing`` (``line``,
    ``direction``, ``count`` so far for this line, direction and label) and ``end`` (``reason`` ``lost``:
    unseen for ``max_age_s``; ``stopped``: the source ended or restarted).
    """

    type: str
    event_id: str
    seq: int
    source: str
    model: str
    track_id: int
    label: str
    pts: float | None  # the frame that produced this message
    captured_at: float
    frame: tuple[int, int]
    first_pts: float
    last_pts: float
    score: float | None  # in the frame that produced it; None when the object was not seen in that frame
    best_score: float
    box: BoxTuple  # where the object was last seen, in source pixels
    zones: tuple[str, ...]
    entered_zones: tuple[str, ...]
    entered: tuple[str, ...] = ()
    left: tuple[str, ...] = ()
    reason: str | None = None
    line: str | None = None
    direction: str | None = None
    count: int | None = None
    snapshot: SnapshotRef | None = None
    jpeg: bytes | None = field(default=None, repr=False)  # the snapshot crop to publish with it

    @property
    def id(self) -> str:
        """Unique per message and the same on every redelivery: consumers drop duplicates by it."""
        return f"{self.event_id}/{self.seq}"


@dataclass(frozen=True, slots=True)
class ZoneCount:
    source: str
    zone: str
    label: str
    count: int


@dataclass(frozen=True, slots=True)
class LineCount:
    source: str
    line: str
    label: str
    direction: str
    count: int


EventOutput = Event | ZoneCount | LineCount


def _box(b: BoxTuple) -> list[float]:
    return [round(v, 1) for v in b]


def _t(v: float | None) -> float | None:
    return None if v is None else round(v, 6)


def event_to_dict(event: Event, device: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "schema": EVENT_SCHEMA,
        "id": event.id,
        "type": event.type,
        "event_id": event.event_id,
        "seq": event.seq,
        "device": device,
        "source": event.source,
        "model": event.model,
        "track_id": event.track_id,
        "label": event.label,
        "pts": _t(event.pts),
        "captured_at": round(event.captured_at, 6),
        "frame": {"width": event.frame[0], "height": event.frame[1]},
        "first_pts": _t(event.first_pts),
        "last_pts": _t(event.last_pts),
        "score": None if event.score is None else round(event.score, 4),
        "best_score": round(event.best_score, 4),
        "box": _box(event.box),
        "zones": list(event.zones),
        "entered_zones": list(event.entered_zones),
    }
    if event.type == "update":
        out["entered"], out["left"] = list(event.entered), list(event.left)
    if event.reason is not None:
        out["reason"] = event.reason
    if event.type == "crossing":
        out["line"], out["direction"], out["count"] = event.line, event.direction, event.count
    if event.snapshot is not None:
        s = event.snapshot
        out["snapshot"] = {
            "path": s.path,
            "full_path": s.full_path,
            "pts": _t(s.pts),
            "box": _box(s.box),
            "score": round(s.score, 4),
            "published": event.jpeg is not None,
        }
    return out


def encode_event(event: Event, device: str) -> bytes:
    return json.dumps(event_to_dict(event, device), separators=(",", ":")).encode()
