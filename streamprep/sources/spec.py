"""A source as it runs: every effective value, resolved once from the config (``streamprep.config.resolve``).

The layers above hand a :class:`SourceSpec` to :func:`streamprep.sources.make_source`; nothing here reads the
config or falls back to a top-level value itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamprep.flow.queues import DropPolicy
from streamprep.sources.live import LiveOptions, SourceKind


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One source with every effective value (its own setting, else the top level's, else the default)."""

    id: str  # unique in its config, used in topics and results
    url: str  # with the credentials put in: never logged
    safe_url: str  # ``url`` without secrets, for display
    kind: SourceKind
    live: bool  # live semantics (latest frame wins): cameras and streams, and files paced in real time
    fps: float | None  # sampled to this frame rate (None: every frame)
    queue_size: int  # frames waiting in its queue
    policy: DropPolicy  # when that queue is full
    # how it is opened, decoded (sampling mode, frame skipping; the hardware device is probed at start from
    # ``hwaccel``), handed over and reopened; a file uses its open timeout and decoding
    options: LiveOptions
    hwaccel: str = "auto"  # the hardware decoding setting: auto, off or a device type
    resume_seq: int = 0  # a file replay hands over its sampled frames from this seq on
    roi: tuple[float, float, float, float] | None = None  # x, y, w, h: pixels, or fractions when all <= 1
    model: str = "default"  # the key of the model it feeds
