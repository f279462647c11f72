"""streamprep.regions without a model: tile plans, region geometry, cross-tile merging, the motion detector on
synthetic frames and the motion planner's rules (re-checks, carried detections, no run when nothing happens)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SSD

from streamprep.inference.model import load_model
from streamprep.inference.settings import ModelConfig
from streamprep.regions import (
    MotionDetector,
    MotionRegions,
    MotionResult,
    MotionSettings,
    MotionState,
    Region,
    RegionKind,
    RegionPlan,
    Tracked,
    crop,
    merge,
    plan_motion,
    tile_plan,
    to_source,
)
from streamprep.regions.planner import merge_regions
from streamprep.regions.values import box_region, square_around
from streamprep.values.colour import frame_to_bgr
from streamprep.values.frames import Box, Detection


def det(
    label: str, box: tuple[float, float, float, float], score: float = 0.9, class_id: int | None = None
) -> Detection:
    ids = {"person": 0, "cat": 16, "cup": 46}
    return Detection(label, ids[label] if class_id is None else class_id, score, Box(*box))


# --- tiles -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (1280, 720), (640, 480), (257, 1000), (256, 256)])
def test_tiles_cover_the_frame_inside_it_with_the_overlap_asked_for(width: int, height: int) -> None:
    plan = tile_plan(width, height, 256, tile_overlap=0.2)
    covered = np.zeros((height, width), bool)
    for r in plan.regions:
        assert r.kind is RegionKind.TILE
        assert r.width == r.height == 256  # native resolution: one source pixel per model pixel
        assert r.x >= 0 and r.x2 <= width and r.y >= 0 and r.y2 <= height  # never off the frame
        covered[r.y : r.y2, r.x : r.x2] = True
    assert covered.all()
    xs = sorted({r.x for r in plan.regions})
    ys = sorted({r.y for r in plan.regions})
    assert xs[-1] + 256 == width and ys[-1] + 256 == height  # the edge tiles end on the frame's edges
    for starts in (xs, ys):
        for a, b in itertools.pairwise(starts):
            assert 256 - (b - a) >= 0.2 * 256 - 2  # neighbours overlap by 20 % (to within the even rounding)


def test_tile_count_and_scale_for_1080p() -> None:
    assert len(tile_plan(1920, 1080, 256).regions) == 60  # 10 columns × 6 rows of 256²
    big = tile_plan(1920, 1080, 256, tile_scale=1.5)
    assert {r.width for r in big.regions} == {384} and len(big.regions) == 24


def test_a_frame_smaller_than_a_tile_gets_tiles_of_its_shorter_side_and_the_full_pass_comes_first() -> None:
    plan = tile_plan(640, 200, 256, full_frame=True)
    assert plan.regions[0] == Region(0, 0, 640, 200, RegionKind.FULL)
    tiles = plan.regions[1:]
    assert {(r.width, r.height) for r in tiles} == {(200, 200)}
    assert tiles[0].x == 0 and tiles[-1].x2 == 640


def test_bad_tile_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="tile_overlap"):
        tile_plan(1920, 1080, 256, tile_overlap=1.0)
    with pytest.raises(ValueError, match="frame size"):
        tile_plan(0, 1080, 256)


# --- region geometry and crops --------------------------------------------------------------------------------


def test_square_around_is_at_least_the_model_side_centred_and_clamped() -> None:
    r = square_around((900, 500, 1000, 620), 256, 1.5, 1920, 1080, RegionKind.MOTION)
    assert (r.width, r.height) == (256, 256) and r.contains((900, 500, 1000, 620), 1.0)
    assert abs((r.x + r.x2) / 2 - 950) <= 2 and abs((r.y + r.y2) / 2 - 560) <= 2
    corner = square_around((1900, 1060, 1920, 1080), 256, 1.5, 1920, 1080, RegionKind.MOTION)
    assert (corner.x2, corner.y2) == (1920, 1080) and corner.width == 256
    big = square_around((100, 100, 500, 400), 256, 1.5, 1920, 1080, RegionKind.MOTION)
    assert big.width == big.height == 600  # 1.5 × the longer side
    wide = square_around((0, 400, 1900, 600), 256, 1.5, 1920, 1080, RegionKind.MOTION)
    assert (wide.width, wide.height) == (1920, 1080)  # no square fits: as much of the frame as it takes


def test_overlapping_regions_merge_only_when_it_costs_little_resolution() -> None:
    a = Region(100, 100, 256, 256, RegionKind.MOTION)
    near = Region(140, 120, 256, 256, RegionKind.RECHECK)
    far = Region(300, 100, 256, 256, RegionKind.MOTION)
    (merged,) = merge_regions([a, near], 1920, 1080)
    assert merged.width == merged.height == 296 and merged.kind is RegionKind.MOTION
    assert len(merge_regions([a, far], 1920, 1080)) == 2  # 456 px would be 1.8× the side: kept apart


def test_crop_then_streamprep_preprocess_gives_the_model_tensor(tmp_path: Path) -> None:
    """A region cropped at native resolution, through the model's preprocessing, is exactly the tensor
    ``streamprep preprocess`` makes of that crop saved as a PNG; the region as the preprocessor's region of
    interest gives the same tensor and boxes in source pixels."""
    rng = np.random.default_rng(3)
    frame = cv2.resize(rng.integers(0, 256, (135, 240, 3), dtype=np.uint8), (1920, 1080))
    region = Region(724, 412, 256, 256, RegionKind.MOTION)
    piece = crop(frame, region)
    assert piece.shape == (256, 256, 3) and np.shares_memory(piece, frame)
    model = load_model(ModelConfig(path=SSD))
    ours = model.preprocessor.new_batch(1)
    geometry = model.preprocessor.into(np.ascontiguousarray(piece), ours[0])
    png, npy = tmp_path / "crop.png", tmp_path / "crop.npy"
    assert cv2.imwrite(str(png), piece)
    proc = subprocess.run(
        [sys.executable, "-m", "streamprep", "preprocess", str(png), "--model", str(SSD), "--out", str(npy)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(npy), ours)
    via_roi = model.preprocessor.new_batch(1)
    roi_geometry = model.preprocessor.into(frame, via_roi[0], region=region.roi)
    np.testing.assert_array_equal(via_roi, ours)
    # a box decoded on the crop, moved to the source, is where the region-of-interest geometry puts it
    box = np.array([[10.0, 20.0, 100.0, 200.0]])
    (moved,) = to_source((det("cup", tuple(geometry.boxes_to_source(box)[0])),), region)
    np.testing.assert_allclose(
        [moved.box.x1, moved.box.y1, moved.box.x2, moved.box.y2], roi_geometry.boxes_to_source(box)[0]
    )


def test_crop_outside_the_frame_is_refused() -> None:
    with pytest.raises(ValueError, match="outside the 640x480 frame"):
        crop(np.zeros((480, 640, 3), np.uint8), Region(500, 0, 256, 256, RegionKind.TILE))


# --- merging across tiles --------------------------------------------------------------------------------------

LEFT_TILE = Region(0, 0, 256, 256, RegionKind.TILE)
RIGHT_TILE = Region(204, 0, 256, 256, RegionKind.TILE)
TWO_TILES = RegionPlan(460, 256, (LEFT_TILE, RIGHT_TILE))


def test_a_box_split_across_two_tiles_is_reported_once_as_the_union() -> None:
    """A person from x 170 to 290: the left tile sees it cut at its right edge (256), the right tile cut at its
    left edge (204); neither is whole, they overlap less than NMS would need, and they fuse into one box."""
    left = det("person", (170, 60, 256, 180), 0.8)
    right = det("person", (204, 62, 290, 178), 0.9)
    (one,) = merge(TWO_TILES, [[left], [right]])
    assert (one.box.x1, one.box.y1, one.box.x2, one.box.y2) == (170, 60, 290, 180)
    assert one.score == 0.9 and one.label == "person"


def test_the_tile_that_saw_the_object_whole_wins_over_the_piece_of_it() -> None:
    whole = det("cup", (210, 50, 320, 140), 0.85)  # whole in the right tile
    piece = det("cup", (212, 52, 256, 138), 0.6)  # the left tile's view, cut at its right edge (IoU 0.38)
    (one,) = merge(TWO_TILES, [[piece], [whole]])
    assert one == whole


def test_different_classes_and_objects_apart_are_not_fused() -> None:
    person = det("person", (170, 60, 256, 180))
    cup_across = det("cup", (204, 60, 290, 180))
    lower = det("person", (204, 200, 290, 256))  # across the cut but not beside the piece: another object
    found = merge(TWO_TILES, [[person], [cup_across, lower]])
    assert len(found) == 3


def test_boxes_at_the_frame_border_are_not_truncated() -> None:
    """Two people standing close, each whole in one tile and touching only the frame's own border: kept."""
    a = det("person", (0, 10, 80, 150))
    b = det("person", (380, 10, 460, 150))
    assert len(merge(TWO_TILES, [[a], [b]])) == 2


def test_the_full_frame_pass_wins_over_the_tile_pieces_of_a_large_object() -> None:
    plan = RegionPlan(460, 256, (Region(0, 0, 460, 256, RegionKind.FULL), LEFT_TILE, RIGHT_TILE))
    whole = det("person", (100, 20, 400, 250), 0.7)
    pieces = [det("person", (102, 22, 256, 246), 0.9)], [det("person", (204, 24, 398, 248), 0.8)]
    (one,) = merge(plan, [[whole], *pieces])
    assert (one.box.x1, one.box.y1, one.box.x2, one.box.y2) == (100, 20, 400, 250) and one.score == 0.9


def test_duplicates_seen_whole_by_two_tiles_collapse_by_nms() -> None:
    a = det("cat", (215, 30, 245, 90), 0.7)
    b = det("cat", (216, 31, 246, 91), 0.8)
    (one,) = merge(TWO_TILES, [[a], [b]])
    assert one.score == 0.8


def test_a_box_cut_by_four_tiles_at_a_corner_fuses_into_one() -> None:
    tiles = tuple(Region(x, y, 256, 256, RegionKind.TILE) for y in (0, 204) for x in (0, 204))
    plan = RegionPlan(460, 460, tiles)
    pieces = [
        [det("person", (180, 170, 256, 256))],
        [det("person", (204, 172, 280, 256))],
        [det("person", (182, 204, 256, 290))],
        [det("person", (204, 204, 279, 288))],
    ]
    (one,) = merge(plan, pieces)
    assert (one.box.x1, one.box.y1, one.box.x2, one.box.y2) == (180, 170, 280, 290)


# --- motion detector on synthetic frames ----------------------------------------------------------------------


def scene(
    t: float, noise: np.random.Generator | None = None, gain: float = 1.0, square_at: int | None = None
) -> np.ndarray:
    """A 1280×720 textured frame, optionally with sensor noise, a light gain and a 60-px dark square."""
    base = cv2.resize(np.random.default_rng(1).integers(60, 200, (45, 80, 3), dtype=np.uint8), (1280, 720))
    frame = base.astype(np.float32) * gain
    if square_at is not None:
        frame[300:360, square_at : square_at + 60] = (20, 30, 40)
    if noise is not None:
        frame += noise.normal(0, 4.0, frame.shape[:2])[..., None]
    return np.clip(frame, 0, 255).astype(np.uint8)


def test_sensor_noise_alone_is_not_motion_and_a_moving_object_is() -> None:
    rng = np.random.default_rng(7)
    detector = MotionDetector()
    assert detector.update(scene(0, rng), 0.0).state is MotionState.FIRST
    for k in range(1, 20):
        assert detector.update(scene(k / 10, rng), k / 10).state is MotionState.STILL
    for k in range(20, 25):
        result = detector.update(scene(k / 10, rng, square_at=400 + 30 * (k - 20)), k / 10)
        assert result.state is MotionState.MOTION
        ((x1, y1, x2, y2),) = result.boxes
        sx = 400 + 30 * (k - 20)
        assert x1 <= sx and x2 >= sx + 60 and y1 <= 300 and y2 >= 360  # covers where the square is now
        assert x2 - x1 < 200 and y2 - y1 < 120  # and not much else


def test_an_object_that_stops_is_still_on_the_next_frames() -> None:
    detector = MotionDetector()
    for k in range(10):
        detector.update(scene(0), k / 10)
    assert detector.update(scene(0, square_at=400), 1.0).state is MotionState.MOTION
    states = [detector.update(scene(0, square_at=400), 1.0 + k / 10).state for k in range(1, 6)]
    assert states[-1] is MotionState.STILL and states.count(MotionState.MOTION) <= 2  # the 0.2 s window


def test_a_uniform_change_of_light_is_not_motion() -> None:
    detector = MotionDetector()
    for k in range(10):
        detector.update(scene(0), k / 10)
    for k, gain in enumerate((1.5, 1.5, 0.7, 0.7)):
        assert detector.update(scene(0, gain=gain), 1.0 + k / 10).state is MotionState.STILL


def test_an_uneven_lighting_step_resets_the_background_on_the_frame_it_happens() -> None:
    lamp = np.linspace(1.0, 2.0, 1280, dtype=np.float32)[None, :, None]  # a light on the right
    detector = MotionDetector()
    for k in range(10):
        detector.update(scene(0), k / 10)
    lit = np.clip(scene(0) * lamp, 0, 255).astype(np.uint8)
    step = detector.update(lit, 1.0)
    assert step.state is MotionState.GLOBAL and step.foreground > 0.3 and step.boxes == ()
    assert detector.update(lit, 1.1).state is MotionState.STILL


def test_motion_inside_a_mask_is_ignored() -> None:
    masked = MotionDetector(MotionSettings(masks=(((0.25, 0.3), (0.45, 0.3), (0.45, 0.6), (0.25, 0.6)),)))
    plain = MotionDetector()
    for k in range(10):
        masked.update(scene(0), k / 10)
        plain.update(scene(0), k / 10)
    assert plain.update(scene(0, square_at=400), 1.0).state is MotionState.MOTION  # x 400-460 of 1280: inside
    assert masked.update(scene(0, square_at=400), 1.0).state is MotionState.STILL


def test_bad_motion_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="blur"):
        MotionSettings(blur=4)
    with pytest.raises(ValueError, match="recheck_s"):
        MotionSettings(recheck_s=0)


# --- the motion planner's rules --------------------------------------------------------------------------------

STILL = MotionResult(MotionState.STILL)
CUP = Tracked(1, det("cup", (400, 800, 500, 900)), checked_pts=0.0)


def test_nothing_moving_and_nothing_due_means_no_model_run() -> None:
    plan = plan_motion(STILL, 1.0, [CUP], 1920, 1080, 256)
    assert plan.regions == () and plan.carried == (CUP,) and plan.checked == ()
    assert plan_motion(STILL, 1.0, [], 1920, 1080, 256).regions == ()


def test_a_still_object_is_rechecked_every_recheck_s_and_carried_in_between() -> None:
    settings = MotionSettings(recheck_s=2.0)
    due = plan_motion(STILL, 2.0, [CUP], 1920, 1080, 256, settings)
    (region,) = due.regions
    assert region.kind is RegionKind.RECHECK and region.contains((400, 800, 500, 900), 1.0)
    assert due.checked == (1,) and due.carried == ()
    assert plan_motion(STILL, 1.9, [CUP], 1920, 1080, 256, settings).regions == ()
    assert plan_motion(STILL, 10.0, [CUP], 1920, 1080, 256, settings).checked == (1,)  # long overdue
    assert plan_motion(STILL, -1.0, [CUP], 1920, 1080, 256, settings).checked == (1,)  # the timeline went back


def test_an_object_under_motion_is_checked_by_the_motion_region() -> None:
    moving = MotionResult(MotionState.MOTION, ((420, 820, 520, 910),))
    plan = plan_motion(moving, 0.5, [CUP], 1920, 1080, 256)
    (region,) = plan.regions
    assert region.kind is RegionKind.MOTION and plan.checked == (1,) and plan.carried == ()


def test_the_first_frame_scans_the_whole_frame_with_tiles() -> None:
    state = MotionRegions(1920, 1080, 256)
    plan = state.plan(np.zeros((1080, 1920, 3), np.uint8), 0.0)
    assert len(plan.regions) == 60 and {r.kind for r in plan.regions} == {RegionKind.SCAN}
    assert state.plan(np.zeros((1080, 1920, 3), np.uint8), 0.1).regions == ()
    with pytest.raises(ValueError, match="a 1280x720 frame for regions planned at 1920x1080"):
        state.plan(np.zeros((720, 1280, 3), np.uint8), 0.2)


def test_tracked_objects_are_updated_missed_and_forgotten() -> None:
    state = MotionRegions(1920, 1080, 256, MotionSettings(miss_limit=2))
    frame = np.zeros((1080, 1920, 3), np.uint8)
    first = state.plan(frame, 0.0)
    cup = det("cup", (400, 800, 500, 900))
    reported = state.update(first, [cup], 0.0)
    assert reported.found == (cup,) and reported.carried == ()
    (tracked,) = state.tracked
    assert tracked.checked_pts == 0.0
    between = state.plan(frame, 1.0)
    assert between.regions == () and state.update(between, [], 1.0).carried == (cup,)
    recheck = state.plan(frame, 2.0)
    assert [r.kind for r in recheck.regions] == [RegionKind.RECHECK]
    missed = state.update(recheck, [], 2.0)
    assert missed.carried == (cup,) and state.tracked[0].misses == 1  # kept through one miss ...
    again = state.plan(frame, 2.1)
    assert [r.kind for r in again.regions] == [RegionKind.RECHECK]  # ... and looked at again at once
    assert state.update(again, [], 2.1).carried == () and state.tracked == ()  # two misses: gone


def test_an_i420_frame_is_analysed_on_its_y_plane_like_bgr() -> None:
    """A decoder's ``yuv420p`` frame (Y plane, then U and V) needs no colour conversion: same states, nearly
    the same boxes as its BGR conversion."""
    bgr, yuv = MotionDetector(), MotionDetector()
    for k in range(12):
        image = scene(0, square_at=None if k < 10 else 300 + 40 * k)
        i420 = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)
        a, b = bgr.update(image, k / 10), yuv.update(i420, k / 10, "yuv420p")
        assert a.state is b.state
        assert len(a.boxes) == len(b.boxes)
        for p, q in zip(a.boxes, b.boxes, strict=True):
            assert np.allclose(p, q, atol=16)
    assert b.state is MotionState.MOTION
    with pytest.raises(ValueError, match="pixel format 'rgb48'"):
        yuv.update(i420, 2.0, "rgb48")


def test_timestamps_that_go_back_start_the_background_again() -> None:
    detector = MotionDetector()
    detector.update(scene(0), 5.0)
    assert detector.update(scene(0), 5.1).state is MotionState.STILL
    assert detector.update(scene(0), 0.0).state is MotionState.FIRST


def i420_to_nv12(i420: np.ndarray) -> np.ndarray:
    h = i420.shape[0] * 2 // 3
    w = i420.shape[1]
    quarter = (h // 2) * (w // 2)
    chroma = i420[h:].reshape(-1)
    out = i420.copy()
    out[h:] = np.stack([chroma[:quarter], chroma[quarter:]], axis=-1).reshape(h // 2, w)
    return out


def test_a_crop_of_an_i420_or_nv12_frame_is_that_frame_format_of_the_region() -> None:
    """A region cut out of a decoder's I420 (or NV12) frame without converting the frame to BGR: its samples
    are the region's, and the model's tensor of it is the tensor of the region taken from the whole frame."""
    rng = np.random.default_rng(5)
    bgr = cv2.resize(rng.integers(0, 256, (90, 160, 3), dtype=np.uint8), (1280, 720), interpolation=cv2.INTER_CUBIC)
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    region = Region(402, 220, 256, 256, RegionKind.MOTION)
    piece = crop(i420, region, "yuv420p")
    assert piece.shape == (384, 256)
    np.testing.assert_array_equal(piece[:256], i420[220:476, 402:658])
    expected = cv2.cvtColor(crop(bgr, region), cv2.COLOR_BGR2YUV_I420)
    assert np.abs(piece.astype(int) - expected.astype(int)).max() <= 1  # chroma: the region's own samples
    np.testing.assert_array_equal(crop(i420_to_nv12(i420), region, "nv12"), i420_to_nv12(piece))
    model = load_model(ModelConfig(path=SSD))
    whole, cut = model.preprocessor.new_batch(1), model.preprocessor.new_batch(1)
    model.preprocessor.into(i420, whole[0], "yuv420p", region.roi)
    model.preprocessor.into(piece, cut[0], "yuv420p")
    np.testing.assert_array_equal(cut, whole)
    with pytest.raises(ValueError, match="even corner"):
        crop(i420, Region(401, 220, 256, 256, RegionKind.MOTION), "yuv420p")


def test_motion_regions_come_in_few_sizes() -> None:
    """Sizes above the model side are rounded up to 32 px steps, so the preprocessor sees few crop sizes."""
    sides = {
        square_around((0, 0, w, w), 256, 1.5, 1920, 1080, RegionKind.MOTION, step=32).width for w in range(150, 400)
    }
    assert sides <= {256, *range(256, 1081, 32)} and len(sides) <= 12


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (1281, 721), (640, 482)])
def test_a_detection_s_crop_covers_its_box_and_margin_and_crops_i420_on_whole_samples(width: int, height: int) -> None:
    rng = np.random.default_rng(3)
    for _ in range(2000):
        x1, y1 = rng.uniform(0, width - 8), rng.uniform(0, height - 8)
        x2, y2 = rng.uniform(x1 + 4, width), rng.uniform(y1 + 4, height)
        margin = float(rng.choice([0.0, 0.1, 0.5]))
        r = box_region((x1, y1, x2, y2), margin, width, height)
        assert r.x % 2 == 0 and r.y % 2 == 0 and r.width % 2 == 0 and r.height % 4 == 0, r
        assert r.x >= 0 and r.y >= 0 and r.x2 <= width and r.y2 <= height, r
        mx, my = margin * (x2 - x1), margin * (y2 - y1)
        assert r.x <= max(0.0, x1 - mx) and r.y <= max(0.0, y1 - my), r
        assert r.x2 >= min(width - width % 2, x2 + mx), r  # cut to the frame (an odd last column left out)
        assert r.y2 >= min(height - height % 2, y2 + my) - 2, r  # a height of 4k may end 2 short of an odd edge


def test_a_detection_s_crop_of_an_i420_frame_converts_like_the_whole_frame() -> None:
    rng = np.random.default_rng(5)
    i420 = rng.integers(0, 256, (720 * 3 // 2, 1280), dtype=np.uint8)
    whole = frame_to_bgr(i420, "yuv420p", "bt709", "limited")
    for box in [(101.3, 57.9, 333.3, 401.1), (0.0, 0.0, 17.0, 9.0), (1200.5, 600.5, 1280.0, 720.0)]:
        r = box_region(box, 0.1, 1280, 720)
        part = frame_to_bgr(crop(i420, r, "yuv420p"), "yuv420p", "bt709", "limited")
        assert np.array_equal(part, whole[r.y : r.y2, r.x : r.x2]), r
