"""streamprep: live video to model-ready tensors and published results."""

from streamprep.config import Config, ModelConfig, OutputConfig, SourceConfig
from streamprep.errors import (
    ConfigError,
    ModelError,
    SinkError,
    SourceError,
    SourceLostError,
    SourceOpenError,
    StreamprepError,
)
from streamprep.frames import Box, Classification, Detection, Frame, Result, Timings
from streamprep.metrics import Snapshot
from streamprep.model import LoadedModel, load_model
from streamprep.pipeline import Pipeline, RunReport
from streamprep.preprocess.spec import PreprocessSpec
from streamprep.queues import BoundedQueue, DropPolicy
from streamprep.sampling import Sampler
from streamprep.sinks.memory import MemorySink

__version__ = "0.1.0"

__all__ = [
    "BoundedQueue",
    "Box",
    "Classification",
    "Config",
    "ConfigError",
    "Detection",
    "DropPolicy",
    "Frame",
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
    "StreamprepError",
    "Timings",
    "__version__",
    "load_model",
]
