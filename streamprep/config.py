"""Typed configuration: a TOML file and command-line flags say the same things.

Validation is strict (unknown keys are errors) and every message names the key, e.g.
``config error: model.batch: Input should be greater than or equal to 1``.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from streamprep.decoders import DECODERS
from streamprep.errors import ConfigError
from streamprep.preprocess.spec import SpecOverrides
from streamprep.queues import DropPolicy

DEFAULT_MODEL_KEY = "default"
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "ssd_mobilenet_v2_fpnlite_256_int8.onnx"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceConfig(_Strict):
    """One video source: a file, ``rtsp://``/``http(s)://``/``udp://`` URL, ``/dev/videoN`` or ``lavfi:GRAPH``."""

    url: str = Field(min_length=1)
    id: str | None = Field(None, min_length=1, max_length=64)
    fps: float | None = Field(None, gt=0, le=1000)
    queue_size: int | None = Field(None, ge=1, le=1024)
    policy: DropPolicy | None = None
    realtime: bool | None = None
    transport: Literal["tcp", "udp"] = "tcp"
    open_timeout_s: float = Field(5.0, gt=0, le=300)
    stall_timeout_s: float = Field(5.0, gt=0, le=300)
    backoff_cap_s: float = Field(10.0, gt=0, le=3600)
    max_restarts_per_minute: int = Field(20, ge=1, le=600)
    format: str | None = None
    options: dict[str, str] = Field(default_factory=dict)
    low_delay: bool = True  # live: decode for delay (slice threads); false: for throughput (frame threads)
    model: str | None = Field(None, description="key of a [models.NAME] table; default: [model]")
    roi: tuple[float, float, float, float] | None = None  # x, y, w, h: pixels, or fractions when all <= 1
    password_env: str | None = None  # the camera password from this environment variable...
    password_file: Path | None = None  # ...or from this file (e.g. under $CREDENTIALS_DIRECTORY)

    def resolved_url(self) -> str:
        """``url`` with the password from ``password_env``/``password_file`` put in (never logged)."""
        if self.password_env is None and self.password_file is None:
            return self.url
        if self.password_env is not None:
            password = os.environ.get(self.password_env)
            if password is None:
                raise ConfigError(f"source {self.id or self.url}: environment variable {self.password_env} is not set")
        else:
            assert self.password_file is not None
            try:
                password = self.password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"source {self.id or self.url}: password_file: {exc.strerror or exc}") from None
        parts = urlsplit(self.url)
        if not parts.hostname:
            raise ConfigError(f"source {self.id or self.url}: a password needs a URL with a host")
        user = parts.username or ""
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.netloc.rpartition('@')[2]}"
        return urlunsplit(parts._replace(netloc=netloc))

    @field_validator("roi")
    @classmethod
    def _roi(cls, v: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if v is not None and (min(v) < 0 or v[2] <= 0 or v[3] <= 0):
            raise ValueError("must be [x, y, width, height] with width and height > 0")
        return v


class ModelConfig(_Strict):
    path: Path = DEFAULT_MODEL
    name: str | None = None
    batch: int = Field(1, ge=1, le=256)
    max_wait_ms: float = Field(10.0, ge=0, le=10_000)
    decoder: str = "auto"
    labels: Path | None = None
    score_threshold: float = Field(0.5, ge=0, le=1)
    iou_threshold: float = Field(0.45, ge=0, le=1)
    max_detections: int = Field(100, ge=1, le=10_000)
    top_k: int = Field(5, ge=1, le=1000)
    raw_values: bool = False
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    threads: int = Field(0, ge=0, le=256)
    inter_op_threads: int = Field(0, ge=0, le=256)
    optimization: Literal["disable", "basic", "extended", "all"] = "all"
    spinning: bool = False  # let idle ONNX Runtime threads spin (lower latency, but steals decoder CPU)
    nice: int = Field(0, ge=0, le=19)  # run inference this much below normal CPU priority: decoding first
    preprocess: SpecOverrides = SpecOverrides()

    @field_validator("decoder")
    @classmethod
    def _known_decoder(cls, v: str) -> str:
        if v not in DECODERS:
            raise ValueError(f"unknown decoder {v!r}; choose one of {', '.join(DECODERS)}")
        return v


class MqttConfig(_Strict):
    """``[output.mqtt]``; ``mqtt = "URL"`` is short for ``[output.mqtt] url = "URL"``.

    The password comes from the URL, ``password_env`` (an environment variable's name), ``password_file``,
    or ``$CREDENTIALS_DIRECTORY/mqtt-password`` (systemd's LoadCredential), in that order; never log it.
    """

    url: str
    client_id: str | None = Field(None, min_length=1, max_length=128)
    topic_prefix: str = Field("streamprep", min_length=1)
    qos_results: Literal[0, 1, 2] = 1
    qos_status: Literal[0, 1, 2] = 1
    keepalive_s: int = Field(30, ge=5, le=3600)
    persistent_session: bool = False
    connect_timeout_s: float = Field(5.0, gt=0, le=120)
    publish_timeout_s: float = Field(5.0, gt=0, le=120)
    backoff_cap_s: float = Field(10.0, gt=0, le=3600)
    wait_for_broker: bool = False  # start even if the broker is unreachable (default: fail fast)
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False  # skip certificate and host name verification (testing only)
    outbox_max: int = Field(10_000, ge=1, le=10_000_000)
    outbox_policy: Literal["drop_oldest", "block"] = "drop_oldest"

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not re.match(r"^mqtts?://[^/]+", v):
            raise ValueError("must look like mqtt://[USER[:PASSWORD]@]HOST[:PORT] or mqtts://...")
        return v


class OutputConfig(_Strict):
    out: str | None = None  # a file path, or "-" for stdout
    mqtt: MqttConfig | None = None

    @field_validator("mqtt", mode="before")
    @classmethod
    def _url_shorthand(cls, v: Any) -> Any:
        return {"url": v} if isinstance(v, str) else v


class MetricsConfig(_Strict):
    listen: str | None = None  # HOST:PORT for Prometheus, e.g. 127.0.0.1:9108; off when unset


class StatusConfig(_Strict):
    socket: Path | None = None  # unix socket for `streamprep top`; default $RUNTIME_DIRECTORY/status.sock


class LoggingConfig(_Strict):
    format: Literal["auto", "text", "journal", "json"] = "auto"  # auto: journal under systemd, else text
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Strict):
    device: str = Field(default_factory=lambda: socket.gethostname() or "streamprep", min_length=1)
    state_dir: Path | None = None  # where the MQTT outbox spools results it could not deliver yet
    drain_timeout_s: float = Field(10.0, ge=0, le=3600)  # on stop: time to finish what is in flight
    fps: float | None = Field(None, gt=0, le=1000)
    realtime: bool = False
    queue_size: int = Field(8, ge=1, le=1024)
    live_queue_size: int = Field(1, ge=1, le=1024)
    sources: tuple[SourceConfig, ...] = ()
    model: ModelConfig = ModelConfig()
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    output: OutputConfig = OutputConfig()
    metrics: MetricsConfig = MetricsConfig()
    status: StatusConfig = StatusConfig()
    logging: LoggingConfig = LoggingConfig()

    @field_validator("sources", mode="before")
    @classmethod
    def _strings_are_urls(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [{"url": s} if isinstance(s, str) else s for s in v]
        return v

    @model_validator(mode="after")
    def _unique_ids(self) -> Config:
        ids = [s.id for s in self.sources if s.id]
        dup = next((i for i in ids if ids.count(i) > 1), None)
        if dup:
            raise ValueError(f"source id {dup!r} is used twice")
        if DEFAULT_MODEL_KEY in self.models:
            raise ValueError(f"models.{DEFAULT_MODEL_KEY}: the name is reserved for [model]")
        for i, s in enumerate(self.sources):
            if s.model is not None and s.model != DEFAULT_MODEL_KEY and s.model not in self.models:
                known = ", ".join([DEFAULT_MODEL_KEY, *self.models]) or "none"
                raise ValueError(f"sources.{i}.model: no model named {s.model!r} (models: {known})")
        return self

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
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "source"


def _format(exc: ValidationError, where: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{where}{key}: {msg}")
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
