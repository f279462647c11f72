"""Video files (MP4 and whatever FFmpeg reads), replayed deterministically: every sampled frame, in order."""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import AsyncGenerator, Generator, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av
import cv2
import numpy as np

from streamprep.errors import SourceLostError, SourceOpenError
from streamprep.frames import Frame, Image
from streamprep.sampling import Sampler
from streamprep.sources.base import SourceState, SourceStatus, StatusCallback
from streamprep.sources.hwdecode import Decoder
from streamprep.sources.skipping import DRAIN, DecodeOptions, Skipper

log = logging.getLogger(__name__)

_CHUNK = 4  # sampled frames handed over per trip to the decode thread


def to_image(frame: Any) -> tuple[Image, str]:
    """A decoded PyAV frame as ``(array, pixel_format)``, display orientation applied.

    Even-sized yuv420p frames stay I420, and NV12 frames (what hardware decoders give) stay NV12 (a plain
    copy): the preprocessor resizes the planes and converts colour at model size, far cheaper than
    converting the full frame. Anything else becomes BGR.
    """
    rotation = (getattr(frame, "rotation", 0) or 0) % 360
    even = frame.width % 2 == 0 and frame.height % 2 == 0
    if frame.format.name in ("yuv420p", "nv12") and even and not rotation:
        return frame.to_ndarray(), frame.format.name
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        image: Image = cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2BGR_I420)
    else:
        image = frame.to_ndarray(format="bgr24")
    if rotation:
        image = np.ascontiguousarray(np.rot90(image, k=round(rotation / 90) % 4))
    return image, "bgr24"


def open_container(path: Path, source: str) -> tuple[Any, Any]:
    """Open a file and its first video stream; every failure becomes one clear SourceOpenError."""
    if not path.exists():
        raise SourceOpenError(source, f"{path}: no such file")
    if path.is_dir():
        raise SourceOpenError(source, f"{path}: is a directory, not a video file")
    try:
        container = av.open(str(path), mode="r")
    except av.error.InvalidDataError:
        raise SourceOpenError(source, f"{path}: not a readable video (corrupt or truncated file?)") from None
    except av.error.FFmpegError as exc:
        reason = exc.strerror or str(exc)
        if getattr(exc, "errno", None) == errno.EACCES:
            reason = "permission denied"
        raise SourceOpenError(source, f"{path}: cannot open: {reason}") from None
    if not container.streams.video:
        container.close()
        raise SourceOpenError(source, f"{path}: has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


class _Counted(Protocol):
    decoded: int
    corrupt: int


def decode(
    container: Any, stream: Any, counts: _Counted, skip: Skipper | None = None, decoder: Decoder | None = None
) -> Iterator[Any]:
    """Every frame that decodes, in order; a packet that does not is counted in ``counts.corrupt`` and
    skipped (most frames of a file damaged in the middle survive). ``skip`` chooses the packets worth
    decoding (then call its ``presented`` for every frame); ``decoder`` decodes (default: in software)."""
    decoder = decoder or Decoder(stream)
    packets = container.demux(stream) if skip is None else skip.packets(container.demux(stream))
    for packet in packets:
        try:
            frames = decoder.drain() if packet is DRAIN else decoder.decode(packet)
        except av.error.InvalidDataError:
            counts.corrupt += 1
            continue
        for frame in frames:
            counts.decoded += 1
            yield frame


def make_frame(source: str, index: int, seq: int, pts: Fraction, frame: Any) -> Frame:
    """A pipeline Frame from a decoded PyAV frame the sampler kept, stamped now."""
    decoded_mono = time.monotonic()
    image, pixel_format = to_image(frame)
    return Frame(
        source=source,
        index=index,
        seq=seq,
        pts=float(pts),
        captured_at=time.time(),
        decoded_mono=decoded_mono,
        image=image,
        pixel_format=pixel_format,
    )


class FileSource:
    """Decodes a file with PyAV; drops unsampled frames before any pixel conversion."""

    live = False

    def __init__(
        self,
        source_id: str,
        path: Path,
        fps: float | None,
        on_status: StatusCallback | None = None,
        decoding: DecodeOptions | None = None,
    ):
        self.id = source_id
        self.path = path
        self.fps = fps
        self.decoding = decoding or DecodeOptions()
        self.decoded = 0
        self.skipped = 0  # frames left undecoded because the sampler would not select them
        self.sampled = 0
        self.corrupt = 0
        self.dropped = 0
        self.reconnects = 0
        self._on_status = on_status

    def _status(self, state: SourceState, reason: str = "") -> None:
        if self._on_status is not None:
            self._on_status(SourceStatus(self.id, state, reason, self.decoded, self.sampled, self.corrupt))

    def _decode(self, container: Any, stream: Any) -> Generator[Frame, None, None]:
        sampler = Sampler(self.fps)
        time_base = stream.time_base or Fraction(1, 90000)
        rate = stream.average_rate or stream.guessed_rate or Fraction(30)
        last_pts: Fraction | None = None
        opts = self.decoding
        skip = Skipper(stream, sampler, opts.sample, skip=opts.skip, lookahead=True, source=self.id, counts=self)
        decoder = Decoder(stream, opts.hwaccel, self.id)
        for frame in decode(container, stream, self, skip, decoder):
            if frame.pts is not None:
                pts = Fraction(frame.pts) * time_base
            else:
                pts = last_pts + 1 / rate if last_pts is not None else Fraction(0)
            last_pts = pts
            later = skip.presented(frame, pts)
            if not sampler.keep(pts):
                continue
            self.sampled += 1
            yield make_frame(self.id, self.decoded + self.skipped - later - 1, self.sampled - 1, pts, frame)

    def _next_chunk(self, frames: Iterator[Frame]) -> list[Frame]:
        chunk: list[Frame] = []
        try:
            for frame in frames:
                chunk.append(frame)
                if len(chunk) >= _CHUNK:
                    break
        except av.error.FFmpegError as exc:
            raise SourceLostError(self.id, f"{self.path}: decoding failed: {exc.strerror or exc}") from None
        return chunk

    async def frames(self) -> AsyncGenerator[Frame, None]:
        self._status(SourceState.CONNECTING)
        container, stream = await asyncio.to_thread(open_container, self.path, self.id)
        self._status(SourceState.ONLINE, f"{stream.codec_context.name} {stream.width}x{stream.height}")
        frames = self._decode(container, stream)
        pending: asyncio.Task[list[Frame]] | None = None
        try:
            while True:
                pending = asyncio.create_task(asyncio.to_thread(self._next_chunk, frames))
                chunk = await asyncio.shield(pending)
                pending = None
                if not chunk:
                    break
                for frame in chunk:
                    yield frame
            if self.corrupt:
                log.warning("source %s: skipped %d corrupt packet(s)", self.id, self.corrupt)
            if self.decoded == 0:
                raise SourceLostError(self.id, f"{self.path}: no frame could be decoded")
            if stream.frames and self.decoded + self.skipped < stream.frames:
                raise SourceLostError(
                    self.id,
                    f"{self.path}: truncated or damaged: decoded {self.decoded} (and left out {self.skipped}) "
                    f"of the {stream.frames} frames its index lists",
                )
            self._status(SourceState.FINISHED, "end of file")
        finally:
            if pending is not None:
                # The decode thread still uses the container: let it finish before closing it.
                await asyncio.wait({pending})
            frames.close()
            container.close()
