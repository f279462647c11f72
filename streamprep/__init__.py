"""streamprep: live video to model-ready tensors and published results.

The public names below are imported when first used, so ``import streamprep`` (and the command line's
``--help``) stays fast: decoding, OpenCV and ONNX Runtime load only when something needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from streamprep.version import __version__

if TYPE_CHECKING:
    from streamprep.api import Run, Slot, TensorBatch, configure, open, stream, tensors
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
    from streamprep.events.values import Event
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
    from streamprep.preprocess.geometry import Geometry
    from streamprep.preprocess.spec import PreprocessSpec
    from streamprep.queues import BoundedQueue, DropPolicy
    from streamprep.sampling import Sampler
    from streamprep.sinks.base import Sink
    from streamprep.sinks.callback import CallbackSink
    from streamprep.sinks.jsonl import JsonLinesSink
    from streamprep.sinks.memory import MemorySink
    from streamprep.sinks.mqtt import MqttSink
    from streamprep.sources.base import Source, SourceCounts
    from streamprep.sources.python import FrameSource

_EXPORTS = {
    "Run": "streamprep.api",
    "Slot": "streamprep.api",
    "TensorBatch": "streamprep.api",
    "configure": "streamprep.api",
    "open": "streamprep.api",
    "stream": "streamprep.api",
    "tensors": "streamprep.api",
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
    "Event": "streamprep.events.values",
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
    "Geometry": "streamprep.preprocess.geometry",
    "PreprocessSpec": "streamprep.preprocess.spec",
    "BoundedQueue": "streamprep.queues",
    "DropPolicy": "streamprep.queues",
    "Sampler": "streamprep.sampling",
    "Sink": "streamprep.sinks.base",
    "CallbackSink": "streamprep.sinks.callback",
    "JsonLinesSink": "streamprep.sinks.jsonl",
    "MemorySink": "streamprep.sinks.memory",
    "MqttSink": "streamprep.sinks.mqtt",
    "Source": "streamprep.sources.base",
    "SourceCounts": "streamprep.sources.base",
    "FrameSource": "streamprep.sources.python",
}

__all__ = [
    "BoundedQueue",
    "Box",
    "CallbackSink",
    "Classification",
    "Config",
    "ConfigError",
    "Detection",
    "DropPolicy",
    "DropReason",
    "Event",
    "Frame",
    "FrameError",
    "FrameSource",
    "Geometry",
    "JsonLinesSink",
    "LoadedModel",
    "MemorySink",
    "ModelConfig",
    "ModelError",
    "MqttSink",
    "OutputConfig",
    "Pipeline",
    "PreprocessSpec",
    "Result",
    "Run",
    "RunReport",
    "Sampler",
    "Sink",
    "SinkError",
    "Slot",
    "Snapshot",
    "Source",
    "SourceConfig",
    "SourceCounts",
    "SourceError",
    "SourceLostError",
    "SourceOpenError",
    "SourceState",
    "SourceStatus",
    "StreamprepError",
    "TensorBatch",
    "Timings",
    "__version__",
    "configure",
    "load_model",
    "open",
    "stream",
    "tensors",
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
