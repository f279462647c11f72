"""The bundled detectors, through streamprep's preprocessing and decoders, on real photos."""

from pathlib import Path

import numpy as np
import pytest
from conftest import FASTESTDET, SSD, photo

from streamprep.config.schema import ModelConfig
from streamprep.inference.model import LoadedModel, load_model
from streamprep.values.errors import ModelError
from streamprep.values.frames import Detection

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


CLASSIFIER = Path(__file__).resolve().parent.parent / "streamprep" / "models" / "mobilenet_v2_224_int8.onnx"


def test_classifier_puts_a_cat_in_its_top_3_for_the_cat() -> None:
    model = load_model(ModelConfig(path=CLASSIFIER))
    image = photo("chelsea")
    tensor = model.preprocessor.new_batch(1)
    geometry = model.preprocessor.into(image, tensor[0])
    top = model.decoder.decode(model.engine.run(tensor), 0, geometry).classifications
    assert top is not None and len(top) == 5
    assert any("cat" in c.label or c.label == "tabby" for c in top[:3]), top
    assert [c.score for c in top] == sorted((c.score for c in top), reverse=True)


# --- YOLO layouts, with small ONNX models that emit known tensors --------------------------------------


def constant_model(tmp_path: Path, output: np.ndarray, size: int = 64, names: str | None = None) -> Path:
    """A real ONNX model: a [1,3,size,size] float input, and ``output`` (plus 0 × the input's mean, so
    the output depends on the input and ONNX Runtime cannot fold the graph away)."""
    from onnx import TensorProto, helper, numpy_helper

    const = numpy_helper.from_array(output.astype(np.float32), "known")
    zero = numpy_helper.from_array(np.zeros((1,), np.float32), "zero")
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["known", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "known_tensor",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))],
        [const, zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    if names is not None:
        helper.set_model_props(model, {"names": names})
    path = tmp_path / "yolo.onnx"
    path.write_bytes(model.SerializeToString())
    return path


NAMES = "{0: 'person', 1: 'cat', 2: 'cup'}"


def run_on(path: Path, image: np.ndarray, **cfg: object) -> tuple[Detection, ...]:
    model = load_model(ModelConfig.model_validate({"path": path, **cfg}))
    tensor = model.preprocessor.new_batch(1)
    geometry = model.preprocessor.into(image, tensor[0])
    found = model.decoder.decode(model.engine.run(tensor), 0, geometry).detections
    assert found is not None
    return found


def test_yolov5_layout_boxes_are_exact(tmp_path: Path) -> None:
    rows = np.zeros((1, 4, 8), np.float32)  # [N, boxes, 5 + 3 classes]
    rows[0, 0] = [16, 16, 8, 8, 0.9, 0.1, 1.0, 0.0]  # cat, score 0.9
    rows[0, 1] = [17, 16, 8, 8, 0.8, 0.1, 1.0, 0.0]  # overlaps the first: suppressed
    rows[0, 2] = [40, 32, 16, 32, 0.7, 0.9, 0.0, 0.0]  # person, score 0.63
    rows[0, 3] = [50, 50, 4, 4, 0.3, 0.0, 0.0, 1.0]  # cup below threshold
    path = constant_model(tmp_path, rows, names=NAMES)
    image = np.zeros((128, 256, 3), np.uint8)  # stretch: x scale 4, y scale 2
    found = run_on(path, image, decoder="auto")
    assert [(d.label, d.score) for d in found] == [("cat", 0.9), ("person", 0.63)]
    assert (found[0].box.x1, found[0].box.y1, found[0].box.x2, found[0].box.y2) == (48.0, 24.0, 80.0, 40.0)
    assert (found[1].box.x1, found[1].box.y1, found[1].box.x2, found[1].box.y2) == (128.0, 32.0, 192.0, 96.0)


def test_yolov8_layout_boxes_are_exact_and_class_aware(tmp_path: Path) -> None:
    cols = np.zeros((1, 7, 3), np.float32)  # [N, 4 + 3 classes, boxes]
    cols[0, :, 0] = [32, 32, 20, 20, 0.95, 0.0, 0.0]  # person
    cols[0, :, 1] = [33, 32, 20, 20, 0.0, 0.0, 0.85]  # same place, other class: kept (class-aware NMS)
    cols[0, :, 2] = [10, 10, 4, 4, 0.2, 0.0, 0.0]  # below threshold
    path = constant_model(tmp_path, cols, names=NAMES)
    image = np.zeros((64, 64, 3), np.uint8)
    found = run_on(path, image, decoder="yolov8")
    assert [(d.label, d.score) for d in found] == [("person", 0.95), ("cup", 0.85)]
    assert (found[0].box.x1, found[0].box.y1, found[0].box.x2, found[0].box.y2) == (22.0, 22.0, 42.0, 42.0)
    assert found[1].box.x1 == 23.0


def test_yolo_layout_is_recognised_from_shapes(tmp_path: Path) -> None:
    from streamprep.inference.decoders import recognise

    v8 = load_model(ModelConfig(path=constant_model(tmp_path, np.zeros((1, 7, 50), np.float32), names=NAMES)))
    assert type(v8.decoder).__name__ == "YoloDecoder" and v8.decoder.layout == "yolov8"  # type: ignore[attr-defined]
    assert recognise(v8.engine.info, 3) == "yolov8"
    v5 = load_model(ModelConfig(path=constant_model(tmp_path, np.zeros((1, 50, 8), np.float32), names=NAMES)))
    assert v5.decoder.layout == "yolov5"  # type: ignore[attr-defined]


def test_yolo_output_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    path = constant_model(tmp_path, np.zeros((1, 4), np.float32))
    with pytest.raises(ModelError, match="yolov5 decoder expects a first output of shape"):
        load_model(ModelConfig(path=path, decoder="yolov5"))
