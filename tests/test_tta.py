"""Test-time augmentation: views in the same batch, boxes back in source pixels, answers fused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import DATA, FASTESTDET, MODELS, RECORDINGS, SSD, ListSink
from synthetic import bright_box_model, clip, sidecar

from streamprep.config.schema import ModelConfig, parse
from streamprep.inference.decoders.base import DecoderOptions
from streamprep.inference.model import load_model
from streamprep.inference.tta import View, Views, parse_views, weighted_box_fusion
from streamprep.preprocess.kernels import Preprocessor
from streamprep.preprocess.spec import Color, DType, Layout, PreprocessSpec, Resize, Scaling
from streamprep.run.pipeline import Pipeline
from streamprep.values.errors import ConfigError
from streamprep.values.frames import Box, Detection, Result

CLASSIFIER = MODELS / "mobilenet_v2_224_int8.onnx"


def run(cfg_data: dict) -> list[Result]:  # type: ignore[type-arg]
    cfg = parse(cfg_data)
    sink = ListSink()
    report = asyncio.run(asyncio.wait_for(Pipeline(cfg, load_model(cfg.model), [sink]).run(), 180))
    assert not report.failures
    return list(sink.results)


def test_views_are_parsed_and_bad_ones_named() -> None:
    assert parse_views(["hflip", "scale:0.83", "hflip+scale:1.2"]) == (
        View(hflip=True),
        View(scale=0.83),
        View(hflip=True, scale=1.2),
    )
    for bad in (["vflip"], ["scale:9"], ["hflip", "hflip"], ["scale:1"]):
        with pytest.raises(ValueError):
            parse_views(bad)
    with pytest.raises(ConfigError, match=r"model\.tta: unknown view 'vflip'"):
        parse({"model": {"tta": ["vflip"]}})


@pytest.mark.parametrize("resize", [Resize.STRETCH, Resize.LETTERBOX, Resize.SHORTER_CROP])
@pytest.mark.parametrize("layout", [Layout.NCHW, Layout.NHWC])
def test_flipped_view_is_the_mirrored_frame(resize: Resize, layout: Layout) -> None:
    """The flipped slot is the frame mirrored and preprocessed (pad and crop mirrored too)."""
    image = cv2.imread(str(DATA / "chelsea.png"))  # 451x300: odd padding for letterbox
    spec = PreprocessSpec(
        width=225, height=224, resize=resize, layout=layout, color=Color.RGB, scaling=Scaling.NONE, dtype=DType.UINT8
    )
    pre, views = Preprocessor(spec), Views(parse_views(["hflip"]))
    tensor = pre.new_batch(2)
    geo, flipped_geo = views.prepare(pre, tensor, 0, image)
    mirror = pre.new_batch(1)
    pre.into(cv2.flip(image, 1), mirror[0], geometry=flipped_geo)
    assert np.abs(tensor[1].astype(int) - mirror[0]).max() <= 1  # cv2.resize is mirror-symmetric to rounding
    assert flipped_geo.crop_x == geo.src_width - geo.crop_x - geo.crop_width


def test_tta_boxes_are_in_source_pixels(tmp_path: Path) -> None:
    """Every kind of view of an off-centre rectangle, fused, lands on the rectangle."""
    model = bright_box_model(tmp_path / "bright.onnx", static=320)
    sidecar(model, resize="letterbox")
    wide = clip(tmp_path / "wide.mp4", 640, 360, (60, 40, 200, 300), frames=2)
    for fusion in ("wbf", "nms"):
        results = run(
            {
                "sources": [str(wide)],
                "model": {
                    "path": str(model),
                    "batch": 2,
                    "tta": ["hflip", "scale:0.67", "hflip+scale:1.2"],
                    "tta_fusion": fusion,
                },
            }
        )
        assert len(results) == 2
        for r in results:
            (d,) = r.detections
            assert np.allclose((d.box.x1, d.box.y1, d.box.x2, d.box.y2), (60, 40, 200, 300), atol=4), (fusion, d)
            assert d.score == pytest.approx(1.0)


def test_views_disagreeing_are_fused_by_weight() -> None:
    a = Detection("cat", 15, 0.9, Box(100, 100, 200, 200))
    b = Detection("cat", 15, 0.6, Box(110, 100, 210, 200))
    c = Detection("dog", 16, 0.8, Box(100, 100, 200, 200))  # another class: not fused with the cats
    fused = weighted_box_fusion([a, b, c], views=2, iou=0.5, threshold=0.5, limit=10)
    cat = next(d for d in fused if d.label == "cat")
    assert cat.score == pytest.approx(0.75)
    assert cat.box.x1 == pytest.approx((0.9 * 100 + 0.6 * 110) / 1.5, abs=0.05)
    dog_alone = [d for d in fused if d.label == "dog"]
    assert dog_alone == []  # seen by one view of two: 0.8 * 1/2 = 0.4 < 0.5
    assert weighted_box_fusion([c], views=2, iou=0.5, threshold=0.3, limit=10)[0].score == pytest.approx(0.4)


def iou(a: Box, b: Box) -> float:
    w = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    h = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = w * h
    return inter / ((a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter)


@pytest.mark.parametrize("views", [["hflip"], ["hflip", "scale:0.83"]], ids=["hflip", "hflip+scale"])
def test_tta_on_the_demo_keeps_the_subjects_where_they_are(views: list[str]) -> None:
    demo = str(RECORDINGS / "demo_720p.mp4")
    plain = run({"sources": [demo], "fps": 1})
    augmented = run({"sources": [demo], "fps": 1, "model": {"tta": views, "batch": 2}})
    expected = {range(0, 4): "person", range(4, 8): "cat", range(8, 12): "cup"}
    assert len(plain) == len(augmented) == 12
    for p, a in zip(plain, augmented, strict=True):
        label = next(v for k, v in expected.items() if int(p.pts or 0) in k)
        mine = [d for d in a.detections or () if d.label == label]
        theirs = [d for d in p.detections or () if d.label == label]
        if not theirs or theirs[0].score < 0.7:
            continue  # a weak subject may fall under the threshold when the views' scores are averaged
        assert mine, f"{label} lost at {p.pts}"
        assert iou(mine[0].box, theirs[0].box) > 0.75


def test_classifier_probabilities_are_averaged() -> None:
    image = cv2.imread(str(DATA / "chelsea.png"))
    single = load_model(ModelConfig(path=CLASSIFIER, top_k=1000))
    both = load_model(ModelConfig(path=CLASSIFIER, top_k=1000, tta=("hflip",)))
    probs = []
    for frame in (image, cv2.flip(image, 1)):
        t = single.new_batch()
        geo = single.preprocessor.into(frame, t[0])
        decoded = single.decoder.decode(single.engine.run(t), 0, geo).classifications or ()
        probs.append({c.class_id: c.score for c in decoded})
    t = both.new_batch()
    geos = both.views.prepare(both.preprocessor, t, 0, image)
    fused = both.views.decode(both.decoder, both.engine.run(t), 0, geos).classifications or ()
    assert len(fused) == 1000
    for c in fused[:5]:
        assert c.score == pytest.approx((probs[0][c.class_id] + probs[1][c.class_id]) / 2, abs=0.02)


def test_a_fixed_batch_too_small_for_the_views_is_refused() -> None:
    message = "2 views per frame need a batch of 2; model fastestdet_352 has a fixed batch of 1"
    with pytest.raises(ConfigError, match=message):
        load_model(ModelConfig(path=FASTESTDET, tta=("hflip",)))


def test_raw_outputs_cannot_be_fused() -> None:
    with pytest.raises(ConfigError, match="not for raw outputs"):
        load_model(ModelConfig(path=SSD, decoder="raw", tta=("hflip",)))


def test_views_need_slots_in_the_batch_tensor() -> None:
    model = load_model(ModelConfig(path=SSD, batch=3, tta=("hflip", "scale:0.8")))
    assert model.max_batch == 3 and model.views.count == 3
    assert model.new_batch().shape[0] == 9
    assert model.views.options == DecoderOptions(labels=model.labels)
