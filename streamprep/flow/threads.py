"""Worker threads for the work the event loop must never do itself.

The pipeline gives each kind of blocking work its own executor, sized from the machine, so one kind never
waits behind another (inference behind decoding, say): :func:`pool` for decoding, preprocessing and
inference, and :class:`WriterThread` for a sink's writes. A writer may block for as long as its output
does (a pipe nobody reads, a stalled disk), so its thread is a daemon thread that never holds up exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

log = logging.getLogger("streamprep")

P = ParamSpec("P")
T = TypeVar("T")


M_ARENA_MAX = -8  # glibc's mallopt parameter number


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (as ``MALLOC_ARENA_MAX`` would), before the threads start.

    glibc gives threads that allocate at the same time arenas of their own, up to eight per core, and keeps
    what they free. A daemon whose decode threads come and go (reconnects, reloads) and hand multi-megabyte
    frames to other threads then grows: the chaos soak measured +52 MB in 10 minutes with the default and
    a flat RSS with two arenas (``bench/RESULTS.md``). Returns False where there is no glibc (musl, macOS),
    or when the environment already says how many."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


def trim_malloc() -> bool:
    """Give the memory glibc's malloc holds free back to the system (``malloc_trim``); False without glibc.

    Frames are megabytes each and come and go by the thousand: without an occasional trim the process's RSS
    reports what malloc keeps for later, not what the daemon uses."""
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def pool(name: str, workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix=name)


class WriterThread(Executor):
    """One daemon thread that runs the calls submitted to it in order."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        self._calls.put((future, lambda: fn(*args, **kwargs), ()))
        return future

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            future, fn, _ = call
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Ends the thread after the calls already submitted; ``wait`` joins it (never use that when an
        output may be blocked)."""
        self._calls.put(None)
        if wait:
            self._thread.join()


def exit_if_threads_linger(code: int, grace: float = 1.0) -> None:
    """End the process with ``code`` at once if daemon threads are still running ``grace`` seconds on.

    When ``run`` is over, a live source's decode thread may still be inside FFmpeg (a camera that hangs is
    noticed only at its read timeout) and a writer may still be blocked on its output. Letting the
    interpreter tear itself down around them can crash it in native code (a decoder or FFmpeg's log
    callback calling into a half-finalized interpreter): the chaos soak saw a SIGSEGV after the summary
    once. Everything has been counted, written and logged by now, so the process flushes its streams and
    leaves without that teardown. Returns (and lets the interpreter exit normally) when they have ended."""
    me = threading.current_thread()
    deadline = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread.daemon and thread is not me:
            thread.join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in threading.enumerate() if t.daemon and t is not me and t.is_alive()]
    if not left:
        return
    log.debug("exiting without interpreter teardown; still running: %s", ", ".join(left))
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
