"""Configuration of tracking and events: ``[events]`` and, per source, ``[[sources.zones]]``/``[[sources.lines]]``.

Validated when the config is read; every message names its key (``sources.0.zones.1.polygon: ...``).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from streamprep.events.geometry import Line, Zone, polygon_area, resolve
from streamprep.events.tracking import TrackerSettings
from streamprep.values.names import check_name, check_prefix
from streamprep.values.settings import Strict

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _name(v: str) -> str:
    if not _NAME.match(v):
        raise ValueError("must be 1-64 letters, digits, '_' or '-' (it becomes an MQTT topic level)")
    return v


def _labels(v: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """Labels name topic levels of the counts (``.../zones/<zone>/<label>``): names like any other."""
    for label in v or ():
        check_name(label)
    return v


def _points(v: tuple[tuple[float, float], ...], at_least: int) -> tuple[tuple[float, float], ...]:
    if any(c < 0 for p in v for c in p):
        raise ValueError("coordinates must not be negative")
    if len(set(v)) < at_least:
        raise ValueError(f"needs at least {at_least} distinct [x, y] points")
    return v


class ZoneConfig(Strict):
    """A polygon in pixels, or in fractions of the frame when every coordinate is at most 1."""

    name: str  # letters, digits, _ and -: it becomes an MQTT topic level
    polygon: tuple[tuple[float, float], ...]  # [[x, y], ...] in pixels, or fractions when all <= 1
    labels: tuple[str, ...] | None = None  # only these labels; default: all
    min_frames: int = Field(3, ge=1, le=1000)  # observations in a row that enter or leave the zone

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        return _name(v)

    _check_labels = field_validator("labels")(_labels)

    @field_validator("polygon")
    @classmethod
    def _polygon(cls, v: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        _points(v, 3)
        if abs(polygon_area(resolve(v, 1000, 1000))) < 1e-9:
            raise ValueError("the polygon has no area (its points are on one line)")
        return v

    def zone(self) -> Zone:
        return Zone(self.name, self.polygon, frozenset(self.labels) if self.labels else None, self.min_frames)


class LineConfig(Strict):
    """A line from ``points[0]`` (P1) to ``points[1]`` (P2); crossing it counts where it passes between them."""

    name: str  # letters, digits, _ and -: it becomes an MQTT topic level
    points: tuple[tuple[float, float], tuple[float, float]]  # [P1, P2], pixels or fractions
    labels: tuple[str, ...] | None = None  # only these labels; default: all
    min_frames: int = Field(3, ge=1, le=1000)  # observations on the new side that confirm a crossing

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        return _name(v)

    _check_labels = field_validator("labels")(_labels)

    @field_validator("points")
    @classmethod
    def _two_points(cls, v: tuple[tuple[float, float], tuple[float, float]]) -> tuple[tuple[float, float], ...]:
        return _points(v, 2)

    def line(self) -> Line:
        return Line(self.name, self.points, frozenset(self.labels) if self.labels else None, self.min_frames)


class SnapshotConfig(Strict):
    enabled: bool | None = None  # default: on when there is a directory (dir, or state_dir)
    dir: Path | None = None  # default: STATE_DIR/snapshots
    margin: float = Field(0.15, ge=0, le=2)  # crop margin around the box, as a fraction of its size
    full_frame: bool = False  # also keep the whole frame with the box drawn
    quality: int = Field(85, ge=10, le=100)  # JPEG quality
    max_total_mb: float = Field(200.0, gt=0, le=1_000_000)  # oldest snapshots are removed beyond this
    publish: bool = False  # publish the final crop on .../events/<event_id>/snapshot
    # a published crop's largest size (its quality is lowered to fit)
    publish_max_bytes: int = Field(262_144, ge=1024, le=100_000_000)


class HomeAssistantConfig(Strict):
    enabled: bool = False  # retained discovery configs: zone counts and occupancy, line counters
    discovery_prefix: str = Field("homeassistant", min_length=1)  # Home Assistant's discovery topic prefix

    _check_prefix = field_validator("discovery_prefix")(check_prefix)


class EventsConfig(Strict):
    """``[events]``: present means tracking and events are on (``--events`` on the command line)."""

    results: bool = True  # keep publishing per-frame results beside the events
    labels: tuple[str, ...] | None = None  # track only these labels; default: all
    high_score: float = Field(0.5, ge=0, le=1)  # first-stage detections; weaker ones only keep tracks going
    new_track_score: float = Field(0.6, ge=0, le=1)  # a detection that may start a track
    match_iou: float = Field(0.2, gt=0, le=1)  # first-stage association overlap
    low_match_iou: float = Field(0.5, gt=0, le=1)  # second-stage (weak detections) association overlap
    max_age_s: float = Field(1.5, gt=0, le=3600)  # an object unseen this long (source time) has left
    min_hits: int = Field(3, ge=1, le=1000)  # consecutive detections before an object counts
    max_tracks: int = Field(100, ge=1, le=10_000)  # per source
    update_interval_s: float = Field(5.0, ge=0, le=3600)  # at most one score update per object this often
    score_margin: float = Field(0.05, ge=0, le=1)  # a better score is an update only by this much
    snapshots: SnapshotConfig = SnapshotConfig()  # [events.snapshots]
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()  # [events.homeassistant]: MQTT discovery

    _check_labels = field_validator("labels")(_labels)

    @model_validator(mode="after")
    def _scores(self) -> EventsConfig:
        if self.new_track_score < self.high_score:
            raise ValueError("new_track_score must be at least high_score")
        return self

    def snapshot_dir(self, state_dir: Path | None) -> Path | None:
        """Where snapshots go, or None when they are off."""
        if self.snapshots.enabled is False:
            return None
        if self.snapshots.dir is not None:
            return self.snapshots.dir
        return state_dir / "snapshots" if state_dir is not None else None

    def problem(
        self, state_dir: Path | None, sources: list[tuple[tuple[ZoneConfig, ...], tuple[LineConfig, ...]]]
    ) -> str | None:
        """What is wrong with these settings for these sources' zones and lines, naming the key; or None."""
        if self.snapshots.enabled and self.snapshot_dir(state_dir) is None:
            return "events.snapshots.enabled: snapshots need a directory: set state_dir or events.snapshots.dir"
        if self.homeassistant.enabled:
            for i, (zones, lines) in enumerate(sources):
                named: list[tuple[str, tuple[ZoneConfig | LineConfig, ...]]] = [
                    ("zones", zones),
                    ("lines", lines),
                ]
                for key, items in named:
                    for j, item in enumerate(items):
                        if not (item.labels or self.labels):
                            return (
                                f"sources.{i}.{key}.{j}.labels: Home Assistant discovery needs to know the labels "
                                "to announce: set labels here or in [events]"
                            )
        return None

    def tracker(self) -> TrackerSettings:
        return TrackerSettings(
            high_score=self.high_score,
            new_track_score=self.new_track_score,
            match_iou=self.match_iou,
            low_match_iou=self.low_match_iou,
            max_age_s=self.max_age_s,
            min_hits=self.min_hits,
            max_tracks=self.max_tracks,
        )


def unique_names(items: tuple[ZoneConfig, ...] | tuple[LineConfig, ...], what: str) -> str | None:
    """The first name used twice, as an error message, or None."""
    names = [z.name for z in items]
    dup = next((n for n in names if names.count(n) > 1), None)
    return f"{what} name {dup!r} is used twice" if dup else None
