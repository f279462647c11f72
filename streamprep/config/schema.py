"""Typed configuration: a TOML file and command-line flags say the same things.

Validation is strict (unknown keys are errors) and every message names the key, e.g.
``config error: model.batch: Input should be greater than or equal to 1``.
"""

from __future__ import annotations

import math
import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from streamprep.events.settings import EventsConfig, LineConfig, ZoneConfig, _points, unique_names
from streamprep.flow.queues import DropPolicy
from streamprep.inference.settings import ModelConfig
from streamprep.regions.source import RegionSettings
from streamprep.sinks.settings import MqttConfig
from streamprep.values.errors import ConfigError
from streamprep.values.frames import RegionMode
from streamprep.values.names import NAME_MAX, check_name, topic_level
from streamprep.values.redact import redact_url
from streamprep.values.secrets import read_credential
from streamprep.values.settings import Strict

DEFAULT_MODEL_KEY = "default"


SampleMode = Literal["exact", "keyframes"]
Polygon = tuple[tuple[float, float], ...]


def _masks(v: tuple[Polygon, ...] | None) -> tuple[Polygon, ...] | None:
    for i, polygon in enumerate(v or ()):
        try:
            _points(polygon, 3)
        except ValueError as exc:
            raise ValueError(f"polygon {i}: {exc}") from None
    return v


# FFmpeg hardware device types streamprep can ask for (see streamprep.sources.hwdecode), plus auto and off
HWACCEL_SETTINGS = ("auto", "off", "cuda", "vaapi", "qsv", "videotoolbox", "d3d11va", "d3d12va", "dxva2", "vdpau")


def _hwaccel_setting(v: str | None) -> str | None:
    if v is not None and v not in HWACCEL_SETTINGS:
        raise ValueError(f"unknown hardware decoder {v!r}; choose one of {', '.join(HWACCEL_SETTINGS)}")
    return v


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


class SourceConfig(Strict):
    """One video source: a file, ``rtsp://``/``http(s)://``/``udp://`` URL, ``/dev/videoN`` or ``lavfi:GRAPH``."""

    # a file, rtsp://, rtsps://, rtmp://, http(s):// (HLS), udp://, srt:// URL, /dev/videoN or lavfi:GRAPH
    url: str = Field(min_length=1)
    # used in topics and results (1-128 characters, no control characters); default: the file stem or host
    id: str | None = None
    fps: float | None = Field(None, gt=0, le=1000)  # sample this source to this frame rate; default: the top-level fps
    # frames waiting; default: queue_size (files) or live_queue_size (live)
    queue_size: int | None = Field(None, ge=1, le=1024)
    policy: DropPolicy | None = None  # when the queue is full; default: block for files, drop_oldest for live sources
    realtime: bool | None = None  # files only: pace like a live camera; default: the top-level realtime
    transport: Literal["tcp", "udp"] = "tcp"  # RTSP transport
    open_timeout_s: float = Field(5.0, gt=0, le=300)  # opening the stream gives up after this
    stall_timeout_s: float = Field(5.0, gt=0, le=300)  # no frame for this long: stalled, reopened
    backoff_cap_s: float = Field(10.0, gt=0, le=3600)  # reopening waits 1 s, doubling (with jitter) up to this
    max_restarts_per_minute: int = Field(20, ge=1, le=600)  # more restarts than this in a minute: failed
    format: str | None = None  # force an FFmpeg demuxer, e.g. v4l2
    # FFmpeg input options, e.g. {video_size = "1280x720", framerate = "30"}
    options: dict[str, str] = Field(default_factory=dict)
    low_delay: bool = True  # live: decode for delay (slice threads); false: for throughput (frame threads)
    wait_for_source: bool = False  # live: keep retrying one that has never come up, whatever it answers
    model: str | None = Field(None, description="key of a [models.NAME] table; default: [model]")
    roi: tuple[float, float, float, float] | None = None  # x, y, w, h: pixels, or fractions when all <= 1
    username: str | None = None  # the camera's user name (instead of putting it in the URL)
    password_credential: str | None = None  # the password from systemd's LoadCredential=NAME:FILE...
    password_env: str | None = None  # ...or from this environment variable...
    password_file: Path | None = None  # ...or from this file (e.g. under $CREDENTIALS_DIRECTORY)
    zones: tuple[ZoneConfig, ...] = ()  # [[sources.zones]]: need [events]
    lines: tuple[LineConfig, ...] = ()  # [[sources.lines]]: need [events]
    sample: SampleMode | None = None  # default: the top-level sample
    skip_frames: bool | None = None  # default: the top-level skip_frames
    hwaccel: str | None = None  # default: the top-level hwaccel
    # what the model looks at: full (the whole frame), tiles or motion; default: the top-level regions
    regions: RegionMode | None = None
    tile_overlap: float | None = Field(None, ge=0, lt=1)  # tiles: overlap of neighbours; default: the top-level one
    tile_scale: float | None = Field(None, gt=0, le=16)  # tile side / model input side; default: the top-level one
    full_frame: bool | None = None  # tiles: a whole-frame pass too (large objects); default: the top-level one
    recheck_s: float | None = Field(None, gt=0, le=3600)  # motion: re-check still ones this often; default: top-level
    # motion: polygons where motion is ignored ([[x, y], ...], pixels or fractions, as zones); default: top-level
    motion_masks: tuple[Polygon, ...] | None = None
    # not a key: ``run --workers`` resumes a restarted worker's file at this seq (see streamprep.ops.workers)
    _resume_seq: int = PrivateAttr(0)

    _hwaccel = field_validator("hwaccel")(_hwaccel_setting)
    _masks = field_validator("motion_masks")(_masks)
    _finite_regions = field_validator("tile_overlap", "tile_scale", "recheck_s", mode="before")(_finite)

    @property
    def resume_seq(self) -> int:
        """A file replay hands over its sampled frames from this seq on (those before it were delivered)."""
        return self._resume_seq

    def resumed_at(self, seq: int) -> SourceConfig:
        """A copy whose replay resumes at ``seq``."""
        copy = self.model_copy()
        copy._resume_seq = seq
        return copy

    def resolved_url(self) -> str:
        """``url`` with the credentials from ``username`` and ``password_env``/``password_file`` put in
        (never logged). Raises ConfigError naming the key when they cannot be read."""
        if (self.password_env, self.password_file, self.password_credential, self.username) == (None,) * 4:
            return self.url
        name = self.id or redact_url(self.url)
        password: str | None = None
        if self.password_credential is not None:
            password = read_credential(self.password_credential, f"source {name}: password_credential")
        elif self.password_env is not None:
            password = os.environ.get(self.password_env)
            if password is None:
                raise ConfigError(f"source {name}: password_env: environment variable {self.password_env} is not set")
        elif self.password_file is not None:
            try:
                password = self.password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                reason = exc.strerror or exc
                raise ConfigError(f"source {name}: password_file: {self.password_file}: {reason}") from None
        parts = urlsplit(self.url)
        if not parts.hostname:
            raise ConfigError(f"source {name}: credentials need a URL with a host")
        user = self.username if self.username is not None else (unquote(parts.username) if parts.username else None)
        if user is None:
            raise ConfigError(
                f"source {name}: a password needs a user name: set username, or put it in the URL (rtsp://USER@host/...)"
            )
        if password is None and parts.password is not None:
            password = unquote(parts.password)
        secret = f":{quote(password, safe='')}" if password is not None else ""
        netloc = f"{quote(user, safe='')}{secret}@{parts.netloc.rpartition('@')[2]}"
        return urlunsplit(parts._replace(netloc=netloc))

    @field_validator("roi")
    @classmethod
    def _roi(cls, v: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if v is None:
            return v
        if min(v) < 0 or v[2] <= 0 or v[3] <= 0:
            raise ValueError("must be [x, y, width, height] with width and height > 0")
        if all(c <= 1 for c in v):  # fractions of the frame: checked now; pixels against each frame size
            inside = "fractions of the frame must stay within [0, 1]"
            if v[0] + v[2] > 1 + 1e-9:
                raise ValueError(f"x + width = {v[0] + v[2]:g} goes past the right edge ({inside})")
            if v[1] + v[3] > 1 + 1e-9:
                raise ValueError(f"y + height = {v[1] + v[3]:g} goes past the bottom edge ({inside})")
        return v

    _finite_fps = field_validator("fps", mode="before")(_finite)

    @field_validator("id", "model")
    @classmethod
    def _names(cls, v: str | None) -> str | None:
        return v if v is None else check_name(v)


class OutputConfig(Strict):
    out: str | None = None  # a file path, or "-" for stdout
    mqtt: MqttConfig | None = None  # [output.mqtt]; mqtt = "URL" is short for [output.mqtt] url = "URL"
    annotate: Path | None = None  # an MP4 of the sampled frames with their boxes drawn (one per source)

    @field_validator("mqtt", mode="before")
    @classmethod
    def _url_shorthand(cls, v: Any) -> Any:
        return {"url": v} if isinstance(v, str) else v


class MetricsConfig(Strict):
    listen: str | None = None  # HOST:PORT for Prometheus, e.g. 127.0.0.1:9108; off when unset


def parse_listen(listen: str) -> tuple[str, int]:
    """``metrics.listen`` as (host, port)."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"metrics.listen: {listen!r} must look like HOST:PORT (e.g. 127.0.0.1:9108)")
    return host.strip("[]"), int(port)


class StatusConfig(Strict):
    socket: Path | None = None  # unix socket for `streamprep top`; default $RUNTIME_DIRECTORY/status.sock


class LimitsConfig(Strict):
    """What the sources may cost; ``streamprep run`` and ``check`` refuse a config over it (see budget.py)."""

    max_sources: int = Field(64, ge=1, le=100_000)  # sources in one config (more are refused)
    open_files: int = Field(16, ge=1, le=10_000)  # files decoded at once; the others wait their turn
    memory_mb: int | None = Field(None, ge=64)  # default: 80% of the memory this process may use
    threads: int | None = Field(None, ge=16)  # default: 80% of the service's task limit (TasksMax), if any


class LoggingConfig(Strict):
    format: Literal["auto", "text", "journal", "json"] = "auto"  # auto: journal under systemd, else text
    level: Literal["debug", "info", "warning", "error"] = "info"  # the least severe level logged


class Config(Strict):
    # used in MQTT topics and results
    device: str = Field(default_factory=lambda: socket.gethostname() or "streamprep", min_length=1)
    state_dir: Path | None = None  # where the MQTT outbox spools results it could not deliver yet
    drain_timeout_s: float = Field(10.0, ge=0, le=3600)  # on stop: time to finish what is in flight
    workers: int = Field(1, ge=1, le=256)  # processes sharing the sources (see streamprep.ops.workers)
    fps: float | None = Field(None, gt=0, le=1000)  # sample every source to this frame rate; unset: every frame
    realtime: bool = False  # pace files like live cameras (latest frame wins)
    queue_size: int = Field(8, ge=1, le=1024)  # frames waiting per file source
    live_queue_size: int = Field(1, ge=1, le=1024)  # frames waiting per live source (latest frame wins)
    sources: tuple[SourceConfig, ...] = ()  # [[sources]]: plain strings (URLs) or tables
    # "exact": the first frame of each 1/fps slot; "keyframes": the first keyframe at or after each slot start
    sample: SampleMode = "exact"
    skip_frames: bool = True  # leave undecoded the frames sampling will not select (same frames selected)
    hwaccel: str = "auto"  # hardware decoding: auto, off, or a device type (cuda, vaapi, qsv, videotoolbox...)
    # what the model looks at in each frame: full (the whole frame resized), tiles (native-resolution tiles over
    # the whole frame) or motion (native-resolution regions where something moves); see docs/regions.md
    regions: RegionMode = RegionMode.FULL
    tile_overlap: float = Field(0.2, ge=0, lt=1)  # tiles: at least this fraction of a tile overlaps its neighbour
    tile_scale: float = Field(1.0, gt=0, le=16)  # tile (and motion region) side / the model's input side
    full_frame: bool = False  # tiles: a whole-frame pass too, for objects larger than a tile
    recheck_s: float = Field(2.0, gt=0, le=3600)  # motion: a still object is looked at again this often
    # motion: polygons where motion is ignored (a tree, a clock, a screen): [[x, y], ...] in pixels, or fractions
    motion_masks: tuple[Polygon, ...] = ()
    model: ModelConfig = ModelConfig()  # [model]: the model sources use unless they name another
    # [models.NAME]: more models, each with the keys of [model]; a source picks one with model = NAME
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    output: OutputConfig = OutputConfig()  # [output]: where results go (stdout when nothing is set)
    metrics: MetricsConfig = MetricsConfig()  # [metrics]: Prometheus
    status: StatusConfig = StatusConfig()  # [status]: the socket `streamprep top` reads
    logging: LoggingConfig = LoggingConfig()  # [logging]
    limits: LimitsConfig = LimitsConfig()  # [limits]: what the sources may cost
    events: EventsConfig | None = None  # [events]: tracking, zones, lines, events, snapshots

    _hwaccel = field_validator("hwaccel")(_hwaccel_setting)
    _masks = field_validator("motion_masks")(_masks)
    _finite_regions = field_validator("tile_overlap", "tile_scale", "recheck_s", mode="before")(_finite)

    @field_validator("sources", mode="before")
    @classmethod
    def _strings_are_urls(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [{"url": s} if isinstance(s, str) else s for s in v]
        return v

    _finite_fps = field_validator("fps", mode="before")(_finite)

    @field_validator("device")
    @classmethod
    def _device_name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("models")
    @classmethod
    def _model_keys(cls, v: dict[str, ModelConfig]) -> dict[str, ModelConfig]:
        for key in v:
            try:
                check_name(key)
            except ValueError as exc:
                raise ValueError(f"the name {exc}") from None
        return v

    @model_validator(mode="after")
    def _unique_ids(self) -> Config:
        ids = [s.id for s in self.sources if s.id]
        dup = next((i for i in ids if ids.count(i) > 1), None)
        if dup:
            raise ValueError(f"source id {dup!r} is used twice")
        levels: dict[str, str] = {}
        for sid in self.source_ids():
            other = levels.setdefault(topic_level(sid), sid)
            if other != sid:
                raise ValueError(
                    f"source ids {other!r} and {sid!r} would publish to the same MQTT topic "
                    f"level {topic_level(sid)!r}: rename one"
                )
        if DEFAULT_MODEL_KEY in self.models:
            raise ValueError(f"models.{DEFAULT_MODEL_KEY}: the name is reserved for [model]")
        for i, s in enumerate(self.sources):
            if s.model is not None and s.model != DEFAULT_MODEL_KEY and s.model not in self.models:
                known = ", ".join([DEFAULT_MODEL_KEY, *self.models]) or "none"
                raise ValueError(f"sources.{i}.model: no model named {s.model!r} (models: {known})")
        for i, s in enumerate(self.sources):
            if s.roi is not None and self.regions_of(s).mode is not RegionMode.FULL:
                raise ValueError(f'sources.{i}.roi: a region of interest works with regions = "full" only')
        for i, s in enumerate(self.sources):
            for key, items in (("zones", s.zones), ("lines", s.lines)):
                if items and self.events is None:
                    raise ValueError(f"sources.{i}.{key}: zones and lines need an [events] table (or --events)")
                if problem := unique_names(items, key[:-1]):
                    raise ValueError(f"sources.{i}.{key}: {problem}")
        if self.events is not None:
            if problem := self.events.problem(self.state_dir, [(s.zones, s.lines) for s in self.sources]):
                raise ValueError(problem)
            if self.events.homeassistant.enabled and self.output.mqtt is None:
                raise ValueError("events.homeassistant.enabled: Home Assistant discovery needs [output.mqtt]")
        return self

    def regions_of(self, source: SourceConfig) -> RegionSettings:
        """A source's regions settings, its own keys over the top-level ones."""

        def pick(own: Any, default: Any) -> Any:
            return default if own is None else own

        return RegionSettings(
            mode=pick(source.regions, self.regions),
            tile_overlap=pick(source.tile_overlap, self.tile_overlap),
            tile_scale=pick(source.tile_scale, self.tile_scale),
            full_frame=pick(source.full_frame, self.full_frame),
            recheck_s=pick(source.recheck_s, self.recheck_s),
            masks=pick(source.motion_masks, self.motion_masks),
        )

    def model_for(self, key: str) -> ModelConfig:
        return self.model if key == DEFAULT_MODEL_KEY else self.models[key]

    def used_models(self) -> list[str]:
        """The model keys some source uses, in order of first use."""
        keys = [s.model or DEFAULT_MODEL_KEY for s in self.sources]
        return list(dict.fromkeys(keys))

    def source_ids(self) -> list[str]:
        """A stable id per source: its own, or the file stem / host, made unique."""
        taken: set[str] = {s.id for s in self.sources if s.id}
        out: list[str] = []
        for s in self.sources:
            if s.id:
                out.append(s.id)
                continue
            base = _default_id(s.url)
            name, n = base, 2
            while name in taken:
                name, n = f"{base}-{n}", n + 1
            taken.add(name)
            out.append(name)
        return out


def _default_id(url: str) -> str:
    m = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/]*@)?([^/:?#]+)", url)
    stem = m.group(1) if m else Path(url).stem
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)[: NAME_MAX - 8] or "source"  # room for "-N" to make it unique


ERRORS_SHOWN = 10  # problems named in one config error; the rest are counted


def _format(exc: ValidationError, where: str) -> str:
    lines = []
    errors = exc.errors()
    for err in errors[:ERRORS_SHOWN]:
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if not err["loc"] and re.match(r"^[\w.]+: ", msg):  # the message names its key itself
            lines.append(f"{where}{msg}")
            continue
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{where}{key}: {msg}" if key else f"{where}{msg}")
    if len(errors) > ERRORS_SHOWN:
        lines.append(f"... and {len(errors) - ERRORS_SHOWN} more")
    return "; ".join(lines)


def parse(data: dict[str, Any], where: str = "") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(exc, where)) from None


def load(path: Path) -> dict[str, Any]:
    """Read a TOML config file into a plain dict (validated later, merged with flags)."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` on top of ``base``, recursively for tables."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
