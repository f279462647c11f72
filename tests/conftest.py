"""Shared fixtures: paths, real photos, a real Mosquitto broker on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
RECORDINGS = ROOT / "recordings"
MODELS = ROOT / "models"
SSD = MODELS / "ssd_mobilenet_v2_fpnlite_256_int8.onnx"
FASTESTDET = MODELS / "fastestdet_352.onnx"


def photo(name: str) -> np.ndarray:
    image = cv2.imread(str(DATA / f"{name}.png"), cv2.IMREAD_COLOR)
    assert image is not None, name
    return image


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
