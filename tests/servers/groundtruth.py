"""Ground-truth frame age at inference: read the clock server's time code from the very tensor a model runs on.

:class:`ClockReadingEngine` wraps the engine a pipeline calls. When a run starts it notes the wall time,
then reads the time code (``timecode.py``) from every image of the batch tensor before the model runs, so
each image's true age at the start of inference is ``started - code``. Images are recorded in batch order,
which is the order their results come out. With a model of fixed batch size, rows past the frames of a
batch hold stale data: use a batch of one or a model with a dynamic batch axis.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from servers.timecode import read_time, tensor_luma


@dataclass(frozen=True)
class Reading:
    """One image handed to the model: when inference started (Unix s) and the time burnt into it (or None)."""

    started: float
    code: float | None

    @property
    def age_ms(self) -> float | None:
        return None if self.code is None else (self.started - self.code) * 1000.0


@dataclass
class ClockReadingEngine:
    """An :class:`~streamprep.inference.onnx.Engine` around another, reading the time code from each tensor."""

    inner: Any
    layout: str = "nchw"
    readings: list[Reading] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def info(self) -> Any:
        return self.inner.info

    def run(self, tensor: Any) -> list[Any]:
        started = time.time()
        codes = [read_time(tensor_luma(image, self.layout), started) for image in tensor]
        with self._lock:
            self.readings += [Reading(started, code) for code in codes]
        return list(self.inner.run(tensor))

    def __getattr__(self, name: str) -> Any:  # select_input, warm_up... of the wrapped engine
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
