"""Opening a source: bounded in time whatever blocks, and why it did not open, in one place.

An open can block where no FFmpeg timeout reaches it: a FIFO nobody writes to blocks in ``open(2)``, a
network mount that stopped answering blocks in ``stat(2)``, a webcam driver in an ``ioctl``. So every open
and probe runs in a daemon thread of its own, and its caller waits for it at most a bound (:class:`Opener`).
A thread still stuck when the bound passes is left behind (a daemon thread never holds up the exit); if its
open completes later, what it opened is closed at once, and the next open of the same source waits for that
thread again instead of starting another (at most one stuck thread per source).

:func:`failure_of` classifies why an open failed (:class:`Failure`), for ``run`` and ``check`` alike: a
*definite* answer (no such device, connection refused, 404 Not Found, 401/403 credentials refused) means
the source as configured is wrong; no answer (a timeout) or anything else may be temporary.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import av

from streamprep.values.errors import SourceLostError, SourceOpenError

T = TypeVar("T")


class Failure(enum.Enum):
    """Why a source did not open."""

    NOT_FOUND = "not found"  # no such file or device, 404 Not Found
    REFUSED = "connection refused"  # nothing listens on that port
    DENIED = "access denied"  # 401 Unauthorized, 403 Forbidden, permission denied
    NO_ANSWER = "no answer"  # timed out (a camera that is off, a host unreachable, a FIFO with no writer)
    NOT_VIDEO = "not video"  # the data is not a video this build reads, or it has no video stream
    OTHER = "other"

    @property
    def definite(self) -> bool:
        """The source answered that it is not there as configured (retrying changes nothing by itself)."""
        return self in (Failure.NOT_FOUND, Failure.REFUSED, Failure.DENIED)


# what PyAV 18 raises, measured against gst-rtsp-server and a silent socket (tests/test_live.py):
# a refused port: av.error.ConnectionRefusedError (errno 111); a wrong path: HTTPNotFoundError ("Server
# returned 404 Not Found"); wrong or missing credentials: HTTPUnauthorizedError ("401 Unauthorized");
# /dev/video7 absent: av.error.FileNotFoundError (errno 2); a server that accepts and never answers: RTSP
# InvalidDataError, HTTP ExitError, both at the open timeout; a host name that does not resolve: OSError EIO.
_ERRNOS = {
    errno.ENOENT: Failure.NOT_FOUND,
    errno.ENODEV: Failure.NOT_FOUND,
    errno.ENXIO: Failure.NOT_FOUND,
    errno.ECONNREFUSED: Failure.REFUSED,
    errno.EACCES: Failure.DENIED,
    errno.EPERM: Failure.DENIED,
    errno.ETIMEDOUT: Failure.NO_ANSWER,
    errno.EHOSTUNREACH: Failure.NO_ANSWER,
    errno.ENETUNREACH: Failure.NO_ANSWER,
}
_STATUS_LINES = {
    "404 Not Found": Failure.NOT_FOUND,
    "401 Unauthorized": Failure.DENIED,
    "403 Forbidden": Failure.DENIED,
}


class OpenTimeout(Exception):
    """An open that did not finish within its bound."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"did not open within {seconds:g} s")
        self.seconds = seconds


class GaveUpError(SourceOpenError):
    """A live source that never came up and answered definitely that it is not there: it fails alone instead
    of being retried (unless its config says ``wait_for_source``)."""

    def __init__(self, source: str, reason: str, failure: Failure) -> None:
        super().__init__(source, reason)
        self.failure = failure


def failure_of(exc: BaseException) -> Failure:
    """Why an open failed, from what PyAV/FFmpeg (or the OS, or :class:`Opener`) raised."""
    if isinstance(exc, OpenTimeout | TimeoutError | av.error.ExitError):
        return Failure.NO_ANSWER
    if isinstance(exc, av.error.HTTPNotFoundError):
        return Failure.NOT_FOUND
    if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError | PermissionError):
        return Failure.DENIED
    if isinstance(exc, ConnectionRefusedError):
        return Failure.REFUSED
    if isinstance(exc, av.error.InvalidDataError | SourceLostError):  # SourceLostError: no video stream
        return Failure.NOT_VIDEO
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code in _ERRNOS:
        return _ERRNOS[code]
    text = str(getattr(exc, "strerror", None) or exc)
    return next((kind for line, kind in _STATUS_LINES.items() if line in text), Failure.OTHER)


class _Attempt(Generic[T]):
    """One open, running in its own daemon thread."""

    def __init__(self, close: Callable[[T], None]) -> None:
        self.lock = threading.Lock()
        self.finished = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None
        self.abandoned = False  # nobody waits for it: what it opens is closed
        self.wake: Callable[[], None] | None = None  # an event loop waiting for it
        self._close = close

    def run(self, fn: Callable[[], T]) -> None:
        value: T | None = None
        error: BaseException | None = None
        try:
            value = fn()
        except BaseException as exc:  # handed to whoever waits for it
            error = exc
        with self.lock:
            self.value, self.error = value, error
            self.finished.set()
            abandoned, wake = self.abandoned, self.wake
        if abandoned and value is not None:
            self._close(value)
        elif wake is not None:
            wake()

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value


class Opener(Generic[T]):
    """Runs one source's opens in daemon threads and waits for each at most a bound (see the module).

    ``close`` closes what an open given up on returns when it completes after all."""

    def __init__(self, name: str, close: Callable[[T], None]) -> None:
        self._name = name
        self._close = close
        self._lock = threading.Lock()
        self._last: _Attempt[T] | None = None

    def _begin(self, fn: Callable[[], T]) -> _Attempt[T]:
        with self._lock:
            last = self._last
            if last is not None:
                with last.lock:
                    if not last.finished.is_set():
                        last.abandoned = False  # still stuck: wait for it again rather than start another
                        return last
            attempt: _Attempt[T] = _Attempt(self._close)
            self._last = attempt
        threading.Thread(target=attempt.run, args=(fn,), name=f"open {self._name}", daemon=True).start()
        return attempt

    def _give_up(self, attempt: _Attempt[T], seconds: float) -> OpenTimeout | None:
        """Mark ``attempt`` abandoned unless it finished meanwhile (then None: take its outcome)."""
        with attempt.lock:
            if attempt.finished.is_set():
                return None
            attempt.abandoned, attempt.wake = True, None
        return OpenTimeout(seconds)

    def open(self, fn: Callable[[], T], timeout: float) -> T:
        """``fn()``, waiting at most ``timeout`` seconds for it (then :class:`OpenTimeout`)."""
        attempt = self._begin(fn)
        if not attempt.finished.wait(timeout) and (late := self._give_up(attempt, timeout)) is not None:
            raise late
        return attempt.outcome()

    async def open_async(self, fn: Callable[[], T], timeout: float) -> T:
        """:meth:`open` for the event loop: waits without holding any thread; cancelling it gives up on
        the open (what it opens later is closed)."""
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(done.set)

        attempt = self._begin(fn)
        with attempt.lock:
            if attempt.finished.is_set():
                done.set()
            else:
                attempt.wake = wake
        try:
            async with asyncio.timeout(timeout):
                await done.wait()
        except TimeoutError:
            if (late := self._give_up(attempt, timeout)) is not None:
                raise late from None
        except asyncio.CancelledError:
            if self._give_up(attempt, timeout) is None and attempt.value is not None:
                self._close(attempt.value)  # it opened just as the wait was cancelled: nobody takes it
            raise
        return attempt.outcome()


def open_all(
    calls: dict[str, Callable[[], T]], timeout: float, close: Callable[[T], None]
) -> dict[str, T | BaseException]:
    """Every call of ``calls`` at once, each in its own daemon thread, all waited for until one deadline:
    each key's result, or what it raised (:class:`OpenTimeout` when it did not finish in time)."""
    started: dict[str, tuple[Opener[T], _Attempt[T]]] = {}
    for key, fn in calls.items():
        opener = Opener[T](key, close)
        started[key] = (opener, opener._begin(fn))
    deadline = time.monotonic() + timeout
    outcomes: dict[str, T | BaseException] = {}
    for key, (opener, attempt) in started.items():
        if not attempt.finished.wait(max(0.0, deadline - time.monotonic())):
            late = opener._give_up(attempt, timeout)
            if late is not None:
                outcomes[key] = late
                continue
        try:
            outcomes[key] = attempt.outcome()
        except Exception as exc:
            outcomes[key] = exc
    return outcomes
