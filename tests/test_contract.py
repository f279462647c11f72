"""No silent guesses: a model that does not declare its preprocessing is named, once, with what to declare."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FASTESTDET, MODELS, RECORDINGS, SSD

from streamprep.config.schema import ModelConfig
from streamprep.inference.model import load_model
from streamprep.preprocess.spec import parse_overrides

CLASSIFIER = MODELS / "mobilenet_v2_224_int8.onnx"
DEMO = RECORDINGS / "demo_720p.mp4"


def bare(model: Path, tmp_path: Path) -> Path:
    """A copy of ``model`` without its sidecar and labels, as a user's own model arrives."""
    copy = tmp_path / model.name
    shutil.copy(model, copy)
    return copy


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    name = "streamprep.inference.model"
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == name]


@pytest.mark.parametrize(
    ("model", "assumed"),
    [(FASTESTDET, ("color", "scaling", "resize")), (SSD, ("color", "resize")), (CLASSIFIER, ("color", "resize"))],
    ids=["fastestdet", "ssd", "classifier"],
)
def test_a_bare_model_gets_one_warning_naming_what_was_assumed(
    model: Path, assumed: tuple[str, ...], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        loaded = load_model(ModelConfig(path=bare(model, tmp_path)))
    assert loaded.assumed == assumed
    found = [w for w in warnings(caplog) if "assumed" in w]
    assert len(found) == 1, warnings(caplog)
    for key in assumed:
        assert f"{key} = " in found[0]
    assert "scaling = " not in found[0] or "scaling" in assumed  # a uint8 input states its scaling itself
    assert model.with_suffix(".streamprep.json").name in found[0] and "[model.preprocess]" in found[0]
    # the sidecar the warning shows is valid and declares exactly the assumed fields
    shown = json.loads(found[0].split("beside the model (", 1)[1].split(") or in", 1)[0])
    assert set(parse_overrides(shown["preprocess"], "shown").values()) == set(assumed)


def test_a_bare_model_without_labels_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        load_model(ModelConfig(path=bare(FASTESTDET, tmp_path)))
    labels = [w for w in warnings(caplog) if "no labels" in w]
    assert len(labels) == 1 and "fastestdet_352.labels.txt" in labels[0]


@pytest.mark.parametrize("model", [FASTESTDET, SSD, CLASSIFIER], ids=["fastestdet", "ssd", "classifier"])
def test_a_model_with_its_sidecar_and_labels_is_quiet(model: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        loaded = load_model(ModelConfig(path=model))
    assert loaded.assumed == ()
    assert warnings(caplog) == []


def test_the_config_declares_as_well_as_a_sidecar(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    overrides = parse_overrides({"color": "bgr", "scaling": "unit", "resize": "stretch"}, "model.preprocess")
    with caplog.at_level(logging.WARNING):
        loaded = load_model(ModelConfig(path=bare(FASTESTDET, tmp_path), preprocess=overrides))
    assert loaded.assumed == ()
    assert not [w for w in warnings(caplog) if "assumed" in w]


def test_mean_std_without_its_values_is_assumed(tmp_path: Path) -> None:
    overrides = parse_overrides({"color": "bgr", "scaling": "mean_std", "resize": "stretch"}, "model.preprocess")
    loaded = load_model(ModelConfig(path=bare(FASTESTDET, tmp_path), preprocess=overrides))
    assert loaded.assumed == ("mean", "std")
    declared = parse_overrides(
        {"color": "bgr", "scaling": "mean_std", "resize": "stretch", "mean": "imagenet", "std": [0.2, 0.2, 0.2]},
        "model.preprocess",
    )
    assert load_model(ModelConfig(path=bare(FASTESTDET, tmp_path), preprocess=declared)).assumed == ()


def streamprep(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamprep", *args], capture_output=True, text=True, timeout=120)


def test_check_lists_assumptions_and_strict_refuses_them(tmp_path: Path) -> None:
    model = bare(FASTESTDET, tmp_path)
    lenient = streamprep("check", str(DEMO), "--model", str(model))
    assert lenient.returncode == 0, lenient.stderr
    assert "model default: assumed, not declared: color, scaling, resize" in lenient.stdout
    assert "no labels" in lenient.stdout
    strict = streamprep("check", str(DEMO), "--model", str(model), "--strict")
    assert strict.returncode == 2
    errors = [line for line in strict.stderr.splitlines() if line.startswith("streamprep: error:")]
    assert len(errors) == 1 and "color, scaling, resize" in errors[0]
    assert "Traceback" not in strict.stderr
    declared = streamprep("check", str(DEMO), "--model", str(FASTESTDET), "--strict")
    assert declared.returncode == 0, declared.stderr
    assert "assumed" not in declared.stdout


def test_inspect_marks_assumed_fields(tmp_path: Path) -> None:
    model = bare(FASTESTDET, tmp_path)
    text = streamprep("inspect", str(model)).stdout
    marked = {line.split()[0] for line in text.splitlines() if "ASSUMED" in line}
    assert marked == {"color", "scaling", "resize"}
    assert "labels    none" in text
    desc = json.loads(streamprep("inspect", str(model), "--json").stdout)
    assert desc["assumed"] == ["color", "scaling", "resize"]
    assert desc["preprocess"]["color"]["assumed"] and not desc["preprocess"]["width"]["assumed"]
    bundled = json.loads(streamprep("inspect", str(FASTESTDET), "--json").stdout)
    assert bundled["assumed"] == [] and bundled["labels"] == 80
