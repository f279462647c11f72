"""Live sources: RTSP/HTTP/UDP streams, V4L2 webcams, FFmpeg lavfi test sources, and files paced in real time.

Decoding runs continuously in a thread of its own, whatever the pipeline is doing; sampled frames are
handed to the event loop through a small queue whose policy decides what happens when the pipeline is
behind (drop the oldest by default: the newest frame always gets in, so results describe the present).

The thread reconnects on its own: every open and read has a timeout (a dead camera never hangs it), a
stream that ends or stalls is reopened after an exponential backoff with jitter (capped), and restarts
are rate-limited. A source that has never come up and answers definitely that it is not there (no such
device, connection refused, 404, credentials refused: see :mod:`.opening`) fails alone instead, unless
``wait_for_source`` is set. Each change of state is reported as a :class:`SourceStatus` whose reason never
contains a password. Timestamps stay monotonic across reconnects and stream resets.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import enum
import logging
import threading
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av

from streamprep.flow.backoff import Backoff, BackoffPolicy
from streamprep.flow.queues import BoundedQueue, DropPolicy, QueueClosed
from streamprep.sources.base import SourceCounts, StatusCallback
from streamprep.sources.clock import Capture, CaptureClocks
from streamprep.sources.file import HUNG, Timeline, decode, make_frame
from streamprep.sources.hwdecode import Decoder
from streamprep.sources.opening import Failure, GaveUpError, Opener, OpenTimeout, failure_of
from streamprep.sources.sampling import Sampler
from streamprep.sources.skipping import DecodeOptions, Skipper
from streamprep.values.errors import SourceLostError, internal_error
from streamprep.values.frames import DropReason, Frame, SourceState, SourceStatus
from streamprep.values.redact import redact_text, redact_url

log = logging.getLogger(__name__)

_NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


# reopening a live input: 0.5 s doubling up to 10 s, jittered, at most 20 restarts a minute
LIVE_BACKOFF = BackoffPolicy(first_s=0.5, cap_s=10.0, jitter=0.5, per_minute=20)


@dataclass(frozen=True)
class LiveOptions:
    """How a live input is opened, decoded, handed over and reopened (the one definition; a source's come
    from its :class:`~streamprep.sources.spec.SourceSpec`)."""

    transport: str = "tcp"  # RTSP transport: tcp or udp
    open_timeout: float = 5.0
    stall_timeout: float = 5.0  # no frame for this long: the source is stalled and gets reopened
    backoff: BackoffPolicy = LIVE_BACKOFF  # waits between reopens (and the cap on restarts per minute)
    realtime: bool = False  # pace a file at its own frame rate (live semantics for a file)
    input_format: str | None = None  # FFmpeg demuxer: v4l2, lavfi...
    input_options: dict[str, str] = field(default_factory=dict)  # video_size, framerate, input_format...
    handoff: int = 2  # sampled frames that may wait between the decode thread and the pipeline
    policy: DropPolicy = DropPolicy.DROP_OLDEST
    decoding: DecodeOptions = field(default_factory=DecodeOptions)  # sampling mode, frame skipping, hwaccel
    low_delay: bool = True  # cameras and streams: decoding tuned for delay (see decode_settings)
    wait_for_source: bool = False  # retry a source that never came up whatever it answers (not only timeouts)


class SourceKind(enum.StrEnum):
    """What a source URL names."""

    NETWORK = "network"  # rtsp://, http(s)://, udp://... streams
    WEBCAM = "webcam"  # a V4L2 device
    LAVFI = "lavfi"  # an FFmpeg filter graph (test sources)
    FILE = "file"  # a file (replayed, or paced in real time)


def classify(url: str) -> tuple[SourceKind, str | None, str]:
    """``(kind, demuxer, target)`` for a source URL."""
    if url.startswith(_NETWORK_SCHEMES):
        return SourceKind.NETWORK, None, url
    if url.startswith("lavfi:"):
        return SourceKind.LAVFI, "lavfi", url.removeprefix("lavfi:")
    if url.isdigit():
        return SourceKind.WEBCAM, "v4l2", f"/dev/video{url}"
    if url.startswith("/dev/video"):
        return SourceKind.WEBCAM, "v4l2", url
    return SourceKind.FILE, None, url


AUTH_RETRY_S = 60.0  # a camera that refuses the credentials is tried again this often, not faster
OPEN_MARGIN_S = 1.0  # the bound on an open beyond FFmpeg's own open timeout (which a device or FIFO ignores)
WAIT_HINT = "set wait_for_source = true to keep trying"  # what a live source that gave up can do


def cannot_open(safe_url: str, exc: BaseException) -> str:
    """Why a live input did not open, in one line without secrets (run's status and check's report)."""
    reason = exc.reason if isinstance(exc, SourceLostError) else _reason(exc)
    return f"cannot open {safe_url}: {reason}"


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return redact_text(str(text))


@dataclass(frozen=True)
class DecodeSettings:
    """How a live input is opened and decoded: for delay (cameras, streams) or throughput (files).

    ``options`` are FFmpeg input options; ``thread_type`` the decoder's threading. Measured with the
    clock camera (``bench/live_decode_settings.py``, ``bench/RESULTS.md``): frame threading (``AUTO``)
    holds each frame back ~65 ms at 30 fps on two cores; slice threading hands it over as soon as it is
    decoded, for the same CPU. The decoder's ``low_delay`` flag changed nothing (not the age on the
    camera; on a file with B-frames neither the two packets held back nor the order), so it is not set.
    """

    options: dict[str, str]
    thread_type: str


def decode_settings(kind: str, target: str, options: LiveOptions) -> DecodeSettings:
    """The settings for a live input of ``kind`` (see :func:`classify`); the source's own options win."""
    opts: dict[str, str] = {}
    if target.startswith(("rtsp://", "rtsps://")):
        opts["rtsp_transport"] = options.transport
    if kind in (SourceKind.NETWORK, SourceKind.WEBCAM):
        opts["fflags"] = "nobuffer"  # what the probe read is not queued up for a burst of old frames
    if kind == SourceKind.FILE or not options.low_delay:
        return DecodeSettings(opts | dict(options.input_options), "AUTO")
    if target.startswith(("rtsp://", "rtsps://")):
        opts["probesize"] = "32"  # the SDP describes the stream: av.open takes ~0.1 s instead of ~1 s
    return DecodeSettings(opts | dict(options.input_options), "SLICE")


def open_input(source_id: str, url: str, options: LiveOptions) -> tuple[Any, Any]:
    """Open a live input and its first video stream, with open and read timeouts, tuned by
    :func:`decode_settings`.

    Raises av.error.FFmpegError or OSError as FFmpeg reports them, SourceLostError without a video stream.
    """
    kind, demuxer, target = classify(url)
    settings = decode_settings(kind, target, options)
    container = av.open(
        target,
        mode="r",
        format=options.input_format or demuxer,
        options=settings.options,
        timeout=(options.open_timeout, options.stall_timeout),
    )
    if not container.streams.video:
        container.close()
        raise SourceLostError(source_id, f"{redact_url(url)}: has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = settings.thread_type
    return container, stream


def with_capture(frame: Frame, capture: Capture) -> Frame:
    """``frame`` with its capture time from ``capture`` instead of its decoding time."""
    wall_minus_mono = time.time() - time.monotonic()  # read together: the capture on the monotonic clock
    lag = frame.decoded_mono - (capture.at - wall_minus_mono)
    return dataclasses.replace(frame, captured_at=capture.at, capture_clock=capture.clock, capture_lag=lag)


class LiveSource:
    """A source that never lags: decodes continuously and reconnects until stopped."""

    live = True

    def __init__(
        self,
        source_id: str,
        url: str,
        fps: float | None,
        options: LiveOptions | None = None,
        on_status: StatusCallback | None = None,
        *,
        first_seq: int = 0,
    ) -> None:
        self.id = source_id
        self.url = url
        self.safe_url = redact_url(url)
        self.fps = fps
        self.options = options or LiveOptions()
        self.kind = classify(url)[0]
        self.counts = SourceCounts()
        self._first_seq = first_seq
        self.state: SourceState | None = None
        self.failure: str | None = None
        self.came_up = False  # it has been online (then it is retried whatever it answers)
        self._gave_up: GaveUpError | None = None
        self._opener: Opener[tuple[Any, Any]] = Opener(source_id, lambda opened: opened[0].close())
        self._reason = ""
        self._on_status = on_status
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the stop flag against the sampled and dropped counts

    # -- status, called from the decode thread and handed to the loop
    def _status(self, loop: asyncio.AbstractEventLoop, state: SourceState, reason: str = "") -> None:
        if (state, reason) == (self.state, self._reason) or (state is self.state and not reason):
            return
        self.state, self._reason = state, reason
        if state is SourceState.FAILED:
            self.failure = reason
        c = self.counts
        status = SourceStatus(self.id, state, reason, c.decoded, c.sampled, c.corrupt)
        if self._on_status is not None:
            try:
                loop.call_soon_threadsafe(self._on_status, status)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                self._stop.set()

    def _open(self) -> tuple[Any, Any]:
        bound = self.options.open_timeout + (0.0 if self.kind is SourceKind.FILE else OPEN_MARGIN_S)
        return self._opener.open(lambda: open_input(self.id, self.url, self.options), bound)

    def _give_up(self, loop: asyncio.AbstractEventLoop, reason: str, failure: Failure) -> None:
        self._gave_up = GaveUpError(self.id, reason, failure)
        self._status(loop, SourceState.FAILED, reason)

    def _run(self, loop: asyncio.AbstractEventLoop, handoff: BoundedQueue[Frame]) -> None:
        """The decode thread: open, decode, hand off, and reopen, until stopped."""
        sampler = Sampler(self.fps)
        restarts = Backoff(self.options.backoff)
        timeline = Timeline(self.id, rebase=True)
        tries = 0  # attempts to open that failed in a row: only the first is announced as connecting
        while not self._stop.is_set():
            if not tries:
                self._status(loop, SourceState.CONNECTING)
            try:
                container, stream = self._open()
            except (av.error.FFmpegError, OSError, SourceLostError, OpenTimeout) as exc:
                failure = failure_of(exc)
                what = cannot_open(self.safe_url, exc)
                if isinstance(exc, OpenTimeout) and self.kind is SourceKind.FILE:
                    what += f" ({HUNG})"
                if self.kind is SourceKind.FILE:
                    self._give_up(loop, what, failure)
                    return
                if failure.definite and not self.came_up and not self.options.wait_for_source:
                    self._give_up(loop, f"{what} ({WAIT_HINT})", failure)
                    return
                tries += 1
                wait = restarts.next_wait()
                if failure is Failure.DENIED:
                    # wrong user or password: retrying fast only fills the camera's log; check the credentials
                    wait = max(wait, AUTH_RETRY_S)
                    what += " (the camera refused the credentials: check the user and password)"
                # one status (one log line) per failed try; the try number keeps each one apart
                self._status(loop, SourceState.OFFLINE, f"{what}; try {tries}, next in {wait:.1f} s")
                self.counts.reconnects += 1
                self._stop.wait(wait)
                continue
            tries = 0
            self.came_up = True
            size = f" {stream.width}x{stream.height}" if stream.width else ""  # not probed: known at the first frame
            self._status(loop, SourceState.ONLINE, f"{stream.codec_context.name}{size}")
            online_since = time.monotonic()
            rate = stream.average_rate or stream.guessed_rate
            if rate:
                timeline.interval = 1 / Fraction(rate)
            timeline.restart()
            wall_origin = time.monotonic()
            first: Fraction | None = None
            ended = "stream ended"
            opts = self.options.decoding
            skip = Skipper(stream, sampler, opts.sample, skip=opts.skip, source=self.id, counts=self.counts)
            clocks = CaptureClocks(self.id, container, stream) if self.kind is not SourceKind.FILE else None
            demuxer = clocks.stamped() if clocks else container
            try:
                for frame in decode(demuxer, stream, self.counts, skip, Decoder(stream, opts.hwaccel, self.id)):
                    if self._stop.is_set():
                        break
                    capture = clocks.capture(frame.pts, time.time()) if clocks else None
                    if frame.pts is not None and stream.time_base is not None:
                        raw = Fraction(frame.pts) * stream.time_base
                    else:
                        raw = Fraction(time.monotonic() - wall_origin).limit_denominator(1_000_000)
                    pts = timeline.place(raw)
                    if first is None:
                        first = pts
                    if self.options.realtime:
                        delay = wall_origin + float(pts - first) - time.monotonic()
                        if delay > 0 and self._stop.wait(delay):
                            break
                    later = skip.presented(frame, pts)
                    if not sampler.keep(pts):
                        continue
                    c = self.counts
                    with self._lock:
                        if self._stop.is_set():
                            break
                        c.sampled += 1
                    index = c.decoded + c.skipped - later - 1
                    item = make_frame(self.id, index, self._first_seq + c.sampled - 1, pts, frame)
                    if capture is not None:
                        item = with_capture(item, capture)
                    if not self._hand_off(loop, handoff, item):
                        with self._lock:
                            c.dropped[DropReason.STOPPED] += 1
                        return
            except av.error.FFmpegError as exc:
                ended = _reason(exc)
                if "timed out" in ended.lower() or isinstance(exc, av.error.ExitError):
                    ended = f"no frame for {self.options.stall_timeout:g} s"
                    self._status(loop, SourceState.STALLED, ended)
            finally:
                container.close()
            if self._stop.is_set():
                return
            if self.kind is SourceKind.FILE:
                self._status(loop, SourceState.FINISHED, "end of file")
                return
            if time.monotonic() - online_since > 10.0:
                restarts.succeeded()
            self.counts.reconnects += 1
            self._status(loop, SourceState.OFFLINE, ended)
            self._stop.wait(restarts.next_wait())

    def _hand_off(self, loop: asyncio.AbstractEventLoop, handoff: BoundedQueue[Frame], frame: Frame) -> bool:
        """Give a frame to the loop; False when it did not get there because the consumer is gone.

        Closing the hand-off always ends a pending ``put``, so the answer comes as soon as the loop runs;
        only a loop that is gone altogether is not waited for.
        """
        try:
            future = asyncio.run_coroutine_threadsafe(handoff.put(frame), loop)
        except RuntimeError:
            return False
        while True:
            try:
                future.result(timeout=0.5)
                return True
            except TimeoutError:
                if loop.is_closed():
                    return False
            except (QueueClosed, asyncio.CancelledError, concurrent.futures.CancelledError):
                return False

    async def frames(self) -> AsyncGenerator[Frame, None]:
        loop = asyncio.get_running_loop()
        handoff: BoundedQueue[Frame] = BoundedQueue(self.options.handoff, self.options.policy)
        self._stop.clear()
        thread = threading.Thread(target=self._guarded_run, args=(loop, handoff), name=f"source {self.id}", daemon=True)
        thread.start()
        try:
            while (frame := await handoff.get()) is not None:
                self.counts.dropped[DropReason.QUEUE] = handoff.dropped
                yield frame
            if self._gave_up is not None:
                raise self._gave_up
            if self.failure is not None:
                raise SourceLostError(self.id, self.failure)
        finally:
            with self._lock:
                self._stop.set()
                handoff.close()
                self.counts.dropped[DropReason.QUEUE] = handoff.dropped
                self.counts.dropped[DropReason.STOPPED] += len(handoff)
                handoff.clear()

    def _guarded_run(self, loop: asyncio.AbstractEventLoop, handoff: BoundedQueue[Frame]) -> None:
        try:
            self._run(loop, handoff)
        except Exception as exc:  # a bug must not vanish with the thread
            log.debug("source %s: decode thread failed", self.id, exc_info=True)
            self._status(loop, SourceState.FAILED, internal_error(exc))
        finally:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(handoff.close)
