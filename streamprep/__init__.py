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
    from streamprep.config.schema import Config, ModelConfig, OutputConfig, SourceConfig
    from streamprep.flow.queues import BoundedQueue, DropPolicy
    from streamprep.inference.model import LoadedModel, load_model
    from streamprep.preprocess.geometry import Geometry
    from streamprep.preprocess.spec import PreprocessSpec
    from streamprep.run.pipeline import Pipeline, RunReport
    from streamprep.sinks.base import Sink
    from streamprep.sinks.callback import CallbackSink
    from streamprep.sinks.jsonl import JsonLinesSink
    from streamprep.sinks.memory import MemorySink
    from streamprep.sinks.mqtt import MqttSink
    from streamprep.sources.base import Source, SourceCounts
    from streamprep.sources.python import FrameSource
    from streamprep.sources.sampling import Sampler
    from streamprep.values.errors import (
        ConfigError,
        FrameError,
        ModelError,
        SinkError,
        SourceError,
        SourceLostError,
        SourceOpenError,
        StreamprepError,
    )
    from streamprep.values.events import Event
    from streamprep.values.frames import (
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
    from streamprep.values.metrics import Snapshot

_EXPORTS = {
    "Run": "streamprep.api",
    "Slot": "streamprep.api",
    "TensorBatch": "streamprep.api",
    "configure": "streamprep.api",
    "open": "streamprep.api",
    "stream": "streamprep.api",
    "tensors": "streamprep.api",
    "Config": "streamprep.config.schema",
    "ModelConfig": "streamprep.config.schema",
    "OutputConfig": "streamprep.config.schema",
    "SourceConfig": "streamprep.config.schema",
    "ConfigError": "streamprep.values.errors",
    "FrameError": "streamprep.values.errors",
    "ModelError": "streamprep.values.errors",
    "SinkError": "streamprep.values.errors",
    "SourceError": "streamprep.values.errors",
    "SourceLostError": "streamprep.values.errors",
    "SourceOpenError": "streamprep.values.errors",
    "StreamprepError": "streamprep.values.errors",
    "Event": "streamprep.values.events",
    "Box": "streamprep.values.frames",
    "Classification": "streamprep.values.frames",
    "Detection": "streamprep.values.frames",
    "DropReason": "streamprep.values.frames",
    "Frame": "streamprep.values.frames",
    "Result": "streamprep.values.frames",
    "SourceState": "streamprep.values.frames",
    "SourceStatus": "streamprep.values.frames",
    "Timings": "streamprep.values.frames",
    "Snapshot": "streamprep.values.metrics",
    "LoadedModel": "streamprep.inference.model",
    "load_model": "streamprep.inference.model",
    "Pipeline": "streamprep.run.pipeline",
    "RunReport": "streamprep.run.pipeline",
    "Geometry": "streamprep.preprocess.geometry",
    "PreprocessSpec": "streamprep.preprocess.spec",
    "BoundedQueue": "streamprep.flow.queues",
    "DropPolicy": "streamprep.flow.queues",
    "Sampler": "streamprep.sources.sampling",
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
