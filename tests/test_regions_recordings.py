"""streamprep.regions on real 1080p recordings with a known answer (``recordings/regions_*``), with the bundled
SSD: small objects the whole-frame pass misses, found by tiles and by motion regions; an object cut by tile
borders reported once; a still object re-checked on time and carried in between; no model run on frames
where nothing moves; a lighting step that does not keep frames in motion."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from conftest import RECORDINGS, SSD

from streamprep.events.tracking import iou_matrix
from streamprep.inference.model import LoadedModel, load_model
from streamprep.inference.settings import ModelConfig
from streamprep.regions import (
    MotionDetector,
    MotionRegions,
    MotionSettings,
    MotionState,
    Region,
    RegionKind,
    RegionPlan,
    Reported,
    merge,
    nms,
    tile_plan,
)
from streamprep.regions.values import box_of
from streamprep.values.frames import Detection, Image

WALK = RECORDINGS / "regions_walk_1080p.mp4"
LIGHT = RECORDINGS / "regions_light_1080p.mp4"
BORDER = RECORDINGS / "regions_border_1080p.mp4"
TILE_FRAMES = (0, 30)  # two frames of the walk through every tile: 120 model runs
MOTION_STEP = 2  # the walk at 5 fps (its 10 fps, every other frame)


def truth(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.with_suffix(".json").read_text())
    return data


def decode(path: Path, keep: Sequence[int] | None = None) -> list[tuple[int, float, Image]]:
    """(index, pts seconds, BGR image) of the frames ``keep`` (all when None)."""
    out = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if keep is None or index in keep:
                assert frame.time is not None
                out.append((index, float(frame.time), frame.to_ndarray(format="bgr24")))
    return out


def infer(model: LoadedModel, image: Image, region: Region) -> tuple[Detection, ...]:
    """The model on one region at native resolution (the region as the preprocessor's region of interest)."""
    tensor = model.preprocessor.new_batch(1)
    geometry = model.preprocessor.into(image, tensor[0], region=region.roi)
    found = model.decoder.decode(model.engine.run(tensor[:1]), 0, geometry).detections
    assert found is not None
    return found


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    return float(iou_matrix(np.array([a], float), np.array([b], float))[0, 0])


def hits(detections: Sequence[Detection], objects: Sequence[dict[str, Any]], threshold: float = 0.3) -> int:
    """How many ground-truth objects a detection of their label matches with IoU >= ``threshold``."""
    return sum(
        any(d.label == o["label"] and iou(box_of(d), o["box"]) >= threshold for d in detections) for o in objects
    )


def whole_in_a_tile(box: Sequence[float], plan: RegionPlan) -> bool:
    return any(r.contains((box[0], box[1], box[2], box[3]), 1.0) for r in plan.regions)


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_model(ModelConfig(path=SSD))


@dataclass
class TiledFrame:
    index: int
    plan: RegionPlan
    per_region: list[tuple[Detection, ...]]
    merged: tuple[Detection, ...]
    full: tuple[Detection, ...]


@pytest.fixture(scope="module")
def tiled(model: LoadedModel) -> list[TiledFrame]:
    out = []
    for index, _, image in decode(WALK, TILE_FRAMES):
        plan = tile_plan(image.shape[1], image.shape[0], model.spec.width)
        per_region = [infer(model, image, r) for r in plan.regions]
        full = infer(model, image, Region(0, 0, image.shape[1], image.shape[0], RegionKind.FULL))
        out.append(TiledFrame(index, plan, per_region, merge(plan, per_region), full))
    return out


@dataclass
class MotionFrame:
    index: int
    pts: float
    plan: RegionPlan
    state: MotionState
    reported: Reported
    full: tuple[Detection, ...] | None


@pytest.fixture(scope="module")
def walked(model: LoadedModel) -> list[MotionFrame]:
    frames = decode(WALK, range(0, 60, MOTION_STEP))
    _, _, first = frames[0]
    state = MotionRegions(first.shape[1], first.shape[0], model.spec.width)
    out = []
    for k, (index, pts, image) in enumerate(frames):
        plan = state.plan(image, pts)
        found = merge(plan, [infer(model, image, r) for r in plan.regions])
        reported = state.update(plan, found, pts)
        assert state.last_motion is not None
        full = infer(model, image, Region(0, 0, image.shape[1], image.shape[0], RegionKind.FULL)) if k % 3 else None
        out.append(MotionFrame(index, pts, plan, state.last_motion.state, reported, full))
    return out


def test_tiles_find_the_small_objects_that_the_whole_frame_misses(tiled: list[TiledFrame]) -> None:
    frames = truth(WALK)["frames"]
    objects = sum(len(frames[f.index]["objects"]) for f in tiled)
    tiles = sum(hits(f.merged, frames[f.index]["objects"]) for f in tiled)
    full = sum(hits(f.full, frames[f.index]["objects"]) for f in tiled)
    assert objects == 8
    assert tiles / objects >= 0.9, [f.merged for f in tiled]
    assert full / objects <= 0.1, [f.full for f in tiled]


def test_objects_cut_by_tile_borders_are_reported_once(model: LoadedModel) -> None:
    """A 240-px person and a 200-px cup, each across a border between two tiles: no tile holds all of either,
    two or more tiles see pieces that NMS alone keeps apart, and the merged result has one box for each, on
    the object."""
    ((index, _, image),) = decode(BORDER, [5])  # half-way along the borders
    plan = tile_plan(image.shape[1], image.shape[0], model.spec.width)
    per_region = [infer(model, image, r) for r in plan.regions]
    merged = merge(plan, per_region)
    for o in truth(BORDER)["frames"][index]["objects"]:
        assert not whole_in_a_tile(o["box"], plan)

        def on_it(found: Sequence[Detection], o: dict[str, Any] = o) -> list[Detection]:
            return [d for d in found if d.label == o["label"] and iou(box_of(d), o["box"]) > 0.1]

        assert sum(bool(on_it(found)) for found in per_region) >= 2  # pieces from two tiles or more
        (one,) = on_it(merged)
        assert iou(box_of(one), o["box"]) >= 0.6
    naive = nms([d for found in per_region for d in found], 0.45)
    assert any(
        len([d for d in naive if d.label == o["label"] and iou(box_of(d), o["box"]) > 0.1]) > 1
        for o in truth(BORDER)["frames"][index]["objects"]
    )  # the clip needs more than NMS


def test_motion_regions_find_the_small_objects_with_far_fewer_model_runs(walked: list[MotionFrame]) -> None:
    frames = truth(WALK)["frames"]
    objects = sum(len(frames[f.index]["objects"]) for f in walked)
    reported = sum(hits(f.reported.found + f.reported.carried, frames[f.index]["objects"]) for f in walked)
    assert reported / objects >= 0.9
    checked = [f for f in walked if f.full is not None]
    full = sum(hits(f.full or (), frames[f.index]["objects"]) for f in checked)
    assert full / sum(len(frames[f.index]["objects"]) for f in checked) <= 0.1
    runs = sum(len(f.plan.regions) for f in walked)
    assert len(walked[0].plan.regions) == 60  # the first frame scans every tile ...
    assert runs - 60 <= 4 * (len(walked) - 1)  # ... the others look at a few regions at most


def test_frames_without_motion_run_no_model(walked: list[MotionFrame]) -> None:
    """Nothing moves for the first 1.5 s and nothing is due for a re-check before 2 s: no regions at all.
    Later, frames are only ever "in motion" while some object moved in the last 0.3 s."""
    frames = truth(WALK)["frames"]

    def moved_recently(index: int) -> bool:
        return any(o["moving"] for f in frames[max(0, index - 3) : index + 1] for o in f["objects"])

    quiet = [f for f in walked if 0 < f.pts < 1.5]
    assert len(quiet) == 7
    assert all(f.state is MotionState.STILL and f.plan.regions == () for f in quiet)
    assert all(len(f.reported.carried) == 4 and f.reported.found == () for f in quiet)  # all carried
    for f in walked[1:]:
        if not moved_recently(f.index):
            assert f.state is MotionState.STILL and all(r.kind is RegionKind.RECHECK for r in f.plan.regions)
    assert any(f.state is MotionState.MOTION for f in walked)


def test_a_still_object_is_rechecked_every_recheck_s_and_carried_in_between(walked: list[MotionFrame]) -> None:
    cup = truth(WALK)["frames"][0]["objects"][0]
    assert cup["label"] == "cup"

    def on_cup(detections: Sequence[Detection]) -> bool:
        return any(d.label == "cup" and iou(box_of(d), cup["box"]) >= 0.5 for d in detections)

    looked = [f.pts for f in walked if on_cup(f.reported.found)]
    carried = [f.pts for f in walked if on_cup(f.reported.carried)]
    assert looked == pytest.approx([0.0, 2.0, 4.0])  # the scan, then every recheck_s (2 s)
    assert sorted(looked + carried) == [f.pts for f in walked]  # reported on every frame, once
    for f in walked:
        if f.pts in (2.0, 4.0):
            assert any(r.kind is RegionKind.RECHECK and r.contains(tuple(cup["box"]), 1.0) for r in f.plan.regions)


def test_a_lighting_step_does_not_keep_frames_in_motion() -> None:
    """Noise and compression over a still scene never count as motion; the light steps up unevenly at 2.0 s
    and the detector is back to still at once. A detector without the global reset and the recent-picture
    test (background subtraction alone) stays "in motion" for longer than a second on the same clip."""
    light_at = truth(LIGHT)["light_at"]
    frames = decode(LIGHT)

    def motion_after_step(settings: MotionSettings) -> tuple[list[MotionState], float]:
        detector = MotionDetector(settings)
        states = [detector.update(image, pts).state for _, pts, image in frames]
        moving = [pts for (_, pts, _), s in zip(frames, states, strict=True) if s is MotionState.MOTION]
        return states, (max(moving) - light_at + 0.1 if moving else 0.0)

    states, seconds = motion_after_step(MotionSettings())
    assert states[0] is MotionState.FIRST
    assert all(s is MotionState.STILL for s, (_, pts, _) in zip(states[1:], frames[1:], strict=True) if pts < light_at)
    assert MotionState.GLOBAL in states and seconds < 1.0
    _, naive = motion_after_step(MotionSettings(global_fraction=1.0, window_s=100.0))
    assert naive > 1.0
