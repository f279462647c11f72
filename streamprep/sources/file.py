"""Video files (MP4 and whatever FFmpeg reads), replayed deterministically: every sampled frame, in order."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat
import time
from collections.abc import AsyncGenerator, Generator, Iterator
from concurrent.futures import Executor
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from streamprep.sources.base import SourceCounts, StatusCallback
from streamprep.sources.hwdecode import Decoder
from streamprep.sources.opening import Opener, OpenTimeout
from streamprep.sources.sampling import Sampler
from streamprep.sources.skipping import DRAIN, DecodeOptions, Skipper
from streamprep.values.errors import SourceLostError, SourceOpenError
from streamprep.values.frames import DropReason, Frame, Image, SourceState, SourceStatus

log = logging.getLogger(__name__)

_CHUNK = 4  # sampled frames handed over per trip to the decode thread
HUNG = "a FIFO nobody writes to, or a network mount that does not answer?"


# FFmpeg's matrices (AVColorSpace) the preprocessor converts itself: unspecified (swscale then uses
# BT.601), the BT.601 family and BT.709. Frames with any other matrix are converted here, by FFmpeg.
_MATRICES = {2: "bt601", 5: "bt601", 6: "bt601", 1: "bt709"}
_I420 = ("yuv420p", "yuvj420p")


def color_of(frame: Any) -> tuple[str, str]:
    """A decoded PyAV frame's YCbCr matrix and range, as :class:`~streamprep.values.frames.Frame` names them."""
    matrix = _MATRICES.get(int(frame.colorspace or 2), "other")
    full = int(frame.color_range or 0) == 2 or frame.format.name.startswith("yuvj")
    return matrix, "full" if full else "limited"


def to_image(frame: Any) -> tuple[Image, str]:
    """A decoded PyAV frame as ``(array, pixel_format)``, display orientation applied.

    Even-sized I420 frames (``yuv420p``, ``yuvj420p``) with a matrix the preprocessor knows stay I420, and
    NV12 frames (what hardware decoders give) stay NV12 (a plain copy): the preprocessor converts them as
    FFmpeg does (see :func:`color_of` for how), or at model size on its fast path. Anything else becomes
    BGR here, converted by FFmpeg.
    """
    rotation = (getattr(frame, "rotation", 0) or 0) % 360
    even = frame.width % 2 == 0 and frame.height % 2 == 0
    if frame.format.name in _I420 and even and not rotation and color_of(frame)[0] != "other":
        return frame.to_ndarray(), "yuv420p"
    if frame.format.name == "nv12" and even and not rotation and color_of(frame)[0] != "other":
        return frame.to_ndarray(), "nv12"
    image: Image = frame.to_ndarray(format="bgr24")
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


def close_opened(opened: tuple[Any, Any]) -> None:
    """Close what :func:`open_container` opened (for an open given up on that completed later)."""
    opened[0].close()


def did_not_open(path: Path, source: str, exc: OpenTimeout) -> SourceOpenError:
    """The error of a file whose open did not finish within its bound."""
    return SourceOpenError(source, f"{path}: {exc} ({HUNG})")


def probe_file(path: Path, source: str) -> tuple[int, int]:
    """The frame size of a video file, with the errors opening it for a run would give (SourceOpenError).
    A FIFO is not opened (that would take data meant for the run): SourceOpenError too."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = 0  # open_container says why
    if stat.S_ISFIFO(mode):
        raise SourceOpenError(source, f"{path}: is a FIFO, not a file: it can only be checked by running it")
    container, stream = open_container(path, source)
    try:
        return int(stream.width), int(stream.height)
    finally:
        container.close()


def decode(
    container: Any, stream: Any, counts: SourceCounts, skip: Skipper | None = None, decoder: Decoder | None = None
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


class Timeline:
    """Presentation times made monotonic: a stream whose timestamps jump backwards (two recordings
    concatenated, an encoder restart) continues one frame interval after the last frame instead."""

    def __init__(self, source: str, interval: Fraction = Fraction(1, 30), *, rebase: bool = False) -> None:
        """``rebase``: count from the first timestamp (live streams); otherwise keep the stream's own
        timestamps (files) until they jump back."""
        self._source = source
        self.interval = interval
        self._base = Fraction(0)
        self._origin: Fraction | None = None if rebase else Fraction(0)
        self.last: Fraction | None = None
        self.resets = 0

    def restart(self) -> None:
        """A new connection: its timestamps continue after the last one seen."""
        self._base = self.last + self.interval if self.last is not None else Fraction(0)
        self._origin = None

    def place(self, raw: Fraction) -> Fraction:
        """The monotonic time of a frame whose stream timestamp is ``raw``."""
        if self._origin is None:
            self._origin = raw
        pts = self._base + (raw - self._origin)
        if self.last is not None and pts <= self.last:
            self._base, self._origin = self.last + self.interval, raw
            self.resets += 1
            log.warning(
                "source %s: timestamps jumped back (%.3f s after %.3f s); continuing at %.3f s",
                self._source,
                float(pts),
                float(self.last),
                float(self._base),
            )
            pts = self._base
        self.last = pts
        return pts


def make_frame(source: str, index: int, seq: int, pts: Fraction, frame: Any) -> Frame:
    """A pipeline Frame from a decoded PyAV frame the sampler kept, stamped now."""
    decoded_mono = time.monotonic()
    image, pixel_format = to_image(frame)
    color_matrix, color_range = color_of(frame)
    return Frame(
        source=source,
        index=index,
        seq=seq,
        pts=float(pts),
        captured_at=time.time(),
        decoded_mono=decoded_mono,
        image=image,
        pixel_format=pixel_format,
        color_matrix=color_matrix,
        color_range=color_range,
    )


def frame_at(path: Path, seconds: float) -> Frame:
    """The frame a player shows at ``seconds`` into the file: the last one whose presentation time is not
    after it (seeking to the keyframe before, then decoding forward)."""
    if seconds < 0:
        raise SourceOpenError(path.stem, f"{path}: --at {seconds} is before the start")
    container, stream = open_container(path, path.stem)
    try:
        time_base = stream.time_base or Fraction(1, 90000)
        start = Fraction(stream.start_time or 0) * time_base
        target = Fraction(seconds) + start
        container.seek(int(target / time_base), stream=stream, backward=True, any_frame=False)
        shown: tuple[Fraction, Any] | None = None
        ended = True
        for frame in decode(container, stream, SourceCounts()):
            pts = Fraction(frame.pts) * time_base if frame.pts is not None else target
            if shown is not None and pts > target:
                ended = False
                break
            shown = (pts - start, frame)
        if shown is None:
            raise SourceLostError(path.stem, f"{path}: no frame could be decoded at {seconds} s")
        last = shown[1]
        shown_for = Fraction(last.duration or 0) * time_base or 1 / (stream.average_rate or Fraction(30))
        if ended and target >= shown[0] + start + shown_for:
            end = float(shown[0] + shown_for)
            raise SourceOpenError(path.stem, f"{path}: --at {seconds} is after the end ({end:.3f} s)")
        return make_frame(path.stem, 0, 0, shown[0], shown[1])
    except av.error.FFmpegError as exc:
        raise SourceLostError(path.stem, f"{path}: decoding failed: {exc.strerror or exc}") from None
    finally:
        container.close()


class FileSource:
    """Decodes a file with PyAV; drops unsampled frames before any pixel conversion.

    Decoding runs in ``executor`` (a pool shared by the file sources) a few sampled frames at a time;
    ``decode_threads`` caps FFmpeg's own threads for this stream (None: FFmpeg decides). ``resume_seq``
    (a restarted ``--workers`` worker): the frames the sampler keeps before that seq were delivered by the
    worker before; they are decoded again (the sampler, the timeline and the seq numbers come out exactly as
    in a replay never interrupted) but neither handed over nor counted as sampled. Opening waits at most
    ``open_timeout`` seconds, in a daemon thread of its own (see :mod:`.opening`): a FIFO nobody writes to
    or a hung network mount fails the source instead of hanging the run or its exit.
    """

    live = False

    def __init__(
        self,
        source_id: str,
        path: Path,
        fps: float | None,
        on_status: StatusCallback | None = None,
        *,
        first_seq: int = 0,
        resume_seq: int = 0,
        executor: Executor | None = None,
        decode_threads: int | None = None,
        decoding: DecodeOptions | None = None,
        slots: asyncio.Semaphore | None = None,
        open_timeout: float = 5.0,
    ) -> None:
        self.id = source_id
        self.path = path
        self.fps = fps
        self.counts = SourceCounts()
        self.decoding = decoding or DecodeOptions()
        self._first_seq = first_seq
        self._resume_seq = resume_seq
        self._executor = executor
        self._decode_threads = decode_threads
        self._slots = slots  # files open at once (each open decoder holds a dozen frames)
        self._on_status = on_status
        self._open_timeout = open_timeout
        self._opener: Opener[tuple[Any, Any]] = Opener(source_id, close_opened)

    def _status(self, state: SourceState, reason: str = "") -> None:
        if self._on_status is not None:
            c = self.counts
            self._on_status(SourceStatus(self.id, state, reason, c.decoded, c.sampled, c.corrupt))

    def _open(self) -> tuple[Any, Any]:
        container, stream = open_container(self.path, self.id)
        if self._decode_threads is not None:
            stream.thread_type = "SLICE"
            stream.codec_context.thread_count = self._decode_threads
        return container, stream

    def _decode(self, container: Any, stream: Any) -> Generator[Frame, None, None]:
        sampler = Sampler(self.fps)
        time_base = stream.time_base or Fraction(1, 90000)
        rate = stream.average_rate or stream.guessed_rate or Fraction(30)
        timeline = Timeline(self.id, 1 / Fraction(rate))
        opts, counts = self.decoding, self.counts
        skip = Skipper(stream, sampler, opts.sample, skip=opts.skip, lookahead=True, source=self.id, counts=counts)
        decoder = Decoder(stream, opts.hwaccel, self.id)
        kept = 0
        for frame in decode(container, stream, counts, skip, decoder):
            raw = Fraction(frame.pts) * time_base if frame.pts is not None else None
            pts = timeline.place(raw if raw is not None else (timeline.last or Fraction(0)) + timeline.interval)
            counts.position_s = float(pts)
            later = skip.presented(frame, pts)
            if not sampler.keep(pts):
                continue
            kept += 1
            seq = self._first_seq + kept - 1
            if seq < self._resume_seq:
                continue  # delivered before this run (resumed)
            counts.sampled += 1
            index = counts.decoded + counts.skipped - later - 1
            yield make_frame(self.id, index, seq, pts, frame)

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
        # aclosing: when the consumer stops early, the inner generator's cleanup (closing the container,
        # counting the frames it decoded but never handed over) runs now, not whenever it is collected
        if self._slots is None:
            async with contextlib.aclosing(self._frames()) as frames:
                async for frame in frames:
                    yield frame
            return
        if self._slots.locked():
            self._status(SourceState.CONNECTING, "waiting for its turn (limits.open_files are being decoded)")
        async with self._slots, contextlib.aclosing(self._frames()) as frames:
            async for frame in frames:
                yield frame

    async def _frames(self) -> AsyncGenerator[Frame, None]:
        loop = asyncio.get_running_loop()
        self._status(SourceState.CONNECTING)
        try:
            container, stream = await self._opener.open_async(self._open, self._open_timeout)
        except OpenTimeout as exc:
            raise did_not_open(self.path, self.id, exc) from None
        self._status(SourceState.ONLINE, f"{stream.codec_context.name} {stream.width}x{stream.height}")
        if container.duration:
            self.counts.duration_s = container.duration / av.time_base
        frames = self._decode(container, stream)
        pending: asyncio.Future[list[Frame]] | None = None
        chunk: list[Frame] = []
        given = 0
        try:
            while True:
                pending = loop.run_in_executor(self._executor, self._next_chunk, frames)
                chunk = await asyncio.shield(pending)
                pending, given = None, 0
                if not chunk:
                    break
                for given, frame in enumerate(chunk, 1):  # noqa: B007 (read in finally)
                    yield frame
            if self.counts.corrupt:
                log.warning("source %s: skipped %d corrupt packet(s)", self.id, self.counts.corrupt)
            if self.counts.decoded == 0:
                raise SourceLostError(self.id, f"{self.path}: no frame could be decoded")
            if stream.frames and self.counts.decoded + self.counts.skipped < stream.frames:
                raise SourceLostError(
                    self.id,
                    f"{self.path}: truncated or damaged: decoded {self.counts.decoded} (and left out "
                    f"{self.counts.skipped}) of the {stream.frames} frames its index lists",
                )
            self._status(SourceState.FINISHED, "end of file")
        finally:
            if pending is not None:
                # The decode thread still uses the container: let it finish before closing it.
                await asyncio.wait({pending})
                if not pending.cancelled() and pending.exception() is None:
                    chunk, given = pending.result(), 0
            # sampled frames decoded but never handed over (the run stopped meanwhile)
            self.counts.dropped[DropReason.STOPPED] += len(chunk) - given
            frames.close()
            container.close()
