"""Starting the real Triton server (``triton_server.py``) from tests and benchmarks, on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from servers.rtsp import free_port

ROOT = Path(__file__).resolve().parents[2]
TRITON_SERVER = Path(__file__).resolve().parent / "triton_server.py"
TRITON_PYTHON = ROOT / ".venv-triton" / "bin" / "python"  # made by scripts/triton-venv.sh
START_TIMEOUT_S = 120.0


@dataclass
class TritonServer:
    """tritonserver (under pytriton) in a process group of its own; ``start`` again after ``kill`` reuses the
    same ports. ``args`` go to ``triton_server.py`` (``--model NAME=PATH:MAX_BATCH``, ``--vector NAME``, ...)."""

    args: list[str]
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    log: list[str] = field(default_factory=list)

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        command = [str(TRITON_PYTHON), str(TRITON_SERVER), "--http-port", str(self.http_port)]
        command += ["--grpc-port", str(self.grpc_port), *self.args]
        # a session of its own: pytriton's python, tritonserver and the model stubs are killed together
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        ready = threading.Event()
        threading.Thread(target=self._read, args=(self.process, ready), daemon=True).start()
        if not ready.wait(START_TIMEOUT_S) or self.process.poll() is not None:
            self.kill()
            tail = "\n".join(self.log[-20:])
            raise RuntimeError(f"Triton did not start within {START_TIMEOUT_S:.0f} s:\n{tail}")

    def _read(self, process: subprocess.Popen[str], ready: threading.Event) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.log.append(line.rstrip("\n"))
            if "STREAMPREP-TRITON-READY" in line:
                ready.set()
        ready.set()  # ended: start() sees the exit

    def freeze(self, frozen: bool = True) -> None:
        """SIGSTOP (or SIGCONT) every process of the server: it accepts connections and never answers."""
        assert self.process is not None
        for pid in group_members(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP if frozen else signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the whole server at once: as a crash or a pulled cable looks to the client."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        # tritonserver and the stubs belong to the same group: make sure none is left holding the ports
        deadline = time.monotonic() + 30
        while (left := group_members(process.pid)) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found
