"""``streamprep probe``: the contract found from the model's answers on photos of known content."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import FASTESTDET, MODELS, SSD
from onnx import TensorProto, helper, numpy_helper

from streamprep.config.schema import ModelConfig
from streamprep.inference.model import load_model
from streamprep.tools.probe import PHOTOS, probe

CLASSIFIER = MODELS / "mobilenet_v2_224_int8.onnx"
BUNDLED = [FASTESTDET, SSD, CLASSIFIER]
IDS = ["fastestdet", "ssd", "classifier"]


def bare(model: Path, tmp_path: Path) -> Path:
    copy = tmp_path / model.name
    shutil.copy(model, copy)
    return copy


def declared(model: Path) -> tuple[str, str, str]:
    """What the bundled sidecar (written by hand from each model's documentation) declares."""
    pre = json.loads(model.with_suffix(".streamprep.json").read_text())["preprocess"]
    return pre["color"], pre["scaling"], pre["resize"]


@pytest.mark.parametrize("model", BUNDLED, ids=IDS)
def test_probe_finds_the_contract_of_a_bare_copy(model: Path, tmp_path: Path) -> None:
    verdict = probe(bare(model, tmp_path))
    assert verdict.decided, verdict.reason
    chosen = verdict.chosen
    assert (chosen.color.value, chosen.scaling.value, chosen.resize.value) == declared(model)
    assert verdict.margin >= 0.05
    assert "no labels" in verdict.matching or "ImageNet" in verdict.matching


@pytest.mark.parametrize("model", [FASTESTDET, SSD], ids=IDS[:2])
def test_probe_matches_by_label_name_when_the_model_has_labels(model: Path) -> None:
    verdict = probe(model)  # the bundled copy: labels beside it; its sidecar does not decide the candidates
    assert "label name" in verdict.matching
    assert verdict.decided
    assert (verdict.chosen.color.value, verdict.chosen.scaling.value, verdict.chosen.resize.value) == declared(model)


def test_probe_write_makes_the_model_declared(tmp_path: Path) -> None:
    model = bare(FASTESTDET, tmp_path)
    assert load_model(ModelConfig(path=model)).assumed == ("color", "scaling", "resize")
    proc = subprocess.run(
        [sys.executable, "-m", "streamprep", "probe", str(model), "--write"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("probe fastestdet_352: grid decoder")
    assert any(line.startswith("1    bgr    unit") for line in lines), proc.stdout
    assert any(line.startswith("margin: ") for line in lines)
    assert f"wrote {model.with_suffix('.streamprep.json')}" in proc.stdout
    written = json.loads(model.with_suffix(".streamprep.json").read_text())
    assert written == {
        "preprocess": {"color": "bgr", "scaling": "unit", "resize": "stretch"},
        "decoder": {"type": "grid"},
    }
    loaded = load_model(ModelConfig(path=model))
    assert loaded.assumed == ()
    assert loaded.spec == load_model(ModelConfig(path=FASTESTDET)).spec


def colour_blind_classifier(path: Path) -> Path:
    """A 1000-class classifier that sees only the mean of the three channels (so RGB and BGR tie exactly)
    and leans to "Egyptian cat" (so that it scores above the probe's floor)."""
    rng = np.random.default_rng(7)
    weights = rng.normal(0, 0.01, (64, 1000)).astype(np.float32)
    bias = np.zeros(1000, np.float32)
    bias[285] = 10.0
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["gray"], axes=[1], keepdims=1),
        helper.make_node("AveragePool", ["gray"], ["pooled"], kernel_shape=[28, 28], strides=[28, 28]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "colour_blind",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 1000])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))
    return path


def test_probe_refuses_candidates_that_tie(tmp_path: Path) -> None:
    model = colour_blind_classifier(tmp_path / "blind.onnx")
    verdict = probe(model)
    assert not verdict.decided
    assert verdict.reason.startswith("too close to call")
    assert verdict.margin == pytest.approx(0.0, abs=1e-6)
    proc = subprocess.run(
        [sys.executable, "-m", "streamprep", "probe", str(model), "--write"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 4
    assert "undecided: too close to call" in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("streamprep: error:")]
    assert len(errors) == 1 and "nothing written" in errors[0]
    assert not model.with_suffix(".streamprep.json").exists()


def test_probe_with_own_images(tmp_path: Path) -> None:
    images = tmp_path / "mine"
    images.mkdir()
    manifest = json.loads((PHOTOS / "manifest.json").read_text())
    keep = [p for p in manifest["photos"] if p["file"] in ("chelsea.jpg", "coffee.jpg")]
    for p in keep:
        shutil.copy(PHOTOS / p["file"], images / p["file"])
    (images / "manifest.json").write_text(json.dumps({"photos": keep}))
    verdict = probe(bare(SSD, tmp_path), images)
    assert verdict.photos == ("chelsea", "coffee")
    assert verdict.decided and verdict.chosen.color.value == "rgb"


def test_probe_without_a_manifest_is_one_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "streamprep", "probe", str(SSD), "--images", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "no manifest.json" in proc.stderr and "Traceback" not in proc.stderr
