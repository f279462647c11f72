"""Immutable values that flow through the pipeline: Frame → Batch → Result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]

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
    ``(H·3/2)×W`` array of the Y plane followed by the U and V planes.
    ``index`` counts every decoded frame of the source; ``seq`` counts the sampled ones,
    so a consumer can tell a gap in ``seq`` from a frame the sampler meant to skip.
    """

    source: str
    index: int
    seq: int
    pts: float | None
    captured_at: float
    decoded_mono: float
    image: Image = field(repr=False)
    pixel_format: str = "bgr24"
    capture_clock: CaptureClock = "decode"
    capture_lag: float = 0.0

    @property
    def captured_mono(self) -> float:
        """The capture time on ``time.monotonic()``'s clock."""
        return self.decoded_mono - self.capture_lag

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        rows = int(self.image.shape[0])
        return rows * 2 // 3 if self.pixel_format == "yuv420p" else rows


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box in source-frame pixels (x1, y1) top-left, (x2, y2) bottom-right."""

    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True, slots=True)
class Detection:
    label: str
    class_id: int
    score: float
    box: Box


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
    capture_clock: CaptureClock = "decode"

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
