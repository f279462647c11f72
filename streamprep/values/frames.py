"""The plain values that flow through the pipeline and out of it: Frame → Result, a source's status, and
why a frame was dropped. This module depends on nothing else in streamprep, so every stage, sink and
reader can share these types without importing each other.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
Tensor = npt.NDArray[Any]


class SourceState(enum.StrEnum):
    CONNECTING = "connecting"
    ONLINE = "online"
    STALLED = "stalled"
    OFFLINE = "offline"
    FINISHED = "finished"  # a file reached its end
    FAILED = "failed"  # gave up (or, for a live source, waits to be restarted): the reason says why
    STOPPED = "stopped"  # stopped on request (shutdown or reload)


@dataclass(frozen=True, slots=True)
class SourceStatus:
    source: str
    state: SourceState
    reason: str = ""
    decoded: int = 0
    sampled: int = 0
    corrupt: int = 0
    counts: dict[str, int] | None = None  # the source's final counts, on the last status of a run


class DropReason(enum.StrEnum):
    """Why a sampled frame never became a result. Every sampled frame is either processed or dropped for
    exactly one of these reasons, so ``sampled = processed + dropped`` holds per source at any stop."""

    QUEUE = "queue"  # the source's queue policy dropped it (a live source's newer frame took its place)
    STOPPED = "stopped"  # still waiting when the run stopped (drain deadline, second signal, reload)
    FAILED = "failed"  # its preprocessing or the decoding of its model output failed
    UNAVAILABLE = "unavailable"  # a live frame dropped while its model's inference server could not be reached


class RegionMode(enum.StrEnum):
    """How a source's frames are split for the model (per source)."""

    FULL = "full"  # the whole frame, resized to the model's input (what streamprep did before regions)
    TILES = "tiles"  # overlapping native-resolution tiles over the whole frame, every sampled frame
    MOTION = "motion"  # native-resolution regions where something moved, plus re-checks of still objects


class SinkDrop(enum.StrEnum):
    """Why a result that was made never reached a sink (counted per source, as ``sink_dropped``)."""

    BEHIND = "behind"  # a live result the sink could not take in time (its hand-off queue was full)
    FAILED = "failed"  # the sink had failed: nothing more goes to it
    STOPPED = "stopped"  # still waiting for the sink when the run was cut short (drain deadline, second signal)
    OUTBOX_FULL = "outbox_full"  # MQTT: the outbox was full (outbox_policy = "drop_oldest")
    LOST = "lost"  # MQTT: not delivered when the run ended, and no spool could keep it (none, or a full disk)


CaptureClock = Literal["camera", "arrival", "decode"]
"""Where a frame's capture time comes from, best first: the camera's own wall clock carried by the stream
(RTSP: RTCP sender reports), the time the frame's first packet arrived, or the time it was decoded."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded, sampled video frame, stamped once when it was decoded.

    ``captured_at`` is the wall-clock time (Unix seconds) the frame was captured, from the best clock
    available (``capture_clock``); ``capture_lag`` is how long before it was decoded that was, in seconds
    (0 for ``decode``), so ``captured_mono`` puts the capture on the monotonic clock the pipeline times with.

    ``image`` is owned by this frame (nobody writes to it) and is in the decoder's format where that is
    cheaper to preprocess: ``bgr24`` is an ``H×W×3`` BGR array, ``yuv420p`` the planar I420 layout, an
    ``(H·3/2)×W`` array of the Y plane followed by the U and V planes, ``nv12`` (from hardware decoders)
    the same size with the Y plane followed by one plane of interleaved U, V pairs.
    ``index`` counts every frame of the source, decoded or left undecoded by frame skipping (the same
    number decoding every frame would give); ``seq`` counts the sampled ones,
    so a consumer can tell a gap in ``seq`` from a frame the sampler meant to skip.
    ``color_matrix`` (``bt601``, ``bt709``, ``other``) and ``color_range`` (``limited``, ``full``) are the stream's
    YCbCr matrix and range: how the preprocessor converts a ``yuv420p`` image to RGB.
    """

    source: str
    index: int
    seq: int
    pts: float | None
    captured_at: float
    decoded_mono: float
    image: Image = field(repr=False)
    pixel_format: str = "bgr24"
    color_matrix: str = "bt601"
    color_range: str = "limited"
    capture_clock: CaptureClock = "decode"
    capture_lag: float = 0.0

    @property
    def captured_mono(self) -> float:
        """The capture time on ``time.monotonic()``'s clock."""
        return self.decoded_mono - self.capture_lag

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    def to_bgr(self) -> Image:
        """The frame as an ``H×W×3`` BGR array (OpenCV's order), converted as FFmpeg converts it: the image
        itself when it is BGR already, else a new array."""
        if self.pixel_format not in ("yuv420p", "nv12"):
            return self.image
        from streamprep.values.colour import frame_to_bgr  # PyAV loads only when needed

        return frame_to_bgr(self.image, self.pixel_format, self.color_matrix, self.color_range)

    @property
    def height(self) -> int:
        rows = int(self.image.shape[0])
        return rows * 2 // 3 if self.pixel_format in ("yuv420p", "nv12") else rows


BoxTuple = tuple[float, float, float, float]
"""A box as plain numbers, (x1, y1, x2, y2) in source-frame pixels (tracking, events, regions)."""


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box in source-frame pixels (x1, y1) top-left, (x2, y2) bottom-right."""

    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True, slots=True)
class StageClass:
    """A second model's class for a detection's crop (``[[model.then]]`` with a classifier)."""

    model: str
    label: str
    class_id: int
    score: float


@dataclass(frozen=True, slots=True)
class Detection:
    """One object the model found. A second model run on the detection's crop (``[[model.then]]``) adds
    ``classes`` (a classifier's top-k), ``detections`` (a detector's, boxes in source pixels) or ``outputs``
    (a raw model's summary); each stays None when no second model looked at this detection."""

    label: str
    class_id: int
    score: float
    box: Box
    track_id: int | None = None  # the object's id while tracking is on (and it is a confirmed track)
    classes: tuple[StageClass, ...] | None = None
    detections: tuple[Detection, ...] | None = None
    outputs: dict[str, Any] | None = None
    carried: bool = False  # repeated from an earlier frame, not found on this one (regions = "motion")
    still: bool = False  # carried because nothing moved where it is (not looked at): it is where it was


@dataclass(frozen=True, slots=True)
class Classification:
    label: str
    class_id: int
    score: float


@dataclass(frozen=True, slots=True)
class Timings:
    """Per-stage durations in milliseconds for one frame.

    ``queue_ms``: from decode to the start of its batch's preprocessing (queue and batch wait);
    ``preprocess_ms``: this frame's own preprocessing; ``inference_ms``: the run of the batch it was in;
    ``age_ms``: how old the frame was when its batch's inference started, counted from its capture time
    (see :class:`Frame`: the camera's clock, the arrival of its first packet, or its decoding);
    ``total_ms``: from decode to the result being ready for the sinks.
    """

    queue_ms: float
    preprocess_ms: float
    inference_ms: float
    total_ms: float
    age_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Result:
    """What a model made of one frame, ready to publish."""

    source: str
    seq: int
    frame_index: int
    pts: float | None
    captured_at: float
    model: str
    width: int
    height: int
    batch_size: int
    timings: Timings
    run_id: str = ""
    detections: tuple[Detection, ...] | None = None
    classifications: tuple[Classification, ...] | None = None
    outputs: dict[str, Any] | None = None
    frame: Frame | None = field(default=None, repr=False, compare=False)  # when asked for (library use)
    capture_clock: CaptureClock = "decode"
    # the boxes (x1, y1, x2, y2, source pixels) the model looked at for this frame: the whole frame (or the
    # source's roi) with regions = "full", the tiles or motion regions otherwise; empty: no model run
    regions: tuple[tuple[float, float, float, float], ...] = ()

    @property
    def id(self) -> str:
        """Unique per result, stable across redeliveries: consumers drop duplicates by it."""
        return f"{self.run_id}/{self.source}/{self.seq}"

    @property
    def kind(self) -> str:
        if self.detections is not None:
            return "detection"
        if self.classifications is not None:
            return "classification"
        return "raw"
