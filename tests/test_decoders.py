"""The bundled detectors, through streamprep's preprocessing and decoders, on real photos."""

from pathlib import Path

import numpy as np
import pytest
from conftest import FASTESTDET, SSD, photo

from streamprep.config import ModelConfig
from streamprep.errors import ModelError
from streamprep.frames import Detection
from streamprep.model import LoadedModel, load_model

# (photo, label, a point that lies on the subject in the photo's pixels)
CASES = [
    ("astronaut", "person", (200, 250)),
    ("chelsea", "cat", (200, 150)),
    ("coffee", "cup", (300, 150)),
]


def detect(model: LoadedModel, name: str) -> tuple[Detection, ...]:
    image = photo(name)
    tensor = model.preprocessor.new_batch(model.max_batch)
    geometry = model.preprocessor.into(image, tensor[0])
    outputs = model.engine.run(tensor if model.spec.batch else tensor[:1])
    found = model.decoder.decode(outputs, 0, geometry).detections
    assert found is not None
    return found


@pytest.fixture(scope="module", params=[SSD, FASTESTDET], ids=["ssd", "fastestdet"])
def detector(request: pytest.FixtureRequest) -> LoadedModel:
    return load_model(ModelConfig(path=request.param, batch=2))


@pytest.mark.parametrize(("name", "label", "point"), CASES)
def test_detector_finds_subject_with_box_on_it(
    detector: LoadedModel, name: str, label: str, point: tuple[int, int]
) -> None:
    found = detect(detector, name)
    best = max((d for d in found if d.label == label), key=lambda d: d.score, default=None)
    assert best is not None, f"{label} not found in {name}: {found}"
    assert best.score >= 0.5
    x, y = point
    assert best.box.x1 <= x <= best.box.x2 and best.box.y1 <= y <= best.box.y2
    h, w = photo(name).shape[:2]
    assert 0 <= best.box.x1 < best.box.x2 <= w and 0 <= best.box.y1 < best.box.y2 <= h


def test_detections_are_sorted_and_above_threshold(detector: LoadedModel) -> None:
    found = detect(detector, "coffee")
    scores = [d.score for d in found]
    assert scores == sorted(scores, reverse=True)
    assert all(s >= 0.5 for s in scores)


def test_colour_order_matters_for_ssd() -> None:
    """Fed BGR instead of the RGB it was trained on, the SSD loses the cat (as its card says)."""
    right = load_model(ModelConfig(path=SSD))
    wrong = load_model(ModelConfig.model_validate({"path": SSD, "preprocess": {"color": "bgr"}}))
    assert any(d.label == "cat" for d in detect(right, "chelsea"))
    assert not any(d.label == "cat" and d.score >= 0.5 for d in detect(wrong, "chelsea"))


def test_raw_decoder_summarises_outputs() -> None:
    model = load_model(ModelConfig(path=FASTESTDET, decoder="raw"))
    image = photo("chelsea")
    tensor = model.preprocessor.new_batch(1)
    geometry = model.preprocessor.into(image, tensor[0])
    decoded = model.decoder.decode(model.engine.run(tensor), 0, geometry)
    assert decoded.outputs is not None
    (entry,) = decoded.outputs.values()
    assert entry["shape"] == [85, 22, 22]
    assert entry["min"] < entry["mean"] < entry["max"]
    assert "values" not in entry


def test_decoder_that_does_not_fit_the_outputs_is_refused() -> None:
    with pytest.raises(ModelError, match="ssd decoder expects 3 outputs"):
        load_model(ModelConfig(path=FASTESTDET, decoder="ssd"))


def test_wrong_labels_file_is_refused(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"c{i}" for i in range(10)))
    with pytest.raises(ModelError, match="80 classes but the labels list has 10"):
        load_model(ModelConfig(path=FASTESTDET, labels=labels))


def test_geometry_maps_boxes_back_for_every_photo_shape(detector: LoadedModel) -> None:
    for name, _, _ in CASES:
        image = photo(name)
        geo = detector.preprocessor.geometry(image.shape[1], image.shape[0])
        corners = np.array([[0.0, 0.0, detector.spec.width, detector.spec.height]])
        back = geo.boxes_to_source(corners)[0]
        np.testing.assert_allclose(back, [0, 0, image.shape[1], image.shape[0]], atol=1e-9)
