"""Opening a source: bounded in time (a FIFO nobody writes to), and why it failed, measured on real servers."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest
from conftest import RtspServer, free_port

from streamprep.sources.live import LiveOptions, open_input
from streamprep.sources.opening import Failure, Opener, OpenTimeout, failure_of


def opens_of(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"open {name}" and t.is_alive()]


def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.mp4"
    os.mkfifo(path)
    return path


def test_an_open_that_blocks_is_given_up_at_its_bound_and_closed_when_it_completes(tmp_path: Path) -> None:
    path = fifo(tmp_path)
    closed: list[BinaryIO] = []
    opener: Opener[BinaryIO] = Opener("fifo", closed.append)
    started = time.monotonic()
    with pytest.raises(OpenTimeout, match=r"did not open within 0\.5 s"):
        opener.open(lambda: path.open("rb"), 0.5)
    assert time.monotonic() - started < 2.0
    with pytest.raises(OpenTimeout):
        opener.open(lambda: path.open("rb"), 0.2)
    assert len(opens_of("fifo")) == 1, "the stuck open is waited for again, not joined by a second one"
    with path.open("wb"):  # a writer: the stuck open completes, and nobody takes what it opened
        for thread in opens_of("fifo"):
            thread.join(5)
    assert len(closed) == 1 and not opens_of("fifo")
    closed[0].close()


async def test_an_open_waited_for_on_the_loop_holds_no_thread_and_can_be_cancelled(tmp_path: Path) -> None:
    path = fifo(tmp_path)
    closed: list[BinaryIO] = []
    opener: Opener[BinaryIO] = Opener("loop", closed.append)
    with pytest.raises(OpenTimeout):
        await opener.open_async(lambda: path.open("rb"), 0.3)
    waiting = asyncio.create_task(opener.open_async(lambda: path.open("rb"), 60))
    await asyncio.sleep(0.1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiting, 2)
    assert [t.daemon for t in opens_of("loop")] == [True], "only the stuck open, in a daemon thread"
    writer = await asyncio.to_thread(path.open, "wb")
    for thread in opens_of("loop"):
        await asyncio.to_thread(thread.join, 5)
    writer.close()
    assert len(closed) == 1
    closed[0].close()


def failure_when_opening(url: str, timeout: float = 2.0) -> Failure:
    try:
        container, _ = open_input("probe", url, LiveOptions(open_timeout=timeout))
    except Exception as exc:
        return failure_of(exc)
    container.close()
    raise AssertionError(f"{url} opened")


def test_what_pyav_raises_is_classified_as_measured(rtsp_server: Callable[..., RtspServer]) -> None:
    guarded = rtsp_server("--pattern", "--size", "320x240", "--user", "admin", "--password", "letmein")
    assert failure_when_opening(f"rtsp://127.0.0.1:{free_port()}/x") is Failure.REFUSED
    assert failure_when_opening(guarded.url("admin:letmein@").replace("/stream", "/nope")) is Failure.NOT_FOUND
    assert failure_when_opening(guarded.url("admin:wrong@")) is Failure.DENIED
    assert failure_when_opening(guarded.url()) is Failure.DENIED
    assert failure_when_opening("/dev/video7") is Failure.NOT_FOUND
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        for url in (f"rtsp://127.0.0.1:{port}/x", f"http://127.0.0.1:{port}/x"):
            assert not failure_when_opening(url, 0.5).definite, f"{url}: no answer is not an answer"
    assert failure_of(OpenTimeout(1)) is Failure.NO_ANSWER
    assert [f for f in Failure if f.definite] == [Failure.NOT_FOUND, Failure.REFUSED, Failure.DENIED]
