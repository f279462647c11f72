"""Shared fixtures: paths, real photos, a real Mosquitto broker on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Self

import av
import cv2
import numpy as np
import pytest
from servers.rtsp import CLOCK_SERVER, RTSP_SERVER, SYSTEM_PYTHON, RtspServer, free_port

from streamprep.config.schema import Config
from streamprep.inference.model import LoadedModel, load_model
from streamprep.run.pipeline import Pipeline, RunReport
from streamprep.sinks.memory import MemorySink
from streamprep.values.events import EventOutput
from streamprep.values.frames import Result, SourceState, SourceStatus
from streamprep.values.published import VOLATILE_FIELDS, result_to_dict

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
RECORDINGS = ROOT / "recordings"
MODELS = ROOT / "streamprep" / "models"
SSD = MODELS / "ssd_mobilenet_v2_fpnlite_256_int8.onnx"
FASTESTDET = MODELS / "fastestdet_352.onnx"


def photo(name: str) -> np.ndarray:
    image = cv2.imread(str(DATA / f"{name}.png"), cv2.IMREAD_COLOR)
    assert image is not None, name
    return image


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Poll until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class Broker:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


def _mosquitto() -> str:
    path = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if path is None:
        reason = "mosquitto is not installed (apt-get install mosquitto; .ci/run does)"
        if os.environ.get("STREAMPREP_REQUIRE_SERVICES"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto broker listening on a free port of 127.0.0.1 only."""
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([_mosquitto(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        yield Broker(port, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _require_gst_rtsp() -> None:
    probe = (
        subprocess.run(
            [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
            capture_output=True,
        )
        if Path(SYSTEM_PYTHON).exists()
        else None
    )
    if probe is None or probe.returncode != 0:
        reason = "gst-rtsp-server is not installed (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 ...)"
        if os.environ.get("STREAMPREP_REQUIRE_SERVICES"):
            pytest.fail(reason)
        pytest.skip(reason)


def _rtsp_servers(script: Path = RTSP_SERVER) -> Iterator[Callable[..., RtspServer]]:
    _require_gst_rtsp()
    servers: list[RtspServer] = []

    def start(*args: str) -> RtspServer:
        server = RtspServer(free_port(), list(args), script=script)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def rtsp_server() -> Iterator[Callable[..., RtspServer]]:
    """Start real RTSP servers on free loopback ports: ``rtsp_server("--pattern")``."""
    yield from _rtsp_servers()


@pytest.fixture
def clock_server() -> Iterator[Callable[..., RtspServer]]:
    """Start real RTSP cameras that burn their wall-clock time into every frame (``clock_rtsp_server.py``):
    ``clock_server("--no-rtcp")``."""
    yield from _rtsp_servers(CLOCK_SERVER)


class ListSink(MemorySink):
    """streamprep's memory sink, plus a way for a test to wait for what it expects."""

    def __init__(self) -> None:
        super().__init__()
        self._changed: asyncio.Event | None = None

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def send(self, result: Result) -> None:
        await super().send(result)
        self._notify()

    async def send_status(self, status: SourceStatus) -> None:
        await super().send_status(status)
        self._notify()

    async def send_event(self, item: EventOutput) -> None:
        await super().send_event(item)
        self._notify()

    def of(self, source: str) -> list[Result]:
        return [r for r in self.results if r.source == source]

    def states(self, source: str) -> list[SourceState]:
        return [s.state for s in self.statuses if s.source == source]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> float:
        """Wait until ``predicate()`` holds (checked on every result or status); returns seconds waited."""
        self._changed = self._changed or asyncio.Event()
        start = time.monotonic()
        while not predicate():
            remaining = timeout - (time.monotonic() - start)
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return time.monotonic() - start


def replay(cfg: Config, models: LoadedModel | dict[str, LoadedModel] | None = None) -> tuple[list[Result], RunReport]:
    """Run the pipeline on ``cfg`` to its end (120 s at most), its results into a :class:`ListSink`."""
    sink = ListSink()
    loaded = models if models is not None else load_model(cfg.model)
    report = asyncio.run(asyncio.wait_for(Pipeline(cfg, loaded, [sink]).run(), 120))
    assert sink.closed
    return list(sink.results), report


def stable(results: list[Result]) -> list[dict[str, Any]]:
    """Results as published, without the fields that change from run to run (ids, times, batch sizes)."""
    rows = [result_to_dict(r, "test") for r in results]
    for row in rows:
        for key in VOLATILE_FIELDS:
            row.pop(key)
    return rows


class InBackground:
    """A client that runs as a task for the length of an ``async with``: entered once it has set
    ``subscribed`` (10 s at most), cancelled on leaving. Subclasses make ``subscribed`` and write ``_run``."""

    subscribed: asyncio.Event
    task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self.task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.subscribed.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def _run(self) -> None:
        raise NotImplementedError


@dataclass
class ManagedBroker:
    """A Mosquitto broker the test can stop and start again on the same port (same config, same state)."""

    port: int
    conf: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [_mosquitto(), "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        """A clean stop: Mosquitto writes its persistent sessions to disk."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Callable[..., ManagedBroker]]:
    """Make real Mosquitto brokers on free loopback ports: ``mosquitto("allow_anonymous true")``.

    Lines given are added to the listener's configuration; ``persistence true`` keeps sessions in tmp_path.
    """
    brokers: list[ManagedBroker] = []

    def make(*lines: str, listener: str = "") -> ManagedBroker:
        port = free_port()
        state = tmp_path / f"broker-{port}"
        state.mkdir()
        conf = state / "mosquitto.conf"
        body = [
            f"listener {port} 127.0.0.1",
            *([listener] if listener else []),
            *lines,
            f"persistence_location {state}/",
            "autosave_interval 1",
            # as root, Mosquitto would switch to its own user, which cannot read the test's files
            "user root" if os.geteuid() == 0 else "",
        ]
        conf.write_text("\n".join(body) + "\n")
        broker = ManagedBroker(port, conf)
        broker.start()
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.stop()


def make_clip(path: Path, segments: list[tuple[str, tuple[int, int], int]], fps: int = 10) -> Path:
    """An MPEG-TS file of H.264 segments, each a photo at a size for a number of frames, encoded separately
    and concatenated as bytes, as two recordings appended to one another are: every segment's timestamps
    start again, and its frame size may differ."""
    data = b""
    for name, (width, height), frames in segments:
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="mpegts") as out:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
            image = cv2.resize(photo(name), (width, height), interpolation=cv2.INTER_AREA)
            for i in range(frames):
                frame = av.VideoFrame.from_ndarray(image, format="bgr24")
                frame.pts = i
                frame.time_base = Fraction(1, fps)
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        data += buffer.getvalue()
    path.write_bytes(data)
    return path


@pytest.fixture
def small_disk(tmp_path: Path) -> Callable[[int], tuple[tuple[str, ...], Path]]:
    """``small_disk(kib)``: a command prefix that runs a program with a tmpfs of that size mounted on a
    directory (a full disk in the making), in a mount namespace of its own (the network is shared), and
    that directory."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to mount a small tmpfs for the test")

    def make(kib: int) -> tuple[tuple[str, ...], Path]:
        where = tmp_path / f"small-{kib}k"
        where.mkdir()
        script = f'mount -t tmpfs -o size={kib}k tmpfs "{where}" && exec "$@"'
        prefix = ("unshare", "--mount", "--map-root-user", "--propagation", "private", "sh", "-c", script, "sh")
        probe = subprocess.run([*prefix, "true"], capture_output=True, text=True)
        if probe.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs in a mount namespace here: {probe.stderr.strip()}")
        return prefix, where

    return make
