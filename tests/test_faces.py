"""The YuNet face detector (models/yunet_n_320.onnx): its decoder, recognised from its outputs, and the probe."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from conftest import DATA, MODELS, RECORDINGS

from streamprep.config.schema import ModelConfig
from streamprep.inference.model import load_model
from streamprep.tools.probe import probe

YUNET = MODELS / "yunet_n_320.onnx"
FACE = (0.34, 0.14, 0.54, 0.37)  # the astronaut's face, as fractions (streamprep/probe_photos/manifest.json)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_the_astronauts_face_is_found_where_it_is() -> None:
    model = load_model(ModelConfig(path=YUNET))
    assert model.describe()["decoder"] == "yunet"
    image = cv2.imread(str(DATA / "astronaut.png"))
    tensor = model.new_batch()
    geo = model.preprocessor.into(image, tensor[0])
    (face,) = model.decoder.decode(model.engine.run(tensor), 0, geo).detections or ()
    assert face.label == "face" and face.score >= 0.9
    box = (face.box.x1 / 512, face.box.y1 / 512, face.box.x2 / 512, face.box.y2 / 512)
    assert iou(box, FACE) > 0.6


def test_a_bare_copy_is_recognised_and_named_face(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    copy = tmp_path / YUNET.name
    shutil.copy(YUNET, copy)
    with caplog.at_level(logging.WARNING):
        model = load_model(ModelConfig(path=copy))
    assert model.describe()["decoder"] == "yunet" and model.labels == ("face",)
    assert not [r for r in caplog.records if "no labels" in r.getMessage()]


def test_faces_on_the_demo_only_where_the_astronaut_is() -> None:
    demo = str(RECORDINGS / "demo_720p.mp4")
    proc = subprocess.run(
        [sys.executable, "-m", "streamprep", "run", demo, "--fps", "1", "--model", str(YUNET)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 12
    for r in rows:
        faces = [d for d in r["detections"] if d["label"] == "face"]
        if r["pts"] < 4:
            (face,) = faces
            x1, y1, x2, y2 = face["box"]
            assert 400 < (x1 + x2) / 2 < 800 and 50 < (y1 + y2) / 2 < 350, face  # her face, top centre
        else:
            assert faces == [], r["pts"]


def test_probe_finds_the_scaling_but_cannot_tell_a_face_detectors_colour_order(tmp_path: Path) -> None:
    copy = tmp_path / YUNET.name
    shutil.copy(YUNET, copy)
    verdict = probe(copy)
    assert not verdict.decided and verdict.reason.startswith("too close to call")
    assert verdict.ranked[0].candidate.scaling.value == "none"
    assert any(n.startswith("scaling: none") and n.endswith("clear") for n in verdict.notes)
    assert any(n.startswith("color: ") and "hardly depend" in n for n in verdict.notes)
