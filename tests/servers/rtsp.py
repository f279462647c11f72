"""Starting the real RTSP servers (``rtsp_server.py``, and ``clock_rtsp_server.py`` that burns its clock into
every frame) from tests and benchmarks, on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

RTSP_SERVER = Path(__file__).resolve().parent / "rtsp_server.py"
CLOCK_SERVER = Path(__file__).resolve().parent / "clock_rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # PyGObject is only visible to Debian's interpreter, not to a venv


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RtspServer:
    """gst-rtsp-server in a child process; ``start`` again after ``kill`` reuses the same port."""

    port: int
    args: list[str] = field(default_factory=list)
    process: subprocess.Popen[str] | None = None
    script: Path = RTSP_SERVER

    def url(self, credentials: str = "") -> str:
        return f"rtsp://{credentials}127.0.0.1:{self.port}/stream"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(self.script), "--port", str(self.port), *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # blocks until the server says it listens
        if line.strip() != "READY":
            self.kill()
            raise RuntimeError(f"RTSP server did not start: {line!r}")

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process has used so far."""
        assert self.process is not None
        with open(f"/proc/{self.process.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
