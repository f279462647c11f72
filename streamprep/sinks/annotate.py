"""``run --annotate OUT.mp4``: every sampled frame with the boxes the model found drawn on it, as a video.

One MP4 per source: ``OUT`` itself with one source, ``OUT-<source>.mp4`` beside it with several. Frames are
placed at their presentation times (a variable frame rate where sampling left gaps). Drawing and H.264
encoding happen in a thread of the sink's own; the run keeps its frames for this sink only as long as the
sink's (small) queue holds them.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2

from streamprep.flow.threads import WriterThread
from streamprep.sinks.base import Sink
from streamprep.values.errors import SinkError
from streamprep.values.events import EventOutput
from streamprep.values.frames import Image, Result, SourceStatus
from streamprep.values.metrics import SinkSnapshot
from streamprep.values.names import topic_level

_TIME_BASE = Fraction(1, 1000)
_REGION = (170, 170, 170)  # the regions the model looked at (regions other than full)
_COLOURS = [(80, 220, 80), (60, 160, 255), (255, 140, 60), (200, 80, 220), (60, 220, 220), (220, 220, 60)]


def draw(image: Image, result: Result) -> Image:
    """``image`` (BGR, the result's frame) with the result's boxes and labels drawn on a copy; with ``regions``
    other than ``full`` also the regions the model looked at (thin grey squares) and carried detections
    (thin, their label marked ``*``)."""
    out = image.copy()
    scale = max(0.5, min(out.shape[0], out.shape[1]) / 720)
    whole = (0.0, 0.0, float(out.shape[1]), float(out.shape[0]))
    for x1, y1, x2, y2 in result.regions:
        if (x1, y1, x2, y2) != whole:
            cv2.rectangle(out, (round(x1), round(y1)), (round(x2) - 1, round(y2) - 1), _REGION, 1)
    for d in result.detections or ():
        colour = _COLOURS[d.class_id % len(_COLOURS)]
        p1 = (round(d.box.x1), round(d.box.y1))
        p2 = (round(d.box.x2), round(d.box.y2))
        cv2.rectangle(out, p1, p2, colour, 1 if d.carried else max(2, round(2 * scale)))
        text = f"{d.label}{'*' if d.carried else ''} {d.score:.2f}"
        text += f" #{d.track_id}" if d.track_id is not None else ""
        origin = (p1[0] + 4, max(p1[1] + round(26 * scale), round(26 * scale)))
        cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, colour, max(1, round(2 * scale)))
    for i, c in enumerate(result.classifications or ()):
        origin = (10, round((30 + 30 * i) * scale))
        cv2.putText(out, f"{c.label} {c.score:.2f}", origin, cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, (255, 255, 255), 2)
    return out


class _Video:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.container: Any = None
        self.stream: Any = None
        self.last_pts = -1

    def add(self, image: Image, pts: float | None) -> None:
        if self.container is None:
            self.container = av.open(str(self.path), "w")
            self.stream = self.container.add_stream("libx264", rate=30)
            self.stream.width, self.stream.height = image.shape[1] // 2 * 2, image.shape[0] // 2 * 2
            self.stream.pix_fmt = "yuv420p"
            self.stream.time_base = _TIME_BASE
        image = image[: self.stream.height, : self.stream.width]
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        at = round((pts or 0.0) / _TIME_BASE)
        frame.pts = max(at, self.last_pts + 1)
        frame.time_base = _TIME_BASE
        self.last_pts = frame.pts
        self.container.mux(self.stream.encode(frame))

    def close(self) -> None:
        if self.container is not None:
            self.container.mux(self.stream.encode(None))
            self.container.close()
            self.container = None


class AnnotateSink(Sink):
    def __init__(self, target: Path, sources: list[str]) -> None:
        self.name = f"annotate {target}"
        self._target = target
        self._several = len(sources) > 1
        self._videos: dict[str, _Video] = {}
        self._writer: WriterThread | None = None
        self._closing = asyncio.Event()
        self.sent = 0

    def path_for(self, source: str) -> Path:
        if not self._several:
            return self._target
        return self._target.with_name(f"{self._target.stem}-{topic_level(source)}{self._target.suffix or '.mp4'}")

    async def open(self) -> None:
        parent = self._target.parent
        if not parent.is_dir():
            raise SinkError(f"annotated video {self._target}: {parent}: no such directory")
        self._writer = WriterThread("annotate")

    def _write(self, result: Result) -> None:
        frame = result.frame
        if frame is None:
            return
        video = self._videos.get(result.source)
        if video is None:
            video = self._videos[result.source] = _Video(self.path_for(result.source))
        try:
            video.add(draw(frame.to_bgr(), result), result.pts)
        except (av.error.FFmpegError, OSError) as exc:
            raise SinkError(f"annotated video {video.path}: {getattr(exc, 'strerror', None) or exc}") from None

    async def send(self, result: Result) -> None:
        assert self._writer is not None, "open() first"
        await asyncio.wrap_future(self._writer.submit(self._write, result))
        self.sent += 1

    async def send_event(self, item: EventOutput) -> None:
        """Events are not drawn (their boxes are in the results)."""

    async def send_status(self, status: SourceStatus) -> None:
        """Statuses are not drawn."""

    async def serve(self) -> None:
        await self._closing.wait()
        if self._writer is not None:
            await asyncio.wrap_future(self._writer.submit(self._finish))

    def _finish(self) -> None:
        for video in self._videos.values():
            video.close()

    async def close(self) -> None:
        self._closing.set()

    async def shutdown(self) -> None:
        if self._writer is not None:
            await asyncio.wrap_future(self._writer.submit(self._finish))
            self._writer.shutdown(wait=False)
            self._writer = None

    def stats(self) -> SinkSnapshot:
        return SinkSnapshot(self.name, True, self.sent, 0, 0)
