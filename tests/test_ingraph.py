"""The in-graph preprocessing option against the Python path."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from conftest import FASTESTDET, SSD, photo

from streamprep.config.schema import ModelConfig
from streamprep.inference.model import load_model
from streamprep.preprocess import ingraph
from streamprep.preprocess.kernels import Preprocessor
from streamprep.preprocess.spec import Color, DType, Layout, PreprocessSpec, Resize, Scaling
from streamprep.values.errors import ConfigError

SPECS = [
    PreprocessSpec(width=224, height=224, scaling=Scaling.MEAN_STD, color=Color.RGB, layout=Layout.NCHW),
    PreprocessSpec(width=320, height=256, scaling=Scaling.UNIT, color=Color.BGR, layout=Layout.NCHW),
    PreprocessSpec(width=320, height=320, scaling=Scaling.SYMMETRIC, color=Color.RGB, layout=Layout.NHWC),
    PreprocessSpec(width=300, height=300, scaling=Scaling.NONE, color=Color.RGB, layout=Layout.NHWC, dtype=DType.UINT8),
    PreprocessSpec(width=256, height=256, scaling=Scaling.NONE, color=Color.BGR, layout=Layout.NCHW),
    PreprocessSpec(width=320, height=320, scaling=Scaling.MEAN_STD, resize=Resize.LETTERBOX, dtype=DType.FLOAT16),
]


@pytest.mark.parametrize(
    "spec", SPECS, ids=lambda s: f"{s.scaling.value}-{s.color.value}-{s.layout.value}-{s.dtype.value}"
)
@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
def test_graph_preprocessing_matches_python_path(spec: PreprocessSpec, name: str) -> None:
    image = photo(name)
    python = Preprocessor(spec)
    want = python.new_batch(1)
    python.into(image, want[0])
    frames_pre = Preprocessor(ingraph.frames_spec(spec))
    frames = frames_pre.new_batch(1)
    frames_pre.into(image, frames[0])
    session = ort.InferenceSession(ingraph.preprocess_model(spec), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {ingraph.FRAMES_INPUT: frames})
    assert got.dtype == want.dtype and got.shape == want.shape
    tolerance = 2e-3 if spec.dtype is DType.FLOAT16 else 1e-5
    assert np.abs(got.astype(np.float64) - want.astype(np.float64)).max() <= tolerance


@pytest.mark.parametrize("path", [SSD, FASTESTDET], ids=["ssd", "fastestdet"])
def test_wrapped_model_finds_the_same_objects(path: object) -> None:
    plain = load_model(ModelConfig.model_validate({"path": path}))
    wrapped = load_model(ModelConfig.model_validate({"path": path, "preprocess": {"in_graph": True}}))
    assert wrapped.in_graph and wrapped.engine.info.inputs[0].name == ingraph.FRAMES_INPUT
    for name in ("astronaut", "chelsea", "coffee"):
        image = photo(name)
        found = []
        for model in (plain, wrapped):
            tensor = model.preprocessor.new_batch(model.max_batch)
            geo = model.preprocessor.into(image, tensor[0])
            outputs = model.engine.run(tensor if model.spec.batch else tensor[:1])
            detections = model.decoder.decode(outputs, 0, geo).detections
            assert detections is not None
            found.append(detections)
        assert [d.label for d in found[0]] == [d.label for d in found[1]]
        for a, b in zip(*found, strict=True):
            assert a.score == pytest.approx(b.score, abs=1e-3)
            assert a.box.x1 == pytest.approx(b.box.x1, abs=0.5)


def test_unsupported_in_graph_spec_is_refused() -> None:
    with pytest.raises(ConfigError, match="in_graph does not support scaling = per_image"):
        load_model(
            ModelConfig.model_validate({"path": FASTESTDET, "preprocess": {"in_graph": True, "scaling": "per_image"}})
        )
