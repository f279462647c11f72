"""Models by name: the bundled ones listed, and a name that is not there answered with the nearest ones."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import RECORDINGS

import streamprep
from streamprep.inference.model import bundled_models, nearest_models
from streamprep.values.errors import ModelError

DEMO = RECORDINGS / "demo_720p.mp4"
BUNDLED = ["fastestdet_352", "mobilenet_v2_224_int8", "ssd_mobilenet_v2_fpnlite_256_int8", "yunet_n_320"]


def streamprep_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamprep", *args], capture_output=True, text=True, timeout=120)


def test_inspect_list_shows_every_bundled_model_with_task_input_labels_and_licence() -> None:
    proc = streamprep_cli("inspect", "--list")
    assert proc.returncode == 0, proc.stderr
    header, *rows = proc.stdout.splitlines()
    assert header.split() == ["name", "task", "input", "labels", "licence"]
    assert [row.split()[0] for row in rows] == BUNDLED
    fastest = rows[0]
    assert "COCO detector, 80 classes" in fastest and "input.1 [1,3,352,352] float32" in fastest
    assert " 80 " in fastest and fastest.endswith("BSD-3-Clause (LICENSE-BSD-3-Clause-FastestDet.txt)")
    listed = json.loads(streamprep_cli("inspect", "--list", "--json").stdout)
    assert [m["name"] for m in listed] == BUNDLED
    assert {m["name"]: m["labels"] for m in listed}["mobilenet_v2_224_int8"] == 1000
    assert {m["name"]: m["licence"] for m in listed}["yunet_n_320"] == "Apache-2.0 (LICENSE-Apache-2.0-YuNet.txt)"
    assert listed == [m.describe() for m in bundled_models()]


@pytest.mark.parametrize(
    ("name", "near"),
    [
        ("fastestdet", ["fastestdet_352"]),  # a prefix
        ("yunet.onnx", ["yunet_n_320"]),
        ("fastdet_352", ["fastestdet_352"]),  # a typo
        ("ssd_mobilenet", ["ssd_mobilenet_v2_fpnlite_256_int8"]),
        ("resnet50", []),
    ],
)
def test_nearest_bundled_names(name: str, near: list[str]) -> None:
    assert nearest_models(name)[: len(near) or None] == near


def test_a_model_name_that_is_not_there_suggests_the_nearest_on_the_command_line() -> None:
    proc = streamprep_cli("run", str(DEMO), "--model", "fastestdet")
    assert proc.returncode == 4
    errors = [line for line in proc.stderr.splitlines() if line.startswith("streamprep: error:")]
    assert errors == [
        "streamprep: error: model fastestdet: no such file, nor a bundled model's name; did you mean "
        "fastestdet_352? (`streamprep inspect --list` lists them)"
    ], proc.stderr


def test_a_model_name_that_is_not_there_suggests_the_nearest_in_the_api() -> None:
    with pytest.raises(ModelError, match="did you mean fastestdet_352"):
        list(streamprep.stream(DEMO, model="fastestdet"))
