"""Every kind of result validates against the published JSON Schema."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest
from conftest import FASTESTDET, RECORDINGS

from streamprep.values.published import SCHEMA, SCHEMA_FILE

CLASSIFIER = FASTESTDET.parent / "mobilenet_v2_224_int8.onnx"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"] == SCHEMA
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize(
    ("args", "kind"),
    [
        ([], "detection"),
        (["--model", str(FASTESTDET)], "detection"),
        (["--model", str(CLASSIFIER)], "classification"),
        (["--model", str(FASTESTDET), "--decoder", "raw"], "raw"),
    ],
    ids=["ssd", "fastestdet", "classifier", "raw"],
)
def test_results_validate(validator: jsonschema.Draft202012Validator, args: list[str], kind: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "streamprep", "run", str(RECORDINGS / "vfr_720p.mp4"), "--fps", "1", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 10
    for row in rows:
        validator.validate(row)
        assert row["kind"] == kind


def test_schema_rejects_what_it_should(validator: jsonschema.Draft202012Validator) -> None:
    good = {
        "schema": SCHEMA,
        "id": "r/s/0",
        "device": "d",
        "source": "s",
        "seq": 0,
        "frame_index": 0,
        "pts": 0.0,
        "captured_at": 1.0,
        "capture_clock": "camera",
        "model": "m",
        "frame": {"width": 2, "height": 2},
        "kind": "detection",
        "regions": [[0, 0, 2, 2]],
        "detections": [{"label": "cup", "class_id": 42, "score": 0.9, "box": [0, 0, 1, 1], "track_id": None}],
        "batch_size": 1,
        "timings_ms": {"queue": 0, "preprocess": 0, "inference": 0, "age": 0, "total": 0},
    }
    validator.validate(good)
    validator.validate({**good, "regions": []})  # no model run on this frame
    carried = {**good["detections"][0], "carried": True}
    validator.validate({**good, "detections": [carried]})
    no_clock = {k: v for k, v in good.items() if k != "capture_clock"}
    no_regions = {k: v for k, v in good.items() if k != "regions"}
    for broken in (
        no_regions,
        {**good, "regions": [[0, 0, 2]]},
        {**good, "detections": [{**carried, "carried": False}]},  # absent when not carried
        {**good, "seq": -1},
        {**good, "kind": "classification"},
        {**good, "extra": 1},
        {**good, "capture_clock": "gps"},
        no_clock,
    ):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(broken)


def test_second_models_answers_on_a_detection_validate_and_are_checked(
    validator: jsonschema.Draft202012Validator,
) -> None:
    inner = {"label": "cat", "class_id": 16, "score": 0.9, "box": [1, 1, 9, 9], "track_id": None}
    classes = [{"model": "mobilenet_v2_224_int8", "label": "tabby", "class_id": 281, "score": 0.5}]
    detection = {**inner, "classes": classes, "detections": [inner], "outputs": {"y": {"shape": [1], "dtype": "f"}}}
    row = {
        "schema": SCHEMA,
        "id": "r/s/0",
        "device": "d",
        "source": "s",
        "seq": 0,
        "frame_index": 0,
        "pts": 0.0,
        "captured_at": 1.0,
        "capture_clock": "decode",
        "model": "m",
        "frame": {"width": 10, "height": 10},
        "kind": "detection",
        "regions": [[0, 0, 10, 10]],
        "detections": [detection],
        "batch_size": 1,
        "timings_ms": {"queue": 0, "preprocess": 0, "inference": 0, "age": 0, "total": 0},
    }
    validator.validate(row)
    for broken in (
        {**detection, "classes": [{k: v for k, v in classes[0].items() if k != "model"}]},
        {**detection, "detections": [{**inner, "extra": 1}]},
        {**detection, "detections": [{**inner, "box": [1, 1]}]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate({**row, "detections": [broken]})


def test_regions_and_carried_results_validate(validator: jsonschema.Draft202012Validator) -> None:
    """A motion run publishes frames without a model run (``regions: []``) and carried detections."""
    clip = RECORDINGS / "regions_walk_1080p.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "streamprep", "run", str(clip), "--fps", "2", "--regions", "motion"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    for row in rows:
        validator.validate(row)
    assert any(not row["regions"] for row in rows)
    assert any(d.get("carried") for row in rows for d in row["detections"])


def test_version_2_schema_is_still_published() -> None:
    old = json.loads((SCHEMA_FILE.parent / "result-2.json").read_text())
    assert old["$id"] == "streamprep.result/2" and SCHEMA == "streamprep.result/3"
