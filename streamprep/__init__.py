"""streamprep: live video to model-ready tensors and published results.

The public names below are imported when first used, so ``import streamprep`` (and the command line's
``--help``) stays fast: decoding, OpenCV and ONNX Runtime load only when something needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from streamprep.version import __version__

if TYPE_CHECKING:
    from streamprep.config import Config, ModelConfig, OutputConfig, SourceConfig
    from streamprep.errors import (
        ConfigError,
        FrameError,
        ModelError,
        SinkError,
        SourceError,
        SourceLostError,
        SourceOpenError,
        StreamprepError,
    )
    from streamprep.frames import (
        Box,
        Classification,
        Detection,
        DropReason,
        Frame,
        Result,
        SourceState,
        SourceStatus,
        Timings,
    )
    from streamprep.metrics import Snapshot
    from streamprep.model import LoadedModel, load_model
    from streamprep.pipeline import Pipeline, RunReport
    from streamprep.preprocess.spec import PreprocessSpec
    from streamprep.queues import BoundedQueue, DropPolicy
    from streamprep.sampling import Sampler
    from streamprep.sinks.memory import MemorySink

_EXPORTS = {
    "Config": "streamprep.config",
    "ModelConfig": "streamprep.config",
    "OutputConfig": "streamprep.config",
    "SourceConfig": "streamprep.config",
    "ConfigError": "streamprep.errors",
    "FrameError": "streamprep.errors",
    "ModelError": "streamprep.errors",
    "SinkError": "streamprep.errors",
    "SourceError": "streamprep.errors",
    "SourceLostError": "streamprep.errors",
    "SourceOpenError": "streamprep.errors",
    "StreamprepError": "streamprep.errors",
    "Box": "streamprep.frames",
    "Classification": "streamprep.frames",
    "Detection": "streamprep.frames",
    "DropReason": "streamprep.frames",
    "Frame": "streamprep.frames",
    "Result": "streamprep.frames",
    "SourceState": "streamprep.frames",
    "SourceStatus": "streamprep.frames",
    "Timings": "streamprep.frames",
    "Snapshot": "streamprep.metrics",
    "LoadedModel": "streamprep.model",
    "load_model": "streamprep.model",
    "Pipeline": "streamprep.pipeline",
    "RunReport": "streamprep.pipeline",
    "PreprocessSpec": "streamprep.preprocess.spec",
    "BoundedQueue": "streamprep.queues",
    "DropPolicy": "streamprep.queues",
    "Sampler": "streamprep.sampling",
    "MemorySink": "streamprep.sinks.memory",
}

__all__ = [
    "BoundedQueue",
    "Box",
    "Classification",
    "Config",
    "ConfigError",
    "Detection",
    "DropPolicy",
    "DropReason",
    "Frame",
    "FrameError",
    "LoadedModel",
    "MemorySink",
    "ModelConfig",
    "ModelError",
    "OutputConfig",
    "Pipeline",
    "PreprocessSpec",
    "Result",
    "RunReport",
    "Sampler",
    "SinkError",
    "Snapshot",
    "SourceConfig",
    "SourceError",
    "SourceLostError",
    "SourceOpenError",
    "SourceState",
    "SourceStatus",
    "StreamprepError",
    "Timings",
    "__version__",
    "load_model",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'streamprep' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
