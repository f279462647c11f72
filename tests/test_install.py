"""streamprep outside its repository: the wheel in a fresh virtual environment, and the service as installed
by the README's steps (scripts/install-service.sh) reaching READY with systemd's credentials."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RECORDINGS, ROOT, ManagedBroker, free_port

DEMO = RECORDINGS / "demo_720p.mp4"


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    assert proc.returncode == 0, f"{shlex.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A wheel and an sdist built from this checkout, and a new virtual environment with the wheel in it
    (outside the repository: no source tree on the path)."""
    where = tmp_path_factory.mktemp("wheel")
    dist = where / "dist"
    run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(dist), str(ROOT)], cwd=where)
    venv = where / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=where)
    wheel = next(dist.glob("streamprep-*.whl"))
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)], cwd=where)
    yield dist, venv


@pytest.mark.slow
def test_the_wheel_carries_what_the_defaults_need(installed: tuple[Path, Path]) -> None:
    dist, _ = installed
    assert list(dist.glob("streamprep-*.tar.gz")), "an sdist builds"
    names = set(zipfile.ZipFile(next(dist.glob("streamprep-*.whl"))).namelist())
    for needed in (
        "streamprep/py.typed",
        "streamprep/models/ssd_mobilenet_v2_fpnlite_256_int8.onnx",
        "streamprep/models/ssd_mobilenet_v2_fpnlite_256_int8.labels.txt",
        "streamprep/models/ssd_mobilenet_v2_fpnlite_256_int8.streamprep.json",
        "streamprep/models/LICENSE-Apache-2.0.txt",
        "streamprep/models/README.md",
        "streamprep/schemas/result-3.json",
        "streamprep/schemas/result-2.json",
        "streamprep/schemas/event-1.json",
        "streamprep/probe_photos/manifest.json",
    ):
        assert needed in names, needed


@pytest.mark.slow
def test_the_installed_command_runs_the_demo_outside_the_repository(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, venv = installed
    exe = str(venv / "bin" / "streamprep")
    assert run([exe, "--version"], cwd=tmp_path).strip().startswith("streamprep 0.")
    rows = [json.loads(line) for line in run([exe, "run", str(DEMO), "--fps", "1"], cwd=tmp_path).splitlines()]
    assert len(rows) == 12 and {d["label"] for d in rows[0]["detections"]} >= {"person"}
    assert "ssd_mobilenet_v2_fpnlite_256_int8" in run([exe, "inspect"], cwd=tmp_path)
    assert run([exe, "check", str(DEMO)], cwd=tmp_path).splitlines()[-1] == "config ok"
    python = str(venv / "bin" / "python")
    code = (
        "import streamprep, sys; assert 'site-packages' in streamprep.__file__, streamprep.__file__; "
        f"print(sum(1 for r in streamprep.stream({str(DEMO)!r}, fps=1) if r.detections))"
    )
    assert run([python, "-c", code], cwd=tmp_path).strip() == "12"


def notify_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.5)
    return sock


@pytest.mark.slow
def test_the_service_as_the_readme_installs_it_reaches_ready(
    tmp_path: Path, mosquitto: object, rtsp_server: object
) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is needed (Debian's systemd package; .ci/run installs it)")
    root = tmp_path / "root"
    run([str(ROOT / "scripts" / "install-service.sh"), "--prefix", str(root)], cwd=tmp_path)
    etc = root / "etc" / "streamprep"
    unit = root / "etc" / "systemd" / "system" / "streamprep.service"
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr

    # the user's part: a broker with a password, a camera with one, no webcam here; the passwords in
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "edge-01", "br0ker"], check=True)
    passwd.chmod(0o600)
    broker: ManagedBroker = mosquitto("allow_anonymous false", f"password_file {passwd}")  # type: ignore[operator]
    camera = rtsp_server("--pattern", "--user", "viewer", "--password", "d00r")  # type: ignore[operator]
    config = tomllib.loads((etc / "config.toml").read_text())
    lines = (etc / "config.toml").read_text()
    lines = lines.replace("rtsp://viewer@192.0.2.10:554/stream1", camera.url("viewer@"))
    lines = lines.replace('url = "mqtts://broker.example.net:8883"', f'url = "mqtt://127.0.0.1:{broker.port}"')
    lines = lines.replace('ca_file = "/etc/streamprep/ca.crt"\n', "")
    lines = lines.replace('state_dir = "/var/lib/streamprep"', f'state_dir = "{tmp_path / "state"}"')
    lines = lines.replace('listen = "127.0.0.1:9108"', f'listen = "127.0.0.1:{free_port()}"')
    lines = lines.replace('socket = "/run/streamprep/status.sock"', f'socket = "{tmp_path / "status.sock"}"')
    desk = '[[sources]]\nid = "desk"\nurl = "/dev/video0"\noptions = { video_size = "1280x720", framerate = "30" }\n'
    assert desk in lines and [s["id"] for s in config["sources"]] == ["door", "desk"]
    (etc / "config.toml").write_text(lines.replace(desk, ""))
    (etc / "mqtt-password").write_text("br0ker\n")
    (etc / "door-password").write_text("d00r\n")

    exe = root / "opt" / "streamprep" / ".venv" / "bin" / "streamprep"
    checked = run([str(exe), "check", "--config", str(etc / "config.toml"), "--credentials", str(etc)], cwd=tmp_path)
    assert checked.splitlines()[-1] == "config ok"

    # what systemd does: ExecStart in WorkingDirectory, with its credentials, notify socket and directories
    service = {}
    for line in unit.read_text().splitlines():
        key, _, value = line.partition("=")
        service.setdefault(key, value)
    assert service["Type"] == "notify"
    sock = notify_socket(tmp_path / "notify")
    env = {
        "NOTIFY_SOCKET": str(tmp_path / "notify"),
        "CREDENTIALS_DIRECTORY": str(etc),
        "RUNTIME_DIRECTORY": str(tmp_path / "run"),
        "STATE_DIRECTORY": str(tmp_path / "state"),
        "PYTHONUNBUFFERED": "1",
        "MALLOC_ARENA_MAX": "2",
    }
    daemon = subprocess.Popen(
        shlex.split(service["ExecStart"]),
        cwd=service["WorkingDirectory"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    messages: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while not any("READY=1" in m for m in messages):
            assert time.monotonic() < deadline and daemon.poll() is None, f"no READY=1: {messages}"
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                continue
        deadline = time.monotonic() + 60
        while not any("1/1 sources online" in m for m in messages):  # the door camera, with its password
            assert time.monotonic() < deadline and daemon.poll() is None, f"the camera never came online: {messages}"
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                continue
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=60)
    finally:
        daemon.kill()
        sock.close()
    assert daemon.returncode == 0, stderr
    assert "d00r" not in stderr and "br0ker" not in stderr, "no password in the log"
