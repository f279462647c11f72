"""``--annotate``'s drawing: boxes where they were found, and with regions the regions and carried detections."""

from __future__ import annotations

import numpy as np

from streamprep.sinks.annotate import draw
from streamprep.values.frames import Box, Detection, Result, Timings


def result(regions: tuple[tuple[float, float, float, float], ...], detections: tuple[Detection, ...]) -> Result:
    return Result(
        source="cam",
        seq=0,
        frame_index=0,
        pts=0.0,
        captured_at=0.0,
        model="ssd",
        width=640,
        height=360,
        batch_size=1,
        timings=Timings(0.0, 0.0, 0.0, 0.0, 0.0),
        detections=detections,
        regions=regions,
    )


def test_regions_are_drawn_thin_and_the_whole_frame_is_not() -> None:
    black = np.zeros((360, 640, 3), np.uint8)
    out = draw(black, result(((100.0, 50.0, 356.0, 306.0),), ()))
    assert out[50:306, 100].min() > 100 and out[51:305, 101].max() == 0, "a one-pixel grey edge"
    assert out[50, 100:356].min() > 100 and out[306:, :].max() == 0 and out[:50, :].max() == 0
    assert not black.any(), "drawn on a copy"
    assert not draw(black, result(((0.0, 0.0, 640.0, 360.0),), ())).any(), "regions = full: nothing to show"


def test_a_carried_detection_is_drawn_thin_and_a_found_one_thick() -> None:
    black = np.zeros((360, 640, 3), np.uint8)
    found = Detection("cup", 41, 0.9, Box(50.0, 50.0, 150.0, 150.0))
    carried = Detection("cup", 41, 0.9, Box(300.0, 50.0, 400.0, 150.0), carried=True)
    out = draw(black, result((), (found, carried)))
    lit = (out[100].max(axis=1) > 0).astype(int)
    assert lit[45:56].sum() >= 2, "found: a thick edge"
    assert lit[295:306].sum() == 1 and lit[300] == 1, "carried: one pixel"
