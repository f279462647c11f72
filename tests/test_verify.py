"""``streamprep verify``: tensors made by independent recipes (written here with numpy and OpenCV only, as
each framework's documentation describes its preprocessing), and the cause verify names for each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from conftest import DATA
from onnx import TensorProto, helper

from streamprep.config.schema import ModelConfig
from streamprep.inference.model import load_model
from streamprep.preprocess.spec import PreprocessSpec
from streamprep.tools.verify import verify

PHOTO = DATA / "chelsea.png"  # 451x300: not square, so every geometry differs
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def bare_model(path: Path, size: int) -> Path:
    """A model that takes [1, 3, size, size] float32 and declares nothing else (its output is irrelevant)."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=0)],
        "bare",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def spec_of(model: Path) -> PreprocessSpec:
    return load_model(ModelConfig(path=model)).spec  # derived: rgb, unit, stretch, linear, nchw (all assumed)


def bgr() -> np.ndarray:
    image = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def torchvision_style(image: np.ndarray) -> np.ndarray:
    """Resize(256) (shorter side to 256, the longer one truncated), CenterCrop(224) (offsets rounded),
    ToTensor (RGB, /255, CHW), Normalize(ImageNet)."""
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    nh, nw = (256, int(256 * w / h)) if h <= w else (int(256 * h / w), 256)
    resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, left = round((nh - 224) / 2.0), round((nw - 224) / 2.0)
    x = resized[top : top + 224, left : left + 224].astype(np.float32) / 255.0
    return ((x - MEAN) / STD).transpose(2, 0, 1)[None]


def keras_style(image: np.ndarray) -> np.ndarray:
    """tf.image.resize to 224x224 (bilinear), mobilenet_v2.preprocess_input (x / 127.5 - 1), NHWC."""
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    x = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    return (x / 127.5 - 1.0)[None]


def ultralytics_style(image: np.ndarray, size: int = 320) -> np.ndarray:
    """LetterBox: scale to fit, pad with 114 split as round(d - 0.1) / round(d + 0.1); BGR→RGB, /255, CHW."""
    h, w = image.shape[:2]
    r = min(size / h, size / w)
    nw, nh = round(w * r), round(h * r)
    dw, dh = (size - nw) / 2, (size - nh) / 2
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    boxed = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return (boxed[:, :, ::-1].astype(np.float32) / 255.0).transpose(2, 0, 1)[None]


def plain(image: np.ndarray, size: int = 224, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """cv2.resize to size x size, RGB, HWC uint8 (the other recipes start from here)."""
    return cv2.cvtColor(cv2.resize(image, (size, size), interpolation=interpolation), cv2.COLOR_BGR2RGB)


def test_torchvision_recipe(tmp_path: Path) -> None:
    report = verify(spec_of(bare_model(tmp_path / "m.onnx", 224)), bgr(), torchvision_style(bgr()))
    assert not report.matches
    causes = "; ".join(report.best.what)
    assert "values: yours are ImageNet mean/std" in causes
    assert "geometry: yours is resize shorter side, centre crop 0.875" in causes
    assert len(report.best.what) == 2
    assert report.best.fields["resize"].value == "shorter_crop" and report.best.fields["scaling"].value == "mean_std"
    assert report.best.max_diff <= report.level  # shorter_crop is torchvision's Resize + CenterCrop exactly


def test_keras_recipe_in_the_other_layout(tmp_path: Path) -> None:
    report = verify(spec_of(bare_model(tmp_path / "m.onnx", 224)), bgr(), keras_style(bgr()))
    assert report.best.transposed
    assert report.best.what[0].startswith("layout: yours is NHWC, the model takes NCHW")
    assert "values: yours are [-1, 1]" in report.best.what[1] and len(report.best.what) == 2
    assert report.best.max_diff <= report.level
    assert report.sidecar() == {"preprocess": {"scaling": "symmetric"}}


def test_ultralytics_letterbox_recipe(tmp_path: Path) -> None:
    report = verify(spec_of(bare_model(tmp_path / "m.onnx", 320)), bgr(), ultralytics_style(bgr()))
    assert report.best.what == ("geometry: yours is letterbox, pad 114, centred, streamprep's is stretch",)
    assert report.best.max_diff <= report.level
    assert report.sidecar() == {"preprocess": {"resize": "letterbox", "pad_value": 114, "anchor": "center"}}


@pytest.mark.parametrize(
    ("recipe", "cause"),
    [
        (lambda im: plain(im)[:, :, ::-1] / np.float32(255), "channels swapped: yours are BGR"),
        (lambda im: plain(im).astype(np.float32), "values: yours are raw 0..255"),
        (lambda im: (plain(im) / np.float32(255) - MEAN) / STD, "values: yours are ImageNet mean/std, streamprep's"),
        (
            lambda im: ((plain(im) / np.float32(255) - MEAN) / STD - MEAN) / STD,
            "values: yours are ImageNet mean/std applied twice",
        ),
        (lambda im: plain(im, interpolation=cv2.INTER_AREA) / np.float32(255), "interpolation: yours is area"),
    ],
    ids=["bgr", "x255", "mean-std", "mean-std-twice", "area"],
)
def test_one_difference_is_named_and_fixed(recipe, cause: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    theirs = np.asarray(recipe(bgr()), np.float32).transpose(2, 0, 1)[None]
    report = verify(spec_of(bare_model(tmp_path / "m.onnx", 224)), bgr(), theirs)
    assert len(report.best.what) == 1 and report.best.what[0].startswith(cause), report.best.what
    assert report.best.max_diff <= 1e-4 * max(1.0, float(np.abs(theirs).max()))


def streamprep(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamprep", *args], capture_output=True, text=True, timeout=120)


def test_cli_reports_cause_and_fix(tmp_path: Path) -> None:
    model = bare_model(tmp_path / "m.onnx", 320)
    np.save(tmp_path / "theirs.npy", ultralytics_style(bgr()))
    proc = streamprep("verify", str(model), "--image", str(PHOTO), "--expect", str(tmp_path / "theirs.npy"))
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout.splitlines()
    assert out[1].startswith("before: max ")
    assert "  - geometry: yours is letterbox, pad 114, centred, streamprep's is stretch" in out
    assert any(line.startswith("after the fix: max ") and line.endswith("(a match)") for line in out)
    fix = '{"preprocess": {"resize": "letterbox", "pad_value": 114, "anchor": "center"}}'
    assert f"fix, in m.streamprep.json: {fix}" in out
    assert '  resize = "letterbox"' in out


def test_cli_match_exits_zero(tmp_path: Path) -> None:
    model = bare_model(tmp_path / "m.onnx", 224)
    assert streamprep("preprocess", str(PHOTO), "--model", str(model), "--out", str(tmp_path / "t.npy")).returncode == 0
    proc = streamprep("verify", str(model), "--image", str(PHOTO), "--expect", str(tmp_path / "t.npy"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].startswith("match: max difference 0")


def test_cli_wrong_size_is_one_clear_error(tmp_path: Path) -> None:
    model = bare_model(tmp_path / "m.onnx", 224)
    np.save(tmp_path / "t.npy", np.zeros((1, 3, 256, 256), np.float32))
    proc = streamprep("verify", str(model), "--image", str(PHOTO), "--expect", str(tmp_path / "t.npy"))
    assert proc.returncode == 2
    assert "has shape [1, 3, 256, 256]" in proc.stderr and "Traceback" not in proc.stderr
