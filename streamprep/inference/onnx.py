"""ONNX Runtime sessions: load a model with clear errors, describe it, run it (off the event loop)."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from streamprep.preprocess.spec import InputFacts, onnx_dtype
from streamprep.values.errors import ModelError
from streamprep.values.frames import Tensor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int | str | None, ...]
    dtype: str

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} [{dims}] {self.dtype}"


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    metadata: dict[str, str]
    sidecar: dict[str, Any]
    providers: tuple[str, ...]

    def input_facts(self, name: str | None = None) -> InputFacts:
        chosen = self.inputs[0] if not name else next((i for i in self.inputs if i.name == name), None)
        if chosen is None:
            known = ", ".join(i.name for i in self.inputs)
            raise ModelError(f"model {self.path} has no input named {name!r} (inputs: {known})")
        return InputFacts(chosen.name, chosen.shape, chosen.dtype)


class Engine(Protocol):
    """Runs a model on a batch tensor. ``run`` is blocking: call it off the event loop."""

    info: ModelInfo

    def run(self, tensor: Tensor) -> list[Tensor]: ...


class LoadableEngine(Engine, Protocol):
    """An engine :func:`streamprep.inference.model.load_model` makes: ONNX Runtime's, or a remote server's."""

    def select_input(self, name: str) -> None: ...

    def warm_up(self, tensor: Tensor) -> None: ...


def _tensor_info(arg: Any) -> TensorInfo:
    return TensorInfo(arg.name, tuple(arg.shape), onnx_dtype(arg.type))


def read_sidecar(path: Path) -> dict[str, Any]:
    sidecar = path.with_suffix(".streamprep.json")
    if not sidecar.is_file():
        return {}
    try:
        data = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"model sidecar {sidecar}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"model sidecar {sidecar}: expected a JSON object")
    return data


def _lower_priority(nice: int) -> None:
    """Raise the calling thread's nice value by ``nice`` (Linux: per thread; threads it starts inherit it)."""
    if sys.platform != "linux":
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:
        log.warning("cannot lower the inference threads' CPU priority: %s", exc.strerror or exc)


class _Lane:
    """One thread, at a lower CPU priority than the rest of the process, that runs the calls it is given.

    ONNX Runtime's intra-op threads are started by the thread that creates the session and inherit its
    nice value, so a session created and run here computes entirely at that priority: the decoders
    (at normal priority) pre-empt it, and a frame is not held back in decoding while the model runs.
    """

    def __init__(self, nice: int, name: str) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, f"inference {name}", _lower_priority, (nice,))

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._pool.submit(fn, *args).result()


class OnnxEngine:
    """One ONNX Runtime session. Thread-safe for ``run`` (ONNX Runtime allows concurrent runs; with
    ``nice`` they are serialised on the engine's own lower-priority thread)."""

    def __init__(
        self,
        path: Path,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
        intra_op_threads: int = 0,
        model_bytes: bytes | None = None,
        inter_op_threads: int = 0,
        optimization: str = "all",
        spinning: bool = False,
        nice: int = 0,
    ) -> None:
        """Load ``path`` (or ``model_bytes``, a derived model whose origin is ``path``). With ``nice`` > 0
        the session is created and run on a thread of its own at that much lower CPU priority."""
        import onnxruntime as ort

        self._lane = _Lane(nice, path.stem) if nice > 0 else None

        if model_bytes is None and not path.exists():
            raise ModelError(f"model {path}: no such file")
        if model_bytes is None and not path.is_file():
            raise ModelError(f"model {path}: not a file")
        available = ort.get_available_providers()
        chosen = [p for p in providers if p in available]
        for skipped in (p for p in providers if p not in available):
            log.warning(
                "execution provider %s is not in this onnxruntime build (it has %s); skipped",
                skipped,
                ", ".join(available),
            )
        if not chosen:
            raise ModelError(f"none of the execution providers {list(providers)} is available ({available})")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        # Idle ONNX Runtime threads spin by default, burning the cores the decoders need on an edge device.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "1" if spinning else "0")
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization]
        try:
            source = model_bytes if model_bytes is not None else str(path)
            self._session = self._call(ort.InferenceSession, source, options, chosen)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"model {path} cannot be loaded by ONNX Runtime: {first}") from None
        meta = self._session.get_modelmeta()
        self.info = ModelInfo(
            path=path,
            name=path.stem,
            inputs=tuple(_tensor_info(i) for i in self._session.get_inputs()),
            outputs=tuple(_tensor_info(o) for o in self._session.get_outputs()),
            metadata=dict(meta.custom_metadata_map),
            sidecar=read_sidecar(path),
            providers=tuple(self._session.get_providers()),
        )
        for dropped in (p for p in chosen if p not in self.info.providers):
            log.warning(
                "execution provider %s could not start for %s (see ONNX Runtime's log); skipped", dropped, path.name
            )
        if not self.info.inputs:
            raise ModelError(f"model {path} has no inputs")
        self._input_name = self.info.inputs[0].name
        self._output_names = [o.name for o in self.info.outputs]

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._lane.call(fn, *args) if self._lane is not None else fn(*args)

    def select_input(self, name: str) -> None:
        self._input_name = self.info.input_facts(name).name

    def warm_up(self, tensor: Tensor) -> None:
        """One run on a blank tensor, so the first frame does not pay for ONNX Runtime's lazy set-up."""
        try:
            self._call(self._session.run, self._output_names, {self._input_name: tensor})
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"model {self.info.name} fails on a tensor of shape {list(tensor.shape)} {tensor.dtype} "
                f"for input {self._input_name!r}: {first}"
            ) from None

    def run(self, tensor: Tensor) -> list[Tensor]:
        try:
            outputs = self._call(self._session.run, self._output_names, {self._input_name: tensor})
        except Exception as exc:
            raise ModelError(f"model {self.info.name}: inference failed: {exc}") from None
        return [np.asarray(o) for o in outputs]
