"""A source from Python: frames your own code makes (a generator, a camera SDK, a simulator).

    def frames():
        while True:
            yield camera.grab()          # H×W×3 BGR arrays, or (array, seconds) pairs

    for result in streamprep.stream(streamprep.FrameSource(frames(), id="sdk", live=True), fps=5):
        ...

An iterator runs in a thread of its own (it may block); an async iterator runs on the event loop. Frames
are sampled to the run's ``fps`` by their timestamps: given with each frame, else from ``rate`` (frames per
second of the input), else the time the frame arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from fractions import Fraction
from typing import Any

import numpy as np

from streamprep.sources.base import SourceCounts
from streamprep.sources.sampling import Sampler
from streamprep.values.errors import SourceLostError
from streamprep.values.frames import Frame, Image

_END = object()


class FrameSource:
    """The :class:`~streamprep.sources.base.Source` seam around frames made in Python.

    ``frames``: an iterable or async iterable of BGR ``H×W×3`` uint8 arrays, or of ``(array, seconds)``.
    ``live``: latest-frame semantics (a camera); otherwise every sampled frame is processed (a replay).
    ``fps``: sample to this rate (default: the run's ``fps`` does not reach here; set it on the source).
    """

    def __init__(
        self,
        frames: Iterable[Any] | AsyncIterable[Any],
        id: str = "frames",
        *,
        live: bool = False,
        fps: float | None = None,
        rate: float | None = None,
    ) -> None:
        self.id = id
        self.live = live
        self.counts = SourceCounts()
        self._frames = frames
        self._sampler = Sampler(fps)
        self._rate = rate
        self._first_seq = 0

    def _frame(self, item: Any, index: int, started: float) -> Frame | None:
        image, seconds = item if isinstance(item, tuple) else (item, None)
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise SourceLostError(
                self.id, f"frame {index}: expected an H×W×3 uint8 BGR array, got {image.shape} {image.dtype}"
            )
        if seconds is None:
            seconds = index / self._rate if self._rate else time.monotonic() - started
        pts = Fraction(seconds).limit_denominator(1_000_000)
        self.counts.decoded += 1
        if not self._sampler.keep(pts):
            return None
        self.counts.sampled += 1
        bgr: Image = np.ascontiguousarray(image)
        return Frame(self.id, index, self.counts.sampled - 1, float(pts), time.time(), time.monotonic(), bgr)

    async def frames(self) -> AsyncIterator[Frame]:
        started = time.monotonic()
        index = 0
        if isinstance(self._frames, AsyncIterable):
            async for item in self._frames:
                if (frame := self._frame(item, index, started)) is not None:
                    yield frame
                index += 1
            return
        iterator: Iterator[Any] = iter(self._frames)
        while (item := await asyncio.to_thread(next, iterator, _END)) is not _END:
            frame = self._frame(item, index, started)
            index += 1
            if frame is not None:
                yield frame
