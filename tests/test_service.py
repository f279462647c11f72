"""Daemon mode as systemd and an operator see it: notifications, watchdog, reload, status, metrics, dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import RECORDINGS, free_port

DEMO = RECORDINGS / "demo_720p.mp4"
PAN = RECORDINGS / "pan_1080p.mp4"
VFR = RECORDINGS / "vfr_720p.mp4"
ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    """Poll a condition with a deadline (used for files and panes, which cannot signal)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


class NotifySocket:
    """What systemd does: a datagram socket whose path goes in NOTIFY_SOCKET; records every message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def wait_for(self, key: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, fields in self.messages:
                if key in fields:
                    return at
            self.pump(0.2)
        raise AssertionError(f"no {key} within {timeout} s: {self.messages}")

    def times(self, key: str) -> list[float]:
        return [at for at, fields in self.messages if key in fields]


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.sock.close()


def daemon(*args: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamprep", "run", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **kw,  # type: ignore[call-overload]
    )


def rows(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_ready_watchdog_and_sigterm(notify: NotifySocket, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
    proc = daemon(str(DEMO), "--realtime", "--fps", "5", "--out", str(out), env=env)
    try:
        ready = notify.wait_for("READY", 60)
        notify.pump(3.0)
        pings = [t for t in notify.times("WATCHDOG") if t > ready]
        assert len(pings) >= 4, "WATCHDOG=1 keeps arriving while frames flow"
        assert max(b - a for a, b in zip([ready, *pings], pings, strict=False)) < 1.0
        assert any("STATUS" in f and "sources online" in f["STATUS"] for _, f in notify.messages)
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert time.monotonic() - t0 < 10
    notify.pump(0.3)
    assert notify.times("STOPPING")
    seqs = [r["seq"] for r in rows(out)]
    assert seqs and seqs == list(range(len(seqs))), "every result in flight was delivered"


def test_a_long_drain_extends_systemds_stop_timeout_while_results_flow(notify: NotifySocket, tmp_path: Path) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    fast = threading.Event()
    done = threading.Event()

    def read_slowly() -> None:  # a consumer that keeps up only when told to
        while not done.is_set():
            with contextlib.suppress(BlockingIOError):
                os.read(reader, 65536 if fast.is_set() else 512)  # slowly: a 4 KiB pipe page every 0.8 s
            time.sleep(0.005 if fast.is_set() else 0.1)

    thread = threading.Thread(target=read_slowly, daemon=True)
    thread.start()
    cfg = tmp_path / "c.toml"
    cfg.write_text("drain_timeout_s = 40\n")
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
    proc = daemon(str(PAN), "--config", str(cfg), "--out", str(fifo), env=env)
    try:
        notify.wait_for("READY", 60)
        notify.pump(5.0)  # results pile up behind the slow reader
        proc.send_signal(signal.SIGTERM)
        stop = time.monotonic()
        notify.pump(4.0)
        extends = [(at, f) for at, f in notify.messages if "EXTEND_TIMEOUT_USEC" in f and at > stop]
        assert len(extends) >= 2, f"EXTEND_TIMEOUT_USEC while results still flow out: {notify.messages[-6:]}"
        assert all(0 < int(f["EXTEND_TIMEOUT_USEC"]) <= 45_000_000 for _, f in extends)
        assert any(f.get("STATUS", "").startswith("stopping:") for _, f in notify.messages)
        fast.set()
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        done.set()
        thread.join(5)
        os.close(reader)
    assert proc.returncode == 0, stderr
    assert "drain deadline" not in stderr, "the drain finished before its deadline"


def slow_model(tmp_path: Path) -> Path:
    """A real model whose inference takes seconds: chained 1536x1536 matrix products."""
    from onnx import TensorProto, helper, numpy_helper

    n = 1536
    weight = numpy_helper.from_array((np.eye(n) * 0.5).astype(np.float32), "w")
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["w", "m"], ["x0"]),
    ]
    for i in range(300):
        nodes.append(helper.make_node("MatMul", [f"x{i}", "w"], [f"x{i + 1}"]))
    nodes.append(helper.make_node("ReduceMax", ["x300"], ["out"], keepdims=1))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [weight],
    )
    path = tmp_path / "slow.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    return path


@pytest.mark.slow
def test_watchdog_stops_when_the_pipeline_hangs(notify: NotifySocket, tmp_path: Path) -> None:
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
    model = slow_model(tmp_path)
    args = (str(DEMO), "--realtime", "--model", str(model), "--decoder", "raw", "--out", str(tmp_path / "r.jsonl"))
    proc = daemon(*args, env=env)
    try:
        ready = notify.wait_for("READY", 60)
        notify.pump(4.0)
        late = [t for t in notify.times("WATCHDOG") if t > ready + 1.5]
        assert not late, "no WATCHDOG=1 while frames wait and no result comes out"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert "no progress" in stderr


def write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".new")
    tmp.write_text(text)
    tmp.replace(path)


def test_sighup_adds_and_removes_only_what_changed(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    cfg = tmp_path / "c.toml"

    def config(*sources: tuple[str, Path]) -> str:
        body = f'fps = 5\nrealtime = true\n[output]\nout = "{out}"\n'
        return body + "".join(f'[[sources]]\nid = "{sid}"\nurl = "{url}"\n' for sid, url in sources)

    write(cfg, config(("keep", DEMO), ("drop", VFR)))
    proc = daemon("--config", str(cfg))
    try:
        wait_until(lambda: {"keep", "drop"} <= {r["source"] for r in rows(out)}, 60, "both first sources")
        write(cfg, config(("keep", DEMO), ("add", VFR)))
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: sum(r["source"] == "add" for r in rows(out)) >= 5, 30, "the added source")
        at_reload = len(rows(out))
        wait_until(lambda: len(rows(out)) >= at_reload + 10, 30, "more results")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "started ['add']; stopped ['drop']" in stderr
    results = rows(out)
    keep = [r["seq"] for r in results if r["source"] == "keep"]
    assert keep == list(range(len(keep))), "the unchanged source ran on untouched"
    add = [r["seq"] for r in results if r["source"] == "add"]
    assert add == list(range(len(add))) and add
    first_add = next(i for i, r in enumerate(results) if r["source"] == "add")
    assert not [r for r in results[first_add + 3 :] if r["source"] == "drop"], "the removed source stopped"


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{want}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    raise AssertionError(f"{prefix!r} not in the metrics")


def test_prometheus_metrics_during_a_replay(tmp_path: Path) -> None:
    port = free_port()
    proc = daemon(str(DEMO), "--realtime", "--fps", "5", "--metrics", f"127.0.0.1:{port}", "--out", str(tmp_path / "r"))
    url = f"http://127.0.0.1:{port}/metrics"

    def scrape() -> str:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            return ""

    try:

        def processed() -> float:
            try:
                return metric(scrape(), "streamprep_frames_processed_total", source="demo_720p")
            except AssertionError:
                return 0.0

        wait_until(lambda: processed() >= 5, 60, "processed frames in the metrics")
        text = scrape()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert metric(text, "streamprep_frames_decoded_total", source="demo_720p") > 0
    assert metric(text, "streamprep_frames_sampled_total", source="demo_720p") > 0
    assert metric(text, "streamprep_frames_dropped_total", source="demo_720p") == 0
    for reason in ("queue", "stopped", "failed"):
        assert metric(text, "streamprep_frames_dropped_by_reason_total", reason=reason, source="demo_720p") == 0
    assert metric(text, "streamprep_results_sink_dropped_total", source="demo_720p") == 0
    processed = metric(text, "streamprep_frames_processed_total", source="demo_720p")
    assert metric(text, "streamprep_model_runs_total", source="demo_720p") == processed  # full: one a frame
    assert metric(text, "streamprep_source_online", source="demo_720p") == 1
    assert metric(text, "streamprep_inference_ms_count") > 0
    assert metric(text, "streamprep_preprocess_ms_sum") > 0
    assert metric(text, "streamprep_age_ms_count") > 0
    assert metric(text, "streamprep_batch_fill") >= 1
    assert metric(text, "streamprep_sink_connected", sink=str(tmp_path / "r")) == 1
    assert "streamprep_queue_depth{" in text and "streamprep_outbox_depth{" in text


def tmux_available() -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")


def pane(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout


def row_numbers(text: str, source: str) -> list[float]:
    for line in text.splitlines():
        if line.startswith(source):
            return [float(x) for x in line.split()[2:] if x.replace(".", "", 1).isdigit()]
    return []


def wait_for_output_rate(session: str, source: str, timeout: float) -> None:
    """Until the pane shows ``source``'s row with results coming out (out/s > 0)."""

    def shown() -> bool:
        numbers = row_numbers(pane(session), source)
        return len(numbers) >= 3 and numbers[2] > 0

    wait_until(shown, timeout, f"{source}'s row with out/s > 0")


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_dashboard_under_tmux(tmp_path: Path, size: tuple[int, int]) -> None:
    tmux_available()
    session = f"sp{os.getpid()}x{size[0]}"
    cmd = (
        f"{sys.executable} -m streamprep run --dashboard --realtime --fps 5 {DEMO} {VFR} --out {tmp_path / 'r'}"
        f" ; sleep 60"
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", str(size[0]), "-y", str(size[1]), cmd], check=True, cwd=ROOT
    )
    try:
        wait_for_output_rate(session, "demo_720p", 60)
        text = pane(session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    lines = text.splitlines()
    assert all(len(line) <= size[0] for line in lines)
    for needed in ("sources", "pipeline", "queue", "inference p50", "preprocess p50", "sinks", "recent errors"):
        assert needed in text, (needed, text)
    for source in ("demo_720p", "vfr_720p"):
        numbers = row_numbers(text, source)
        assert numbers[0] > 0 and numbers[2] > 0, (source, text)  # in/s and out/s
        assert "online" in next(line for line in lines if line.startswith(source))


def test_top_attaches_to_a_background_daemon(tmp_path: Path) -> None:
    tmux_available()
    sock = tmp_path / "status.sock"
    proc = daemon(str(DEMO), "--realtime", "--fps", "5", "--status-socket", str(sock), "--out", str(tmp_path / "r"))
    session = f"sptop{os.getpid()}"
    try:
        wait_until(sock.exists, 60, "the status socket")
        run_in_tmux(session, f"{sys.executable} -m streamprep top --socket {sock}", (80, 24))
        wait_for_output_rate(session, "demo_720p", 30)
        text = pane(session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert "streamprep top" in text and "online" in text and "inference p50" in text


def test_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "streamprep.service"
    text = (ROOT / "systemd" / "streamprep.service").read_text()
    # verify needs the ExecStart binary to exist: point it at this checkout's
    unit.write_text(
        text.replace("/opt/streamprep/.venv/bin/streamprep", str(Path(sys.executable).parent / "streamprep"))
    )
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    security = subprocess.run([analyze, "security", "--offline=true", str(unit)], capture_output=True, text=True)
    exposure = float(security.stdout.split("Overall exposure level for streamprep.service:")[1].split()[0])
    assert exposure <= 2.5, security.stdout


def run_in_tmux(session: str, cmd: str, size: tuple[int, int] = (100, 30)) -> None:
    subprocess.run(
        [
            "tmux",
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            str(size[0]),
            "-y",
            str(size[1]),
            f"{cmd}; echo EXIT=$?; sleep 60",
        ],
        check=True,
        cwd=ROOT,
    )


def test_the_dashboard_ends_on_the_final_state_then_the_summary(tmp_path: Path) -> None:
    tmux_available()
    session = f"spend{os.getpid()}"
    run_in_tmux(
        session, f"{sys.executable} -m streamprep run --dashboard --fps 5 {DEMO} --out {tmp_path / 'r'}", (80, 24)
    )
    try:
        wait_until(lambda: "EXIT=" in pane(session), 90, "the run to end")
        text = pane(session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    lines = [line for line in text.splitlines() if line.strip()]
    assert "EXIT=0" in text
    row = next(line for line in lines if line.startswith("demo_720p "))
    assert "finished" in row, "the last frame drawn shows the state at the end"
    summary = [i for i, line in enumerate(lines) if line.startswith("source demo_720p: finished, ")]
    assert summary and summary[0] > lines.index(row), "the counts come after the dashboard"
    assert "INFO" not in text, "no log line above the dashboard"


def test_replaying_files_in_a_terminal_shows_progress_and_not_in_a_pipe(tmp_path: Path) -> None:
    tmux_available()
    session = f"spbar{os.getpid()}"
    run_in_tmux(session, f"{sys.executable} -m streamprep run --fps 5 {DEMO} {VFR} --out {tmp_path / 'r'}")
    try:
        wait_until(lambda: "EXIT=" in pane(session), 90, "the run to end")
        text = pane(session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    assert "EXIT=0" in text
    bars = [line for line in text.splitlines() if "━" in line]
    assert any(b.startswith("demo_720p") and "12.0/12.0 s finished" in b and "fps" in b for b in bars), text
    assert any(b.startswith("vfr_720p") and "10.0/10.0 s finished" in b for b in bars), text
    piped = subprocess.run(
        [sys.executable, "-m", "streamprep", "run", "--fps", "1", str(DEMO), "--out", str(tmp_path / "p")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.returncode == 0 and "━" not in piped.stderr, "no progress bar when stderr is not a terminal"


def test_top_says_when_the_daemon_goes_away(tmp_path: Path) -> None:
    tmux_available()
    sock = tmp_path / "status.sock"
    proc = daemon(str(DEMO), "--realtime", "--fps", "5", "--status-socket", str(sock), "--out", str(tmp_path / "r"))
    session = f"spgone{os.getpid()}"
    try:
        wait_until(sock.exists, 60, "the status socket")
        run_in_tmux(session, f"{sys.executable} -m streamprep top --socket {sock}", (80, 24))
        wait_for_output_rate(session, "demo_720p", 30)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        wait_until(lambda: "EXIT=" in pane(session), 30, "top to end")
        text = pane(session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
        proc.kill()
    assert f"the daemon at {sock} went away" in text.replace("\n", "")
    assert "EXIT=0" in text


def test_a_failing_source_is_listed_once_in_the_recent_errors(tmp_path: Path) -> None:
    from streamprep.ops.service import read_status

    sock = tmp_path / "status.sock"
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'fps = 5\nrealtime = true\n[status]\nsocket = "{sock}"\n[[sources]]\nurl = "{DEMO}"\nid = "good"\n'
        f'[[sources]]\nurl = "{DEMO}"\nid = "bad"\nroi = [1000, 0, 600, 720]\n'
    )
    proc = daemon("--config", str(cfg), "--out", str(tmp_path / "r"))
    try:
        wait_until(sock.exists, 60, "the status socket")

        def bad_listed() -> bool:
            return any("bad" in line for line in asyncio.run(read_status(sock)).errors)

        wait_until(bad_listed, 60, "the failure in the recent errors")
        errors = asyncio.run(read_status(sock)).errors
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert len([line for line in errors if "source bad" in line or "bad:" in line]) == 1, errors
