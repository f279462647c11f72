"""Inference on a remote server speaking the KServe v2 / Open Inference Protocol: NVIDIA Triton Inference
Server, KServe, Seldon MLServer, OpenVINO Model Server.

The edge device still decodes, samples, preprocesses and batches next to its cameras; only the model's input
tensor crosses the network (a 256×256×3 uint8 tensor is 196 KB where the 1080p frame it came from is 6 MB).
At start :func:`connect` reads the model's inputs, outputs, dtypes and shapes from the server's metadata
endpoint, and ``max_batch_size`` and ``parameters`` from its model configuration (Triton's extension; a
server without it gives the full shapes in its metadata), and builds the same
:class:`~streamprep.inference.onnx.ModelInfo` a local ONNX file gives, so the preprocessing spec and the decoder
are derived exactly as for a local file. A wrong model name, a server that cannot be reached, credentials it
refuses, or an input that is no image are refused then, each with one line.

While running, :meth:`KServeEngine.run` sends one batch per request with a timeout (``timeout_s``). A request
that fails because the server is away (refused, reset, timed out, unavailable, its model not loaded yet)
raises :class:`ServerUnavailable`: the model branch drops the live frames of that batch (counted as
``unavailable``) and retries the file frames with a capped backoff (see :mod:`streamprep.run.branch`). Any other
failure is the batch's own, as it would be for a local model. ``max_in_flight`` batches may be on their way
at once (the branch overlaps them and still emits results in order).

The client is the official ``tritonclient`` (``pip install 'streamprep[remote]'``), imported only when a
model uses this backend.
"""

from __future__ import annotations

import base64
import http.client
import importlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from streamprep.inference.onnx import ModelInfo, TensorInfo, read_sidecar
from streamprep.inference.settings import KServeConfig, ModelConfig
from streamprep.values.errors import ConfigError, ModelError, ServerUnavailable
from streamprep.values.frames import Tensor
from streamprep.values.redact import redact_url
from streamprep.values.secrets import read_secret

log = logging.getLogger(__name__)

TOKEN_CREDENTIAL = "kserve-token"  # the name to give systemd's LoadCredential= for the token
PASSWORD_CREDENTIAL = "kserve-password"
_DEFAULT_PORTS = {"grpc": 8001, "grpcs": 443, "http": 8000, "https": 443}

# KServe v2 datatypes and the numpy dtypes they carry
DATATYPES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}
_NUMPY_TO_DATATYPE = {v: k for k, v in DATATYPES.items()}

# gRPC status codes that mean "not now" rather than "never": the server is away, overloaded, restarting
_TRANSIENT_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "CANCELLED", "NOT_FOUND"}
_TRANSIENT_HTTP = {"404", "408", "429", "502", "503", "504"}


@dataclass(frozen=True)
class ServerModel:
    """What the server says about a model, turned into what a local ONNX file would say."""

    info: ModelInfo
    max_batch_size: int | None  # the server's cap on a request's batch; None when it does not say
    batched: bool  # the tensors have a batch axis (a model without one takes one image per request)


def _missing_extra(exc: ImportError) -> ModelError:
    return ModelError(
        "backend = \"kserve\" needs the tritonclient package: pip install 'streamprep[remote]' "
        f"({exc.name or exc} is not installed)"
    )


def _client_module(scheme: str) -> ModuleType:
    try:
        return importlib.import_module("tritonclient.grpc" if scheme in ("grpc", "grpcs") else "tritonclient.http")
    except ImportError as exc:
        raise _missing_extra(exc) from None


def auth_headers(k: KServeConfig, where: str) -> dict[str, str]:
    """The headers that carry the credentials (never logged): Basic for a user name, the token otherwise."""
    parts = urlsplit(k.url)
    headers: dict[str, str] = {}
    username = k.username or (unquote(parts.username) if parts.username else None)
    if username is not None:
        password = unquote(parts.password) if parts.password else None
        if password is None:
            password = read_secret(f"{where}.password", k.password_env, k.password_file, PASSWORD_CREDENTIAL)
        pair = f"{username}:{password or ''}".encode()
        headers["authorization"] = "Basic " + base64.b64encode(pair).decode()
    token = read_secret(f"{where}.token", k.token_env, k.token_file, TOKEN_CREDENTIAL)
    if token is not None:
        name = k.token_header.lower()
        headers[name] = f"Bearer {token}" if name == "authorization" else token
    return headers


def _tls_files(k: KServeConfig, where: str) -> None:
    for key in ("ca_file", "cert_file", "key_file"):
        path: Path | None = getattr(k, key)
        if path is not None and not path.is_file():
            raise ConfigError(f"{where}.{key}: {path}: {'not a file' if path.exists() else 'no such file'}")


def server_model(
    name: str,
    metadata: dict[str, Any],
    config: dict[str, Any] | None,
    sidecar: dict[str, Any],
    location: str,
) -> ServerModel:
    """A :class:`ModelInfo` from the server's model metadata (KServe v2) and configuration (Triton's), as
    their JSON forms give them. Triton's ``max_batch_size`` > 0 means the metadata's shapes start with a
    ``-1`` batch axis; 0 (or a server without configurations) means they are the full request shapes, and
    a rank-3 image input then has no batch axis at all: one image per request.
    """
    config = (config or {}).get("config", config) or {}
    max_batch = int(config.get("max_batch_size", 0) or 0)
    params = _parameters(metadata.get("parameters"))  # KServe v2 / Open Inference Protocol model metadata
    params.update(_parameters(config.get("parameters")))  # Triton's model configuration

    def tensors(kind: str) -> list[tuple[str, tuple[int | None, ...], str]]:
        found = []
        for t in metadata.get(kind) or []:
            datatype = str(t.get("datatype", ""))
            shape = tuple(None if int(d) < 0 else int(d) for d in t.get("shape") or [])
            found.append((str(t["name"]), shape, DATATYPES.get(datatype, datatype.lower())))
        return found

    inputs, outputs = tensors("inputs"), tensors("outputs")
    if not inputs:
        raise ModelError(f"model {location}: the server lists no inputs for it")
    batched = not (max_batch == 0 and len(inputs[0][1]) == 3)

    def info(t: tuple[str, tuple[int | None, ...], str]) -> TensorInfo:
        shape: tuple[int | str | None, ...] = t[1] if batched else (1, *t[1])
        return TensorInfo(t[0], shape, t[2])

    model = ModelInfo(
        path=Path(name),
        name=name,
        inputs=tuple(info(t) for t in inputs),
        outputs=tuple(info(t) for t in outputs),
        metadata=params,
        sidecar=sidecar,
        providers=(f"kserve {location}",),
    )
    return ServerModel(model, max_batch or None, batched)


def _parameters(given: Any) -> dict[str, str]:
    """Parameters as strings: Triton's ``{"string_value": ...}``, gRPC's ``{"string_param": ...}``, or plain
    values (the Open Inference Protocol's JSON)."""
    out: dict[str, str] = {}
    for key, value in (given or {}).items() if isinstance(given, dict) else ():
        if isinstance(value, dict):
            value = next((v for k, v in value.items() if k in ("string_value", "string_param")), "")
        out[str(key)] = value if isinstance(value, str) else json.dumps(value)
    return out


class KServeEngine:
    """One model on a KServe v2 server. ``run`` is blocking and thread-safe (a client per thread)."""

    def __init__(self, cfg: ModelConfig, where: str = "model") -> None:
        assert cfg.kserve is not None
        k = self.cfg = cfg.kserve
        self._where = f"{where}.kserve"
        parts = urlsplit(k.url)
        self.scheme = parts.scheme
        self.location = f"{redact_url(k.url)}/{k.model}" + (f" (version {k.version})" if k.version else "")
        self._tls = self.scheme in ("grpcs", "https")
        if self._tls:
            _tls_files(k, self._where)
        elif k.ca_file or k.cert_file or k.key_file:
            raise ConfigError(
                f"{self._where}.url: TLS files are given but {redact_url(k.url)} is not grpcs:// or https://"
            )
        self._headers = auth_headers(k, self._where)
        self._module = _client_module(self.scheme)
        self._utils = self._module.__name__.rsplit(".", 1)[0] + ".utils"
        port = parts.port or _DEFAULT_PORTS[self.scheme]
        path = parts.path.rstrip("/") if self.scheme in ("http", "https") else ""
        self._target = f"{parts.hostname}:{port}{path}"
        self._local = threading.local()
        self.max_in_flight = k.max_in_flight
        described = self._describe(cfg)
        self.info = described.info
        self.max_batch_size = described.max_batch_size
        self._batched = described.batched
        self._input = self.info.inputs[0]
        self._outputs = [o.name for o in self.info.outputs]

    # -- clients
    def _client(self, connect_timeout: float | None = None) -> Any:
        client = getattr(self._local, "client", None)
        if client is not None:
            return client
        k = self.cfg
        if self.scheme in ("grpc", "grpcs"):
            client = self._module.InferenceServerClient(
                self._target,
                ssl=self._tls,
                root_certificates=str(k.ca_file) if k.ca_file else None,
                private_key=str(k.key_file) if k.key_file else None,
                certificate_chain=str(k.cert_file) if k.cert_file else None,
            )
        else:
            timeout = connect_timeout or k.connect_timeout_s
            options: dict[str, Any] = {}
            if self._tls:
                options = {"ssl": True, "insecure": k.tls_insecure, "ssl_context_factory": self._ssl_context}
            client = self._module.InferenceServerClient(
                self._target, connection_timeout=timeout, network_timeout=k.timeout_s, **options
            )
        self._local.client = client
        return client

    def _ssl_context(self, **_: Any) -> Any:
        """HTTPS: the CA, client certificate and verification as for MQTT (gevent's SSL, the client's own)."""
        import gevent.ssl

        k = self.cfg
        context = gevent.ssl.create_default_context(cafile=str(k.ca_file) if k.ca_file else None)
        if k.cert_file:
            context.load_cert_chain(str(k.cert_file), str(k.key_file) if k.key_file else None)
        if k.tls_insecure:
            context.check_hostname = False
            context.verify_mode = gevent.ssl.CERT_NONE
        return context

    def _invoke(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """A call on this thread's client with the credentials and a timeout."""
        client = self._client()
        if self.scheme in ("grpc", "grpcs"):
            kwargs["client_timeout"] = timeout or self.cfg.timeout_s
        return getattr(client, method)(*args, headers=self._headers or None, **kwargs)

    def _call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        try:
            return self._invoke(method, *args, timeout=timeout, **kwargs)
        except Exception as exc:
            raise self._error(exc) from None

    def _error(self, exc: Exception) -> ModelError:
        """:class:`ServerUnavailable` when the server is away or not ready, else a :class:`ModelError`."""
        status, text = _explain(exc)
        code = status.removeprefix("StatusCode.")
        if "restricted" in text or code in ("401", "403", "UNAUTHENTICATED", "PERMISSION_DENIED"):
            return ModelError(f"inference server {self.location} refused the request: {text}: check the credentials")
        if status == "" or code in _TRANSIENT_GRPC or code in _TRANSIENT_HTTP:
            return ServerUnavailable(f"inference server {self.location} unavailable: {text}")
        return ModelError(f"inference server {self.location}: {text}")

    # -- start-up
    def _describe(self, cfg: ModelConfig) -> ServerModel:
        k = self.cfg
        version = k.version
        try:
            metadata = self._invoke("get_model_metadata", k.model, version, timeout=k.connect_timeout_s, **self._json)
        except Exception as exc:
            status, text = _explain(exc)
            if status.removeprefix("StatusCode.") in ("NOT_FOUND", "404") or "unknown model" in text:
                raise ModelError(self._no_such_model()) from None
            error = self._error(exc)
            if isinstance(error, ServerUnavailable):  # at start it is fatal: the spec comes from the server
                raise ModelError(
                    f"inference server {self.location} unreachable: {text} (the model's inputs and outputs are "
                    "read from it at start)"
                ) from None
            raise error from None
        try:
            config = self._call("get_model_config", k.model, version, timeout=k.connect_timeout_s, **self._json)
        except ModelError as exc:  # not every KServe v2 server has Triton's configuration extension
            log.debug("no model configuration from %s: %s", self.location, exc)
            config = None
        files = cfg.local_files
        sidecar = read_sidecar(files) if files is not None else {}
        return server_model(k.model, metadata, config, sidecar, self.location)

    @property
    def _json(self) -> dict[str, Any]:
        return {"as_json": True} if self.scheme in ("grpc", "grpcs") else {}

    def _no_such_model(self) -> str:
        line = f"the inference server at {redact_url(self.cfg.url)} has no model {self.cfg.model!r}"
        line += f" version {self.cfg.version!r}" if self.cfg.version else ""
        try:
            index = self._call("get_model_repository_index", timeout=self.cfg.connect_timeout_s, **self._json)
        except ModelError:
            return line
        models = index.get("models", index) if isinstance(index, dict) else index
        names = sorted({str(m.get("name")) for m in models or [] if isinstance(m, dict)})
        return line + (f" (it serves: {', '.join(names)})" if names else "")

    # -- the Engine protocol
    def select_input(self, name: str) -> None:
        self._input = next(i for i in self.info.inputs if i.name == self.info.input_facts(name).name)

    def warm_up(self, tensor: Tensor) -> None:
        """One real request at start: the server accepts the tensor streamprep will send, or we say why not."""
        try:
            self.run(tensor)
        except ServerUnavailable as exc:
            raise ModelError(str(exc)) from None
        except ModelError as exc:
            raise ModelError(
                f"{exc} (a test tensor of shape {list(tensor.shape)} {tensor.dtype} for input {self._input.name!r})"
            ) from None

    def run(self, tensor: Tensor) -> list[Tensor]:
        module = self._module
        x = tensor if self._batched else tensor[0]
        datatype = _NUMPY_TO_DATATYPE.get(str(x.dtype))
        if datatype is None:
            raise ModelError(f"model {self.info.name}: no KServe datatype for a {x.dtype} tensor")
        request = module.InferInput(self._input.name, list(x.shape), datatype)
        if self.scheme in ("grpc", "grpcs"):
            request.set_data_from_numpy(np.ascontiguousarray(x))
            wanted = [module.InferRequestedOutput(name) for name in self._outputs]
        else:
            request.set_data_from_numpy(np.ascontiguousarray(x), binary_data=True)
            wanted = [module.InferRequestedOutput(name, binary_data=True) for name in self._outputs]
        result = self._call("infer", self.cfg.model, [request], model_version=self.cfg.version, outputs=wanted)
        outputs = []
        for name in self._outputs:
            out = result.as_numpy(name)
            if out is None:
                raise ModelError(f"inference server {self.location}: the answer has no output {name!r}")
            outputs.append(out if self._batched else out[np.newaxis])
        return outputs


def _explain(exc: BaseException) -> tuple[str, str]:
    """(status, one line) for whatever the client raised: its own exception, or a socket's."""
    status_of = getattr(exc, "status", None)
    message_of = getattr(exc, "message", None)
    if callable(status_of) and callable(message_of):  # tritonclient.utils.InferenceServerException
        status = str(status_of() or "")
        text = str(message_of() or "") or status or type(exc).__name__
        return status, " ".join(text.split())
    if isinstance(exc, TimeoutError) or type(exc).__name__ in ("Timeout", "timeout"):
        return "", "timed out"
    if isinstance(exc, OSError):
        return "", exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, http.client.HTTPException):  # the HTTP client's: the connection closed mid-answer
        return "", f"{type(exc).__name__}: {' '.join(str(exc).split())}".rstrip(": ")
    return "internal", f"{type(exc).__name__}: {exc}"


def connect(cfg: ModelConfig, where: str = "model") -> KServeEngine:
    """The model ``cfg`` names on its server, described and checked (see the module docstring)."""
    return KServeEngine(cfg, where)
