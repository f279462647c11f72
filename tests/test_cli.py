"""The command line as a user meets it: real processes, real files, one clear line per problem."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import FASTESTDET, RECORDINGS, SSD, free_port

from streamprep.values.published import VOLATILE_FIELDS

DEMO = RECORDINGS / "demo_720p.mp4"


def streamprep(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamprep", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_clear_line(proc: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert proc.returncode == code, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("streamprep: error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0]
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    assert_one_clear_line(streamprep("run", str(missing)), 3, str(missing), "no such file")


def test_corrupt_file(tmp_path: Path) -> None:
    bad = tmp_path / "noise.mp4"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    assert_one_clear_line(streamprep("run", str(bad)), 3, str(bad), "corrupt or truncated")


@pytest.mark.parametrize("keep", [0.5, 0.002])
def test_truncated_file(tmp_path: Path, keep: float) -> None:
    cut = tmp_path / "cut.mp4"
    data = DEMO.read_bytes()
    cut.write_bytes(data[: int(len(data) * keep)])
    proc = streamprep("run", str(cut), "--out", str(tmp_path / "r.jsonl"))
    assert_one_clear_line(proc, 3, str(cut), "truncated")


def test_file_without_video_stream(tmp_path: Path) -> None:
    audio = tmp_path / "tone.wav"
    with av.open(str(audio), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    assert_one_clear_line(streamprep("run", str(audio)), 3, str(audio), "no video stream")


def test_model_that_is_not_a_model(tmp_path: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_text("this is not a model")
    assert_one_clear_line(streamprep("run", str(DEMO), "--model", str(fake)), 4, str(fake), "cannot be loaded")


def test_missing_model(tmp_path: Path) -> None:
    assert_one_clear_line(streamprep("run", str(DEMO), "--model", str(tmp_path / "m.onnx")), 4, "no such file")


def test_unreachable_broker() -> None:
    port = free_port()  # nothing listens there
    proc = streamprep("run", str(DEMO), "--mqtt", f"mqtt://user:hunter2@127.0.0.1:{port}", timeout=60)
    assert_one_clear_line(proc, 5, f"127.0.0.1:{port}", "unreachable")
    assert "hunter2" not in proc.stderr
    assert "user:***@" in proc.stderr


def test_bad_config_key_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("fps = 5\n[model]\nbatchsize = 4\n")
    assert_one_clear_line(streamprep("run", str(DEMO), "--config", str(cfg)), 2, "model.batchsize", "unknown key")


def test_bad_config_value_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[sources]]\nurl = "a.mp4"\nfps = -2\n')
    assert_one_clear_line(streamprep("run", "--config", str(cfg)), 2, "sources.0.fps", "greater than 0")


def test_bad_flag_value() -> None:
    assert_one_clear_line(streamprep("run", str(DEMO), "--batch", "0"), 2, "model.batch")


def test_no_sources() -> None:
    assert_one_clear_line(streamprep("run"), 2, "no sources")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = streamprep("--debug", "run", str(DEMO), "--model", str(tmp_path / "m.onnx"))
    assert proc.returncode == 4
    assert "Traceback" in proc.stderr


def test_one_bad_source_does_not_stop_the_others(tmp_path: Path) -> None:
    proc = streamprep("run", str(DEMO), str(tmp_path / "gone.mp4"), "--fps", "1")
    assert proc.returncode == 3
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 12
    assert {r["source"] for r in lines} == {"demo_720p"}
    assert "gone.mp4: no such file" in proc.stderr


def test_config_file_says_what_flags_say(tmp_path: Path) -> None:
    out_flags, out_cfg = tmp_path / "flags.jsonl", tmp_path / "cfg.jsonl"
    flags = streamprep("run", str(DEMO), "--fps", "1", "--model", str(FASTESTDET), "--out", str(out_flags))
    assert flags.returncode == 0, flags.stderr
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'fps = 1\nsources = ["{DEMO}"]\n[model]\npath = "{FASTESTDET}"\n[output]\nout = "{out_cfg}"\n')
    proc = streamprep("run", "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr

    def stable(path: Path) -> list[dict[str, object]]:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        for r in rows:
            for key in VOLATILE_FIELDS:
                r.pop(key)
        return rows

    assert len(stable(out_flags)) == 12
    assert stable(out_flags) == stable(out_cfg)


def test_sigterm_stops_cleanly_and_flushes(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamprep", "run", str(DEMO), str(DEMO), str(DEMO), "--out", str(out)],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 10_000):
        time.sleep(0.05)
    assert out.exists() and out.stat().st_size >= 10_000, "no results before SIGTERM"
    os.kill(proc.pid, signal.SIGTERM)
    t0 = time.monotonic()
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert time.monotonic() - t0 < 5.0
    assert "SIGTERM received" in stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]  # every line complete
    assert 0 < len(rows) < 3 * 360
    for source in {r["source"] for r in rows}:
        seqs = [r["seq"] for r in rows if r["source"] == source]
        assert seqs == list(range(len(seqs))), "in order, nothing missing before the stop"


def test_inspect_shows_each_bundled_contract() -> None:
    ssd = json.loads(streamprep("inspect", str(SSD), "--json").stdout)
    fd = json.loads(streamprep("inspect", str(FASTESTDET), "--json").stdout)
    pre_ssd = {k: v["value"] for k, v in ssd["preprocess"].items()}
    pre_fd = {k: v["value"] for k, v in fd["preprocess"].items()}
    assert (pre_ssd["width"], pre_ssd["layout"], pre_ssd["dtype"], pre_ssd["color"], pre_ssd["scaling"]) == (
        256,
        "nhwc",
        "uint8",
        "rgb",
        "none",
    )
    assert (pre_fd["width"], pre_fd["layout"], pre_fd["dtype"], pre_fd["color"], pre_fd["scaling"]) == (
        352,
        "nchw",
        "float32",
        "bgr",
        "unit",
    )
    assert ssd["preprocess"]["layout"]["from"] == "model input"
    assert fd["preprocess"]["color"]["from"] == "sidecar"
    assert ssd["decoder"] == "ssd" and fd["decoder"] == "grid"
    assert fd["max_batch"] == 1


def test_inspect_refuses_a_conflicting_override(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[model.preprocess]\nwidth = 320\n")
    assert_one_clear_line(
        streamprep("inspect", str(FASTESTDET), "--config", str(cfg)), 2, "width = 320", "contradicts", "352"
    )


@pytest.mark.parametrize("model", [SSD, FASTESTDET], ids=["ssd", "fastestdet"])
def test_demo_finds_person_cat_and_cup_where_they_are(model: Path) -> None:
    proc = streamprep("run", str(DEMO), "--fps", "1", "--model", str(model))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 12
    expected = {range(0, 4): "person", range(4, 8): "cat", range(8, 12): "cup"}
    for r in rows:
        label = next(v for k, v in expected.items() if int(r["pts"]) in k)
        hits = [d for d in r["detections"] if d["label"] == label]
        assert hits, f"no {label} at pts {r['pts']}: {r['detections']}"
        x1, y1, x2, y2 = hits[0]["box"]
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        assert 1280 * 0.2 < cx < 1280 * 0.8 and 720 * 0.15 < cy < 720 * 0.85, "box lies on the centred subject"


@pytest.mark.slow
def test_annotate_writes_the_sampled_frames_with_their_boxes(tmp_path: Path) -> None:
    import av

    out = tmp_path / "seen.mp4"
    proc = streamprep("run", str(DEMO), str(RECORDINGS / "vfr_720p.mp4"), "--fps", "2", "--annotate", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    for source in ("demo_720p", "vfr_720p"):
        video = tmp_path / f"seen-{source}.mp4"
        with av.open(str(video)) as container:
            frames = list(container.decode(video=0))
        mine = [r for r in rows if r["source"] == source]
        assert len(frames) == len(mine), "one video frame per sampled frame"
        times = [float(f.pts * f.time_base) for f in frames]
        assert times == pytest.approx([r["pts"] for r in mine], abs=0.02), "each at its presentation time"
        first = frames[0].to_ndarray(format="bgr24").astype(int)
        box = [round(v) for v in mine[0]["detections"][0]["box"]]
        edge = first[box[1] + 1 : box[3] - 1, box[0]]  # the box's left edge, drawn in a bright colour
        assert (edge.max(axis=1) - edge.min(axis=1) > 100).mean() > 0.8, "the box is drawn where it was found"


def test_annotate_into_a_missing_directory_is_refused(tmp_path: Path) -> None:
    proc = streamprep("run", str(DEMO), "--annotate", str(tmp_path / "no" / "x.mp4"))
    assert proc.returncode == 5
    assert "annotated video" in proc.stderr and "no such directory" in proc.stderr


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_frame_rate_that_is_no_number_is_named_so(value: str) -> None:
    assert_one_clear_line(streamprep("run", str(DEMO), "--fps", value), 2, "fps: must be a finite number")


def test_an_unreachable_broker_is_one_line_and_nothing_else(tmp_path: Path) -> None:
    proc = streamprep("run", str(DEMO), "--mqtt", f"mqtt://127.0.0.1:{free_port()}", timeout=60)
    assert proc.returncode == 5
    assert "Could not gracefully disconnect" not in proc.stderr
    assert not [line for line in proc.stderr.splitlines() if " WARNING " in line], proc.stderr


def test_a_reader_that_goes_away_is_no_error() -> None:
    # `true` reads nothing and is gone before the model has loaded: every write meets a closed pipe
    script = f"{sys.executable} -m streamprep inspect {SSD} | true; echo status=${{PIPESTATUS[0]}}"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "status=0"
    assert "error" not in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("wait_for_broker", [False, True])
def test_a_broker_that_never_answers_connect_is_one_line(tmp_path: Path, wait_for_broker: bool) -> None:
    """A listener that accepts the TCP connection and never says a word (no CONNACK): no asyncio traceback."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):  # closed at the end of the test
            while True:
                accepted.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    port = listener.getsockname()[1]
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'drain_timeout_s = 3\n[output.mqtt]\nurl = "mqtt://127.0.0.1:{port}"\nconnect_timeout_s = 1\n'
        f"wait_for_broker = {str(wait_for_broker).lower()}\n"
    )
    try:
        proc = streamprep("run", str(DEMO), "--fps", "2", "--config", str(cfg), timeout=60)
    finally:
        listener.close()
        for conn in accepted:
            conn.close()
    assert accepted, "streamprep connected to the listener"
    assert "Exception in callback" not in proc.stderr and "CancelledError" not in proc.stderr, proc.stderr
    if wait_for_broker:  # it waits, retries, and at the end says what was lost, once
        assert proc.returncode == 5, proc.stderr
        assert "Traceback" not in proc.stderr
        assert f"MQTT broker mqtt://127.0.0.1:{port} unreachable: timed out" in proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("streamprep: error:")]
        assert len(errors) == 1 and "lost" in errors[0], proc.stderr
    else:
        assert_one_clear_line(proc, 5, f"127.0.0.1:{port}", "unreachable: timed out")


HOSTILE = "a\nERROR forged line\x1b[2J\r\x07.mp4"  # a newline would forge a log line, ESC [ 2 J clears the screen


@pytest.mark.parametrize(
    ("command", "log_format"), [("check", "text"), ("run", "text"), ("run", "json"), ("run", "journal")]
)
def test_control_characters_in_a_path_are_escaped_everywhere(tmp_path: Path, command: str, log_format: str) -> None:
    proc = streamprep(command, str(tmp_path / HOSTILE), "--log-format", log_format, timeout=60)
    assert proc.returncode == 3, proc.stderr
    raw = [c for c in proc.stderr if c != "\n" and (ord(c) < 32 or 127 <= ord(c) < 160)]
    assert raw == [], f"no raw control character reaches the terminal: {raw}"
    lines = proc.stderr.splitlines()
    assert not [line for line in lines if line.startswith("ERROR forged")], "no forged line"
    errors = [line for line in lines if line.startswith("streamprep: error:")]
    assert len(errors) == 1 and "a\\nERROR forged line\\x1b[2J\\r\\x07.mp4: no such file" in errors[0], errors
    if command == "run":
        if log_format == "json":  # every log line is JSON; its message is escaped as the other formats' are
            lines = [json.loads(line)["msg"] for line in lines if line not in errors]
        logged = [line for line in lines if "\\nERROR forged line\\x1b[2J" in line and line not in errors]
        assert logged, "the path is logged too (escaped)"
        if log_format == "journal":
            assert all(line.startswith("<") for line in lines if line not in errors), "every line has a priority"


def test_an_error_naming_700_000_unknown_keys_is_one_short_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("".join(f"k{i} = 1\n" for i in range(20_000)) + f"{'x' * 100_000} = 1\n")
    proc = streamprep("check", "--config", str(cfg), timeout=120)
    assert_one_clear_line(proc, 2, f"{cfg}: k0: unknown key", "... and 19991 more")
    assert len(proc.stderr) < 4200, "the first ten problems, the count of the rest, and no more than 4000 characters"
