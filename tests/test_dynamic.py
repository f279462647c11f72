"""Models with dynamic input sizes: a size from metadata, sidecar or config, or the Ultralytics "rect" policy;
boxes in source pixels; refused with the key to set when no size is known.

The model is built by the tests (``synthetic.bright_box_model``): a real ONNX graph that accepts any
[N, 3, H, W] and "detects" the bright region of each image, so its answer is known exactly.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ListSink
from synthetic import bright_box_model, clip, sidecar

from streamprep.config.schema import ModelConfig, parse
from streamprep.inference.model import load_model
from streamprep.preprocess.kernels import Preprocessor
from streamprep.preprocess.spec import Color, Layout, PreprocessSpec, Resize, Scaling
from streamprep.run.pipeline import Pipeline
from streamprep.values.errors import ConfigError


def run(sources: list[Path], model: Path, batch: int = 1) -> list:  # type: ignore[type-arg]
    cfg = parse({"sources": [str(s) for s in sources], "model": {"path": str(model), "batch": batch}})
    sink = ListSink()
    report = asyncio.run(asyncio.wait_for(Pipeline(cfg, load_model(cfg.model), [sink]).run(), 120))
    assert not report.failures
    return list(sink.results)


def ultralytics_rect(image: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Ultralytics LetterBox(new_shape=size, auto=True, stride): fit, pad each side to the stride, centred."""
    h, w = image.shape[:2]
    r = min(size / h, size / w)
    nw, nh = round(w * r), round(h * r)
    dw, dh = (size - nw) % stride / 2, (size - nh) % stride / 2
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    return cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))


@pytest.mark.parametrize("size", [(1280, 720), (720, 1280), (640, 480), (1000, 700), (333, 555)])
def test_rect_is_ultralytics_letterbox_auto(size: tuple[int, int]) -> None:
    image = cv2.resize(cv2.imread(str(Path(__file__).parent / "data" / "coffee.png")), size)
    spec = PreprocessSpec(
        width=320,
        height=320,
        resize=Resize.RECT,
        stride=32,
        color=Color.BGR,
        scaling=Scaling.NONE,
        layout=Layout.NHWC,
        dtype="uint8",  # type: ignore[arg-type]
    )
    pre = Preprocessor(spec)
    tensor = pre.batch_for(pre.new_batch(1), [(size[0], size[1], None)])
    pre.into(image, tensor[0])
    expected = ultralytics_rect(image, 320, 32)
    assert tensor[0].shape == expected.shape
    assert np.array_equal(tensor[0], expected)


def test_a_batch_of_mixed_aspects_shares_the_largest_rect() -> None:
    spec = PreprocessSpec(width=320, height=320, resize=Resize.RECT, stride=32)
    pre = Preprocessor(spec)
    buffer = pre.new_batch(4)
    wide = pre.batch_for(buffer, [(1280, 720, None)])
    assert wide.shape == (1, 3, 192, 320)
    both = pre.batch_for(wide, [(1280, 720, None), (720, 1280, None)])  # from the view handed back
    assert both.shape == (2, 3, 320, 320)
    assert np.shares_memory(both, buffer)


def test_dynamic_model_rect_end_to_end_boxes_in_source_pixels(tmp_path: Path) -> None:
    model = bright_box_model(tmp_path / "dyn.onnx")
    sidecar(model, resize="rect", width=320, height=320, stride=32)
    wide = clip(tmp_path / "wide.mp4", 640, 360, (400, 100, 520, 260))
    tall = clip(tmp_path / "tall.mp4", 360, 640, (40, 300, 200, 420))
    for batch in (1, 2):
        results = run([wide, tall], model, batch)
        assert len(results) == 8
        for r in results:
            want = (400, 100, 520, 260) if r.source == "wide" else (40, 300, 200, 420)
            (d,) = r.detections
            got = (d.box.x1, d.box.y1, d.box.x2, d.box.y2)
            assert np.allclose(got, want, atol=4), (r.source, got, want)


def test_size_from_ultralytics_metadata_needs_nothing_else(tmp_path: Path) -> None:
    model = bright_box_model(tmp_path / "ultra.onnx", {"imgsz": "[320, 320]", "stride": "32", "names": "{0: 'bright'}"})
    loaded = load_model(ModelConfig(path=model, decoder="yolov8"))
    assert (loaded.spec.resize, loaded.spec.width, loaded.spec.stride) == (Resize.RECT, 320, 32)
    assert loaded.provenance["resize"] == "metadata"
    (r,) = run([clip(tmp_path / "wide.mp4", 640, 360, (400, 100, 520, 260), frames=1)], model)
    (d,) = r.detections
    assert np.allclose((d.box.x1, d.box.y1, d.box.x2, d.box.y2), (400, 100, 520, 260), atol=4)


def test_size_from_the_config_with_letterbox(tmp_path: Path) -> None:
    model = bright_box_model(tmp_path / "cfg.onnx")
    sidecar(model)
    cfg = ModelConfig.model_validate(
        {"path": model, "preprocess": {"width": 256, "height": 256, "resize": "letterbox"}}
    )
    loaded = load_model(cfg)
    assert (loaded.spec.width, loaded.spec.height, loaded.spec.resize) == (256, 256, Resize.LETTERBOX)


def test_without_a_size_it_is_refused_naming_the_keys(tmp_path: Path) -> None:
    model = bright_box_model(tmp_path / "nosize.onnx")
    with pytest.raises(ConfigError, match=r"dynamic width: set model.preprocess.width and height"):
        load_model(ModelConfig(path=model))
    proc = subprocess.run(
        [sys.executable, "-m", "streamprep", "inspect", str(model)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("streamprep: error:")]
    assert len(errors) == 1 and "model.preprocess.width" in errors[0] and "imgsz" in errors[0]


def test_rect_on_a_fixed_size_model_is_refused(tmp_path: Path) -> None:
    model = bright_box_model(tmp_path / "static.onnx", static=320)
    sidecar(model, resize="rect")
    with pytest.raises(ConfigError, match=r"resize = rect .* has a fixed size 320x320"):
        load_model(ModelConfig(path=model))
