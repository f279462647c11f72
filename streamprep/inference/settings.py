"""Settings of a model: ``[model]`` / ``[models.NAME]`` and ``[model.kserve]``. Validated when the config is
read (streamprep.config); everything that loads and runs a model takes these values."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from streamprep.inference.decoders.names import DECODERS
from streamprep.inference.tta import parse_views
from streamprep.preprocess.spec import SpecOverrides
from streamprep.values.names import check_name
from streamprep.values.redact import redact_url
from streamprep.values.settings import Strict

BUNDLED_MODELS = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL = BUNDLED_MODELS / "ssd_mobilenet_v2_fpnlite_256_int8.onnx"


KSERVE_SCHEMES = ("grpc", "grpcs", "http", "https")


class KServeConfig(Strict):
    """``[model.kserve]`` (with ``backend = "kserve"``): the model runs on a KServe v2 / Open Inference
    Protocol server (NVIDIA Triton, KServe, Seldon MLServer, OpenVINO Model Server); see streamprep.inference.remote.

    Credentials like the MQTT ones: ``username`` with ``password_env``/``password_file`` (HTTP Basic), or a
    token from ``token_env``/``token_file`` (or ``$CREDENTIALS_DIRECTORY/kserve-token``) sent in
    ``token_header`` (``authorization``: ``Bearer TOKEN``; any other header: the token as it is). Never logged.
    """

    url: str  # grpc://HOST[:8001], grpcs://HOST[:443], http://HOST[:8000][/PATH], https://HOST[:443][/PATH]
    model: str = Field(min_length=1)  # the model's name on the server
    version: str = ""  # empty: the server's choice (its version policy, usually the latest)
    connect_timeout_s: float = Field(5.0, gt=0, le=300)  # at start: reaching the server and its metadata
    timeout_s: float = Field(10.0, gt=0, le=600)  # one inference request
    max_in_flight: int = Field(2, ge=1, le=64)  # batches sent and not yet answered
    backoff_cap_s: float = Field(10.0, gt=0, le=3600)  # server away: file frames retried, backoff up to this
    username: str | None = None  # HTTP Basic user, with password_env or password_file
    password_env: str | None = None  # the password from this environment variable
    password_file: Path | None = None  # ...or from this file
    token_env: str | None = None  # a token from this environment variable
    token_file: Path | None = None  # ...or from this file (default: $CREDENTIALS_DIRECTORY/kserve-token)
    # sent as "Bearer TOKEN" in authorization; any other header gets the token as it is
    token_header: str = Field("authorization", min_length=1)
    ca_file: Path | None = None  # grpcs/https: verify the server against this CA
    cert_file: Path | None = None  # client certificate
    key_file: Path | None = None  # its key
    tls_insecure: bool = False  # https only: skip certificate verification (testing only)

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in KSERVE_SCHEMES or not parts.hostname:
            raise ValueError(
                "must look like grpc://HOST[:PORT], grpcs://..., http://HOST[:PORT][/PATH] or https://... "
                f"(got {redact_url(v)})"
            )
        return v

    @model_validator(mode="after")
    def _coherent(self) -> KServeConfig:
        if self.tls_insecure and urlsplit(self.url).scheme == "grpcs":
            raise ValueError("tls_insecure: gRPC cannot skip certificate verification; give ca_file instead")
        if self.password_env is not None and self.password_file is not None:
            raise ValueError("password_env and password_file: give one")
        if self.token_env is not None and self.token_file is not None:
            raise ValueError("token_env and token_file: give one")
        if self.username is None and (self.password_env or self.password_file):
            raise ValueError("a password needs a username")
        token = self.token_env is not None or self.token_file is not None
        if token and self.username is not None and self.token_header.lower() == "authorization":
            raise ValueError("username and a token would both be the authorization header: give one")
        return self


class ModelConfig(Strict):
    path: Path = DEFAULT_MODEL  # an ONNX file, or a bundled model's name
    backend: Literal["onnx", "kserve"] = "onnx"  # kserve: run it on an inference server ([model.kserve])
    kserve: KServeConfig | None = None  # [model.kserve]: the inference server, with backend = "kserve"
    name: str | None = None  # in results and logs; default: the file stem
    batch: int = Field(1, ge=1, le=256)  # max frames per inference batch (a model with a fixed batch size caps it)
    max_wait_ms: float = Field(10.0, ge=0, le=10_000)  # how long a batch waits to fill
    # auto (recognised from the outputs) | ssd | yolov5 | yolov8 | grid | classification | yunet | raw
    decoder: str = "auto"
    labels: Path | None = None  # one label per line; default: <model>.labels.txt, else the model's names metadata
    score_threshold: float = Field(0.5, ge=0, le=1)  # detections scoring less are dropped
    iou_threshold: float = Field(0.45, ge=0, le=1)  # class-aware NMS overlap
    max_detections: int = Field(100, ge=1, le=10_000)  # per frame, best first
    top_k: int = Field(5, ge=1, le=1000)  # classification: classes reported per frame
    raw_values: bool = False  # raw decoder: include the tensor values, not only their summary
    # ONNX Runtime execution providers, in order of preference; unusable ones are logged and skipped
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    threads: int = Field(0, ge=0, le=256)  # ONNX Runtime intra-op threads (0: its default)
    inter_op_threads: int = Field(0, ge=0, le=256)  # ONNX Runtime inter-op threads (0: its default)
    optimization: Literal["disable", "basic", "extended", "all"] = "all"  # ONNX Runtime graph optimisation level
    spinning: bool = False  # let idle ONNX Runtime threads spin (lower latency, but steals decoder CPU)
    tta: tuple[str, ...] = ()  # test-time augmentation: extra views per frame, e.g. ["hflip", "scale:0.83"]
    tta_fusion: Literal["wbf", "nms"] = "wbf"  # detector views fused by weighted box fusion or class-aware NMS
    nice: int = Field(0, ge=0, le=19)  # run inference this much below normal CPU priority: decoding first
    preprocess: SpecOverrides = SpecOverrides()  # [model.preprocess]: overrides of what the model declares
    # [[model.then]]: second models, each run on native-resolution crops of this model's detections
    then: tuple[ThenConfig, ...] = ()

    @field_validator("path")
    @classmethod
    def _bundled(cls, v: Path) -> Path:
        """A bare name that is no file here names a bundled model: ``fastestdet_352`` or ``fastestdet_352.onnx``."""
        if not v.exists() and v.parent == Path("."):
            for candidate in (BUNDLED_MODELS / v.name, BUNDLED_MODELS / f"{v.name}.onnx"):
                if candidate.is_file():
                    return candidate
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return v if v is None else check_name(v)

    @field_validator("tta")
    @classmethod
    def _known_views(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        parse_views(v)
        return v

    @field_validator("decoder")
    @classmethod
    def _known_decoder(cls, v: str) -> str:
        if v not in DECODERS:
            raise ValueError(f"unknown decoder {v!r}; choose one of {', '.join(DECODERS)}")
        return v

    @model_validator(mode="after")
    def _backend(self) -> ModelConfig:
        if self.backend == "kserve" and self.kserve is None:
            raise ValueError("backend = \"kserve\" needs a kserve table with the server's url and the model's name")
        if self.backend == "onnx" and self.kserve is not None:
            raise ValueError('a kserve table needs backend = "kserve"')
        if self.backend == "kserve" and self.preprocess.in_graph:
            raise ValueError("preprocess.in_graph changes the ONNX file: a model on a server cannot use it")
        return self

    @property
    def local_files(self) -> Path | None:
        """Where the model's sidecar and labels are: beside ``path``. A remote model has them only when its
        ``path`` is given (a local copy, or a bundled model's name); the file itself is not loaded."""
        if self.backend == "onnx" or "path" in self.model_fields_set:
            return self.path
        return None


class ThenConfig(ModelConfig):
    """Takes every key of ``[model]`` but ``then``, and these. Crops are cut at native resolution from the
    decoded frame and preprocessed by the second model's own contract; its ``batch`` and ``max_wait_ms`` batch
    them across frames and sources. A classifier's answer lands on the detection as ``classes``, a
    detector's as nested ``detections`` (boxes in source pixels), a raw model's as ``outputs``."""

    path: Path  # the second model: an ONNX file, or a bundled model's name
    on_labels: tuple[str, ...] | None = None  # crop only detections with these labels (default: all)
    min_score: float = Field(0.0, ge=0, le=1)  # crop only detections the first model scores at least this
    margin: float = Field(0.0, ge=0, le=10)  # context around the box, as a fraction of its width and height

    then: tuple[()] = Field((), exclude=True)  # not a key here: one level of crops

    @field_validator("then", mode="before")
    @classmethod
    def _one_level(cls, v: Any) -> Any:
        if v:
            raise ValueError("a second model cannot have models of its own (one level of crops)")
        return ()

    @field_validator("on_labels")
    @classmethod
    def _some_labels(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is not None and not v:
            raise ValueError("give at least one label, or leave the key out to crop every detection")
        return v


ModelConfig.model_rebuild()
