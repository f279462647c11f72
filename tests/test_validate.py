"""`check` and `run` agree: the same validation, the same message, the same exit code."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import RECORDINGS, SSD, RtspServer, free_port

DEMO = RECORDINGS / "demo_720p.mp4"


def streamprep(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamprep", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [x for x in proc.stderr.splitlines() if x.startswith("streamprep: error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def two_input_model(tmp_path: Path) -> Path:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])],
        "two",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 3, 64, 64]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 3, 64, 64]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 3, 64, 64])],
    )
    path = tmp_path / "two.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(body)
    return path


@pytest.mark.parametrize(
    ("case", "code", "fragment"),
    [
        ("unset password_env", 2, "password_env: environment variable SP_TEST_UNSET_PASSWORD is not set"),
        ("missing password_file", 2, "password_file: {tmp}/nope: No such file or directory"),
        ("no user for the password", 2, "a password needs a user name: set username"),
        ("no sources", 2, "no sources"),
        ("two model inputs", 4, "{tmp}/two.onnx: it has 2 inputs (a, b)"),
        ("missing TLS file", 2, "output.mqtt.ca_file: {tmp}/ca.pem: no such file"),
        ("unwritable output directory", 5, "output file {tmp}/missing/r.jsonl: {tmp}/missing: no such directory"),
        ("over budget", 2, "limits.max_sources: 2 sources configured, at most 1 allowed"),
    ],
)
def test_check_refuses_what_run_refuses_with_the_same_line(tmp_path: Path, case: str, code: int, fragment: str) -> None:
    camera = 'url = "rtsp://viewer@127.0.0.1:9/stream"\nid = "door"\n'
    bodies = {
        "unset password_env": f'[[sources]]\n{camera}password_env = "SP_TEST_UNSET_PASSWORD"\n',
        "missing password_file": f'[[sources]]\n{camera}password_file = "{tmp_path}/nope"\n',
        "no user for the password": '[[sources]]\nurl = "rtsp://127.0.0.1:9/s"\npassword_env = "HOME"\n',
        "no sources": "fps = 5\n",
        "two model inputs": f'sources = ["{DEMO}"]\n[model]\npath = "{two_input_model(tmp_path)}"\n',
        "missing TLS file": f'sources = ["{DEMO}"]\n[output.mqtt]\nurl = "mqtts://127.0.0.1:9"\n'
        f'ca_file = "{tmp_path}/ca.pem"\n',
        "unwritable output directory": f'sources = ["{DEMO}"]\n[output]\nout = "{tmp_path}/missing/r.jsonl"\n',
        "over budget": f'sources = ["{DEMO}", "{DEMO}"]\n[limits]\nmax_sources = 1\n',
    }
    cfg = config(tmp_path, bodies[case])
    expected = fragment.format(tmp=tmp_path)
    checked = streamprep("check", "--config", str(cfg))
    ran = streamprep("run", "--config", str(cfg))
    assert checked.returncode == ran.returncode == code, checked.stderr + ran.stderr
    assert expected in error_line(checked)
    assert error_line(checked) == error_line(ran), "the same validation, the same words"
    assert "config ok" not in checked.stdout


def test_check_refuses_a_missing_camera_device_and_a_region_outside_a_file(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        f'[[sources]]\nurl = "/dev/video97"\nid = "desk"\n[[sources]]\nurl = "{DEMO}"\nid = "cut"\n'
        "roi = [1000, 0, 600, 720]\n",
    )
    checked = streamprep("check", "--config", str(cfg))
    assert checked.returncode == 3
    assert "source desk: /dev/video97: No such file or directory (is the camera plugged in?)" in error_line(checked)
    assert "problem: source cut: roi [1000, 0, 600, 720] (pixels) lies outside its 1280x720 frames" in checked.stdout


def test_check_passes_a_good_config_and_lists_what_it_checked(tmp_path: Path) -> None:
    cfg = config(tmp_path, f'sources = ["{DEMO}"]\n[model]\npath = "{SSD}"\n[output]\nout = "{tmp_path}/r.jsonl"\n')
    checked = streamprep("check", "--config", str(cfg))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines()[-1] == "config ok"
    assert "model default: ssd_mobilenet_v2_fpnlite_256_int8 ok (256x256 nhwc uint8, ssd decoder)" in checked.stdout
    assert "source demo_720p: file" in checked.stdout


def test_check_probes_cameras_and_fails_on_a_definite_answer(
    tmp_path: Path, rtsp_server: Callable[..., RtspServer]
) -> None:
    guarded = rtsp_server("--pattern", "--size", "320x240", "--user", "admin", "--password", "letmein")
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        cfg = config(
            tmp_path,
            f'[[sources]]\nurl = "rtsp://admin:hunter2@127.0.0.1:{free_port()}/x"\nid = "refused"\n'
            f'[[sources]]\nurl = "{guarded.url("admin:letmein@").replace("/stream", "/nope")}"\nid = "badpath"\n'
            f'[[sources]]\nurl = "{guarded.url("admin:wrongpass@")}"\nid = "badauth"\n'
            f'[[sources]]\nurl = "{guarded.url("admin:letmein@")}"\nid = "good"\n'
            f'[[sources]]\nurl = "rtsp://127.0.0.1:{silent.getsockname()[1]}/x"\nid = "silent"\n',
        )
        started = time.monotonic()
        checked = streamprep("check", "--config", str(cfg))
        took = time.monotonic() - started
        skipped = streamprep("check", "--config", str(cfg), "--no-probe-sources")
    assert checked.returncode == 3, checked.stderr
    assert error_line(checked).startswith("streamprep: error: source refused: cannot open rtsp://admin:***@127.0.0.1:")
    assert "Connection refused (set wait_for_source = true to keep trying)" in error_line(checked)
    assert "problem: source badpath: cannot open " in checked.stdout and "404 Not Found" in checked.stdout
    assert "problem: source badauth: cannot open " in checked.stdout and "401 Unauthorized" in checked.stdout
    assert "source good: answers, h264 320x240" in checked.stdout
    assert "warning: source silent: rtsp://127.0.0.1:" in checked.stdout, "no answer: a warning, not a problem"
    assert "problem: source silent" not in checked.stdout
    for secret in ("hunter2", "wrongpass", "letmein"):
        assert secret not in checked.stdout + checked.stderr
    assert took < 60, f"the cameras are probed at once, 3 s at most: {took:.1f} s"
    assert skipped.returncode == 0, skipped.stderr
    assert "answers" not in skipped.stdout and skipped.stdout.splitlines()[-1] == "config ok"


def test_check_warns_about_a_camera_that_does_not_answer_and_one_waited_for(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        cfg = config(
            tmp_path,
            f'[[sources]]\nurl = "rtsp://127.0.0.1:{silent.getsockname()[1]}/stream"\nid = "door"\n'
            f'[[sources]]\nurl = "rtsp://127.0.0.1:{free_port()}/x"\nid = "later"\nwait_for_source = true\n',
        )
        checked = streamprep("check", "--config", str(cfg))
        strict = streamprep("check", "--config", str(cfg), "--strict")
    assert checked.returncode == 0, checked.stderr
    assert "warning: source door: rtsp://127.0.0.1:" in checked.stdout
    assert "/stream does not answer: did not open within 3 s" in checked.stdout
    assert "warning: source later: rtsp://127.0.0.1:" in checked.stdout and "Connection refused" in checked.stdout
    assert strict.returncode == 2
    assert "--strict" in error_line(strict)


def test_check_with_a_fifo_nobody_writes_to_does_not_hang(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe.mp4"
    os.mkfifo(pipe)
    checked = streamprep("check", str(pipe), "--out", str(tmp_path / "r.jsonl"), timeout=60)
    assert checked.returncode == 3, checked.stderr
    assert f"source pipe: {pipe}: is a FIFO" in error_line(checked)


def test_source_arguments_replace_the_config_sources_and_say_so(tmp_path: Path) -> None:
    cfg = config(tmp_path, '[[sources]]\nurl = "rtsp://127.0.0.1:9/a"\nid = "a"\n[[sources]]\nurl = "x.mp4"\n')
    proc = streamprep("run", str(DEMO), "--config", str(cfg), "--fps", "1", "--out", str(tmp_path / "r.jsonl"))
    assert proc.returncode == 0, proc.stderr
    assert f"1 SOURCE argument(s) given: they replace the 2 [[sources]] of {cfg}" in proc.stderr
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 12


def test_a_camera_user_name_can_be_set_apart_from_the_url() -> None:
    from streamprep.config.schema import parse

    spec = parse(
        {"sources": [{"url": "rtsp://cam.local/s", "username": "viewer", "password_env": "SP_TEST_PW"}]}
    ).sources[0]
    os.environ["SP_TEST_PW"] = "p@ss:word"
    try:
        assert spec.resolved_url() == "rtsp://viewer:p%40ss%3Aword@cam.local/s"
    finally:
        del os.environ["SP_TEST_PW"]


def test_the_decoder_names_in_help_are_the_configs() -> None:
    from streamprep.cli._args import _parser
    from streamprep.inference.decoders.names import DECODERS

    run = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    (decoder,) = [a for a in run._actions if "--decoder" in a.option_strings]
    assert decoder.help is not None and set(decoder.help.split(", ")) == set(DECODERS)


def test_check_names_the_empty_password_files_the_installer_leaves(tmp_path: Path) -> None:
    creds = tmp_path / "etc"
    creds.mkdir()
    for name in ("door-password", "mqtt-password"):  # as scripts/install-service.sh creates them: 0 bytes
        (creds / name).write_bytes(b"")
    config = tmp_path / "config.toml"
    config.write_text(
        '[[sources]]\nid = "door"\nurl = "rtsp://viewer@192.0.2.10:554/stream1"\n'
        'password_credential = "door-password"\n\n'
        '[output.mqtt]\nurl = "mqtt://127.0.0.1:1883"\nusername = "edge-01"\n'
    )
    # the camera is an address of the documentation range: never probed (no traffic leaves this machine)
    proc = streamprep("check", "--no-probe-sources", "--config", str(config), "--credentials", str(creds))
    assert proc.returncode != 0, proc.stdout
    said = error_line(proc) + "\n" + proc.stdout
    assert f"source door: password_credential: {creds / 'door-password'} is empty" in said
    assert f"output.mqtt.password: {creds / 'mqtt-password'} is empty" in said
    (creds / "door-password").write_text("s3cret\n")
    (creds / "mqtt-password").write_text("other\n")
    filled = streamprep("check", "--no-probe-sources", "--config", str(config), "--credentials", str(creds))
    assert filled.returncode == 0, filled.stderr
    assert "empty" not in filled.stdout + filled.stderr and "s3cret" not in filled.stdout + filled.stderr


def test_an_empty_broker_password_without_a_user_is_a_warning_and_strict_refuses_it(tmp_path: Path) -> None:
    creds = tmp_path / "etc"
    creds.mkdir()
    (creds / "mqtt-password").write_bytes(b"")  # the unit loads it; an anonymous broker needs none
    config = tmp_path / "config.toml"
    config.write_text(f'[[sources]]\nurl = "{DEMO}"\n\n[output.mqtt]\nurl = "mqtt://127.0.0.1:1883"\n')
    lenient = streamprep("check", "--config", str(config), "--credentials", str(creds))
    assert lenient.returncode == 0, lenient.stderr
    warned = [line for line in lenient.stdout.splitlines() if "is empty" in line]
    assert warned == [
        f"warning: output.mqtt.password: {creds / 'mqtt-password'} is empty: read as no password "
        "(fill it in if one is needed)"
    ]
    strict = streamprep("check", "--config", str(config), "--credentials", str(creds), "--strict")
    assert strict.returncode == 2 and "mqtt-password is empty" in error_line(strict)


def test_run_says_each_model_warning_once_and_nothing_about_software_decoding(tmp_path: Path) -> None:
    bare = tmp_path / "mine.onnx"  # a user's own model: no sidecar, no labels
    bare.write_bytes((SSD.parent / "fastestdet_352.onnx").read_bytes())
    proc = streamprep("run", str(DEMO), "--model", str(bare), "--fps", "0.5", "--out", str(tmp_path / "out.jsonl"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len([x for x in lines if "preprocessing assumed" in x]) == 1, proc.stderr
    assert len([x for x in lines if "no labels" in x]) == 1, proc.stderr
    assert not [x for x in lines if "assumed, not declared:" in x], "no second, shorter copy"
    assert not [x for x in lines if "hardware decode" in x], "software decoding is the normal case: not a line"
