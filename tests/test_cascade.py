"""Second models on crops of the first model's detections (``[[model.then]]``, streamprep.run.cascade), with the
bundled models on the bundled recordings: the SSD detector first, the ImageNet classifier (or the SSD again)
second. demo_720p.mp4 shows a person (0-4 s), a cat (4-8 s), then a cup on a dining table (8-12 s)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import pytest
from conftest import RECORDINGS, ListSink

import streamprep.run.cascade as cascade
from streamprep.config.schema import parse
from streamprep.inference.model import LoadedModel, load_model
from streamprep.regions.values import Region, RegionKind, box_region
from streamprep.run.pipeline import Pipeline, RunReport
from streamprep.values.frames import Detection, DropReason, Result
from streamprep.values.published import SCHEMA_FILE, result_to_dict
from streamprep.version import __version__

DEMO = RECORDINGS / "demo_720p.mp4"
CLASSIFIER = "mobilenet_v2_224_int8"
SSD = "ssd_mobilenet_v2_fpnlite_256_int8"
IMAGENET_CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def _run(
    data: dict[str, Any], prepare: Callable[[LoadedModel], None] = lambda _m: None, keep_frames: bool = False
) -> tuple[list[Result], RunReport]:
    cfg = parse({"sources": [str(DEMO)], "fps": 1} | data)
    model = load_model(cfg.model)
    prepare(model)
    sink = ListSink()
    report = asyncio.run(asyncio.wait_for(Pipeline(cfg, model, [sink], keep_frames=keep_frames).run(), 60))
    return list(sink.results), report


def _record_runs(model: LoadedModel, into: list[np.ndarray], fail: Callable[[int], bool] = lambda _n: False) -> None:
    """Record every tensor the second model is run on (a copy: the batch tensor is reused)."""
    engine = model.then[0].model.engine
    run = engine.run

    def recording(tensor: np.ndarray) -> Any:
        into.append(tensor.copy())
        if fail(len(into)):
            raise RuntimeError("injected inference failure")
        return run(tensor)

    engine.run = recording  # type: ignore[method-assign]


def _all(results: list[Result]) -> list[Detection]:
    return [d for r in results for d in r.detections or ()]


def test_cat_boxes_get_an_imagenet_cat_class_and_crops_batch_across_frames() -> None:
    runs: list[np.ndarray] = []
    then = {"path": CLASSIFIER, "batch": 8, "max_wait_ms": 200, "top_k": 3}
    results, report = _run({"model": {"batch": 4, "max_wait_ms": 200, "then": [then]}}, lambda m: _record_runs(m, runs))
    assert len(results) == 12 and not report.failures
    detections = _all(results)
    assert all(d.classes is not None and len(d.classes) == 3 for d in detections), "no on_labels: every box"
    cats = [d for d in detections if d.label == "cat"]
    assert len(cats) >= 4
    for cat in cats:
        assert cat.classes is not None
        assert cat.classes[0].model == CLASSIFIER
        assert cat.classes[0].label in IMAGENET_CATS, cat.classes
        assert [c.score for c in cat.classes] == sorted((c.score for c in cat.classes), reverse=True)
    cups = [d for d in detections if d.label == "cup"]
    assert cups and all(d.classes and d.classes[0].label not in IMAGENET_CATS for d in cups)
    crops = sum(len(t) for t in runs)
    assert crops == len(detections) == report.metrics.sources["demo_720p"].crops
    assert f"; {crops} crop(s) to second models" in report.snapshot.sources[0].summary()
    assert len(runs) < crops and max(len(t) for t in runs) > 1, "crops of several frames share a batch"
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    for r in results:
        validator.validate(result_to_dict(r, "test"))
    row = result_to_dict(next(r for r in results if any(d.label == "cat" for d in r.detections or ())), "t")
    assert set(row["detections"][0]["classes"][0]) == {"model", "label", "class_id", "score"}


def test_on_labels_and_min_score_choose_the_boxes() -> None:
    runs: list[np.ndarray] = []
    then = {"path": CLASSIFIER, "on_labels": ["cat", "cup"], "min_score": 0.9}
    results, _ = _run({"model": {"then": [then]}}, lambda m: _record_runs(m, runs))
    detections = _all(results)
    chosen = [d for d in detections if d.label in ("cat", "cup") and d.score >= 0.9]
    left = [d for d in detections if d not in chosen]
    assert chosen and any(d.label == "cup" for d in left) and any(d.label == "cat" for d in left)
    assert all(d.classes is not None for d in chosen)
    assert all(d.classes is None for d in left)
    assert sum(len(t) for t in runs) == len(chosen)
    assert "classes" not in result_to_dict(results[0], "t")["detections"][0], "a person: no second answer"


def test_a_detector_as_second_model_gives_nested_detections_in_source_pixels() -> None:
    then = {"path": SSD, "on_labels": ["cup"], "margin": 0.2, "score_threshold": 0.3}
    results, _ = _run({"model": {"then": [then]}})
    cups = [d for d in _all(results) if d.label == "cup"]
    assert len(cups) == 4
    assert all(d.detections is None for d in _all(results) if d.label != "cup")
    for cup in cups:
        assert cup.detections is not None and cup.classes is None
        region = box_region((cup.box.x1, cup.box.y1, cup.box.x2, cup.box.y2), 0.2, 1280, 720)
        assert region.x > 150, "the crop starts far from the frame's corner: crop and source pixels differ"
        for d in cup.detections:
            assert region.x - 1 <= d.box.x1 < d.box.x2 <= region.x2 + 1
            assert region.y - 1 <= d.box.y1 < d.box.y2 <= region.y2 + 1
        assert [d.score for d in cup.detections] == sorted((d.score for d in cup.detections), reverse=True)
        best = cup.detections[0]
        assert best.label == "cup" and best.track_id is None
        centre = lambda d: (d.box.x1 + d.box.x2) / 2  # noqa: E731
        assert abs(centre(best) - centre(cup)) < region.x / 2, "in crop pixels it would be off by region.x"
        assert _iou(best, cup) > 0.6, (best.box, cup.box)
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    for r in results:
        validator.validate(result_to_dict(r, "test"))
    row = result_to_dict(next(r for r in results if r.detections and r.detections[0].label == "cup"), "t")
    assert row["detections"][0]["detections"][0]["label"] == "cup" and len(row["detections"][0]["box"]) == 4


def _iou(a: Detection, b: Detection) -> float:
    w = min(a.box.x2, b.box.x2) - max(a.box.x1, b.box.x1)
    h = min(a.box.y2, b.box.y2) - max(a.box.y1, b.box.y1)
    inter = max(0.0, w) * max(0.0, h)
    area = lambda d: (d.box.x2 - d.box.x1) * (d.box.y2 - d.box.y1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_the_crop_tensor_is_what_preprocess_gives_for_the_crop_saved_as_an_image(tmp_path: Path) -> None:
    runs: list[np.ndarray] = []
    then = {"path": CLASSIFIER, "on_labels": ["cat"], "margin": 0.1}
    results, _ = _run({"model": {"then": [then]}}, lambda m: _record_runs(m, runs), keep_frames=True)
    cat_result = next(r for r in results if any(d.label == "cat" for d in r.detections or ()))
    frame = cat_result.frame
    assert frame is not None and frame.pixel_format == "yuv420p", "the I420 path is the one under test"
    cat = next(d for d in cat_result.detections or () if d.label == "cat")
    region = box_region((cat.box.x1, cat.box.y1, cat.box.x2, cat.box.y2), 0.1, frame.width, frame.height)
    bw, bh = cat.box.x2 - cat.box.x1, cat.box.y2 - cat.box.y1
    assert region.x <= max(0, cat.box.x1 - 0.1 * bw) and region.x2 >= min(frame.width - 1, cat.box.x2 + 0.1 * bw)
    assert region.y <= max(0, cat.box.y1 - 0.1 * bh) and region.y2 >= min(frame.height - 1, cat.box.y2 + 0.1 * bh)
    image = frame.to_bgr()[region.y : region.y2, region.x : region.x2]  # the whole frame converted, then cut
    cv2.imwrite(str(tmp_path / "crop.png"), image)
    out = tmp_path / "t.npy"
    command = ["preprocess", str(tmp_path / "crop.png"), "--model", CLASSIFIER, "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "streamprep", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    expected = np.load(out)
    first_cat = sum(1 for r in results[: results.index(cat_result)] for d in r.detections or () if d.label == "cat")
    got = runs[first_cat]  # batch 1: one run per crop, in the order of the results
    assert got.shape == expected.shape == (1, 224, 224, 3)
    assert np.array_equal(got, expected)


def test_a_failed_crop_fails_its_frame_against_its_own_source_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.mp4"
    shutil.copy(DEMO, bad)
    real_run = cascade._Stage.run

    def run(self: cascade._Stage, crops: list[cascade._Crop]) -> list[Any]:
        """Crops of source ``bad`` point past the frame's edge: cutting them fails (in the real code)."""
        past = Region(1280, 0, 64, 64, RegionKind.DETECTION)
        return real_run(
            self, [cascade._Crop(c.held, c.index, past) if c.held.frame.source == "bad" else c for c in crops]
        )

    monkeypatch.setattr(cascade._Stage, "run", run)
    cfg = {
        "sources": [str(DEMO), str(bad)],
        "model": {"batch": 2, "then": [{"path": CLASSIFIER, "on_labels": ["cat"]}]},
    }
    results, report = _run(cfg)
    good = [r for r in results if r.source == "demo_720p"]
    assert len(good) == 12, "the other source is unaffected"
    assert all(d.classes for d in _all(good) if d.label == "cat")
    assert report.metrics.sources["demo_720p"].drops[DropReason.FAILED] == 0
    counters = report.metrics.sources["bad"]
    assert counters.drops[DropReason.FAILED] >= 1, "its frames with a cat failed"
    assert counters.sampled == counters.processed + counters.dropped
    bad_results = [r for r in results if r.source == "bad"]
    assert bad_results, "its frames without a crop were delivered"
    assert not [d for d in _all(bad_results) if d.label == "cat"]
    # a live source would be restarted; a file that failed while still decoding ends there
    assert all(f.source == "bad" for f in report.failures)


def test_an_inference_error_fails_only_the_frames_with_crops_in_that_batch() -> None:
    runs: list[np.ndarray] = []
    cfg = {"model": {"then": [{"path": CLASSIFIER, "on_labels": ["cat"]}]}}
    results, report = _run(cfg, lambda m: _record_runs(m, runs, fail=lambda n: n == 1))
    first_cat = 4  # seconds 4-7 show the cat; one crop per run (batch 1)
    seqs = [r.seq for r in results]
    assert seqs[:first_cat] == list(range(first_cat)), "the frames before the cat were delivered"
    assert first_cat not in seqs, "the first cat frame failed"
    counters = report.metrics.sources["demo_720p"]
    assert counters.drops[DropReason.FAILED] == 1 and counters.sampled == counters.processed + counters.dropped
    if report.failures:  # the file was still being decoded: a failed frame ends its source, as in the first model
        assert [str(f) for f in report.failures] == [
            "source demo_720p: model mobilenet_v2_224_int8: internal error (a bug in streamprep "
            f"{__version__}, please report it): RuntimeError: injected inference failure"
        ]
    else:  # it had been decoded already: every other frame came out
        assert seqs == [s for s in range(12) if s != first_cat]


def test_frames_held_for_their_crops_are_counted_as_stopped_when_the_drain_deadline_passes() -> None:
    cfg = parse(
        {
            "sources": [str(DEMO)],
            "fps": 2,
            "drain_timeout_s": 0.5,
            "model": {"then": [{"path": CLASSIFIER, "on_labels": ["cat"]}]},
        }
    )
    model = load_model(cfg.model)
    engine = model.then[0].model.engine
    release = threading.Event()
    started = threading.Event()
    run = engine.run

    def stuck(tensor: np.ndarray) -> Any:
        started.set()
        release.wait(30)  # the second model hangs on the first cat
        return run(tensor)

    engine.run = stuck  # type: ignore[method-assign]
    sink = ListSink()

    async def main() -> RunReport:
        stop = asyncio.Event()
        pipeline = Pipeline(cfg, model, [sink])
        task = asyncio.create_task(pipeline.run(stop))
        await asyncio.to_thread(started.wait, 30)
        await sink.wait_for(lambda: len(sink.results) >= 8, 30, "the frames before the cat")
        stop.set()
        return await asyncio.wait_for(task, 30)

    try:
        report = asyncio.run(main())
    finally:
        release.set()
    assert report.cut_short
    assert [r.seq for r in sink.results] == list(range(8)), "nothing after the stuck cat frame came out"
    counters = report.metrics.sources["demo_720p"]
    assert counters.drops[DropReason.STOPPED] >= 1, "the held frames were counted"
    assert counters.sampled == counters.processed + counters.dropped
