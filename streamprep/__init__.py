"""streamprep: live video to model-ready tensors and published results.

The public surface is the names below (``docs/api.md`` documents each); everything else is internal and may
change. The names are imported when first used, so ``import streamprep`` (and the command line's ``--help``)
stays fast: decoding, OpenCV and ONNX Runtime load only when something needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from streamprep.version import __version__ as __version__

if TYPE_CHECKING:
    from streamprep.api import (
        Run as Run,
        Slot as Slot,
        TensorBatch as TensorBatch,
        open as open,
        stream as stream,
        tensors as tensors,
    )
    from streamprep.sinks.base import (
        Sink as Sink,
    )
    from streamprep.sinks.callback import (
        CallbackSink as CallbackSink,
    )
    from streamprep.sources.base import (
        Source as Source,
    )
    from streamprep.sources.python import (
        FrameSource as FrameSource,
    )
    from streamprep.values.errors import (
        ConfigError as ConfigError,
        ModelError as ModelError,
        SinkError as SinkError,
        SourceError as SourceError,
        StreamprepError as StreamprepError,
    )
    from streamprep.values.events import (
        Event as Event,
    )
    from streamprep.values.frames import (
        Box as Box,
        Classification as Classification,
        Detection as Detection,
        DropReason as DropReason,
        Frame as Frame,
        Result as Result,
        SourceState as SourceState,
        SourceStatus as SourceStatus,
    )
    from streamprep.values.metrics import (
        Snapshot as Snapshot,
    )

# The one list of public names: where each lives. ``__all__`` and the lazy loader below are made from it.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "streamprep.api": ("Run", "Slot", "TensorBatch", "open", "stream", "tensors"),
    "streamprep.values.frames": (
        "Box",
        "Classification",
        "Detection",
        "DropReason",
        "Frame",
        "Result",
        "SourceState",
        "SourceStatus",
    ),
    "streamprep.values.events": ("Event",),
    "streamprep.values.metrics": ("Snapshot",),
    "streamprep.sources.base": ("Source",),
    "streamprep.sources.python": ("FrameSource",),
    "streamprep.sinks.base": ("Sink",),
    "streamprep.sinks.callback": ("CallbackSink",),
    "streamprep.values.errors": ("StreamprepError", "ConfigError", "SourceError", "ModelError", "SinkError"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted([*_WHERE, "__version__"])


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'streamprep' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
