"""The tracker and the zone/line geometry, on synthetic detections whose answer is known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from streamprep.events.geometry import LineState, ZoneState, inside, resolve, segments_cross
from streamprep.events.tracking import Tracker, TrackerSettings, TrackerStep, greedy_match, iou_matrix


def walk(tracker: Tracker, times: list[float], boxes_at, labels: list[str] | None = None) -> list[TrackerStep]:
    """Feed one frame per time; ``boxes_at(t)`` gives that frame's boxes (score 0.9 each)."""
    steps = []
    for t in times:
        boxes = np.array(boxes_at(t), dtype=float).reshape(-1, 4)
        names = labels or ["person"] * len(boxes)
        steps.append(tracker.update(t, boxes, np.full(len(boxes), 0.9), names[: len(boxes)]))
    return steps


def moving(t: float, x0: float = 50.0, speed: float = 100.0) -> list[float]:
    x = x0 + speed * t
    return [x, 100.0, x + 80.0, 260.0]


def test_one_object_keeps_one_id_and_is_confirmed_after_min_hits() -> None:
    tracker = Tracker(TrackerSettings(min_hits=3))
    steps = walk(tracker, [i * 0.2 for i in range(20)], lambda t: [moving(t)])
    assert [s.assigned for s in steps[:3]] == [(None,), (None,), (1,)], "confirmed at the third detection"
    assert steps[2].confirmed == (1,)
    assert all(s.assigned == (1,) for s in steps[2:])
    assert not any(s.ended for s in steps)


@pytest.mark.parametrize("fps", [2, 5, 15, 30])
def test_max_age_is_in_seconds_whatever_the_frame_rate(fps: int) -> None:
    """An object missing for 1.0 s keeps its id with max_age 1.5 s, and is ended after a 2 s gap."""
    tracker = Tracker(TrackerSettings(min_hits=2, max_age_s=1.5))
    dt = 1.0 / fps

    def boxes(t: float) -> list[list[float]]:
        gone = 2.0 <= t < 3.0 or 5.0 <= t < 7.0
        return [] if gone else [moving(t, speed=40.0)]

    steps = walk(tracker, [i * dt for i in range(round(9 * fps))], boxes)
    ids = {a for s in steps for a in s.assigned if a is not None}
    ended = [v for s in steps for v in s.ended]
    assert len(ended) == 1 and ended[0].id == 1, "the 1 s gap is bridged, the 2 s gap ends the track"
    assert ended[0].last_seen == pytest.approx(5.0 - dt, abs=1e-9)
    assert len(ids) == 2, "after the long gap the object is a new track"


def test_a_held_box_keeps_a_still_object_without_confirming_it() -> None:
    """``regions = "motion"`` carries a still object between looks: its held box keeps the track where it was
    (no ageing out, tentative or confirmed), but only detections are hits."""
    still = np.array([[100.0, 100.0, 160.0, 220.0]])
    tracker = Tracker(TrackerSettings(min_hits=3, max_age_s=1.5))
    steps = []
    for i in range(31):  # 6 s at 5 fps, looked at every 2 s (0, 2, 4, 6 s), held in between
        t = i * 0.2
        looked = i % 10 == 0
        found = still if looked else np.zeros((0, 4))
        held = np.zeros((0, 4)) if looked else still
        steps.append(
            tracker.update(t, found, np.full(len(found), 0.9), ["car"] * len(found), held, ["car"] * len(held))
        )
    assert [s.assigned for s in steps[:20:10]] == [(None,), (None,)], "not confirmed by the held frames"
    assert steps[20].assigned == (1,) and steps[20].confirmed == (1,), "confirmed at the third look, 4 s in"
    assert steps[30].assigned == (1,) and not any(s.ended for s in steps), "held for 2 s > max_age_s: kept"
    assert tracker.finish()[0].box == (100.0, 100.0, 160.0, 220.0)
    # without the held boxes the tentative track is dropped at once, and a confirmed one ages out
    bare = Tracker(TrackerSettings(min_hits=1, max_age_s=1.5))
    ended = [
        v
        for i in range(11)
        for v in bare.update(
            i * 0.2, still if i == 0 else np.zeros((0, 4)), np.array([0.9] * (i == 0)), ["car"] * (i == 0)
        ).ended
    ]
    assert len(ended) == 1


def test_a_held_box_of_another_label_or_place_holds_nothing() -> None:
    tracker = Tracker(TrackerSettings(min_hits=1, max_age_s=0.5))
    box = np.array([[100.0, 100.0, 160.0, 220.0]])
    tracker.update(0.0, box, np.array([0.9]), ["car"])
    far = np.array([[400.0, 100.0, 460.0, 220.0]])
    step = tracker.update(1.0, np.zeros((0, 4)), np.zeros(0), [], np.vstack([box, far]), ["person", "car"])
    assert [v.id for v in step.ended] == [1]


def test_tracks_through_a_short_occlusion_with_the_motion_model() -> None:
    """Two objects moving towards each other; one is unseen while it moves 60 px: ids are not swapped."""
    tracker = Tracker(TrackerSettings(min_hits=2))

    def boxes(t: float) -> list[list[float]]:
        a = moving(t, 0.0, 150.0)
        b = moving(t, 500.0, -150.0)
        return [b] if 0.8 <= t < 1.2 else [a, b]

    times = [i / 10 for i in range(16)]
    steps = walk(tracker, times, boxes)
    first = steps[3]
    a_id, b_id = first.assigned
    after = steps[-1]
    assert after.assigned == (a_id, b_id)
    assert {v.id for v in after.tracks} == {a_id, b_id}


def test_labels_are_never_mixed() -> None:
    tracker = Tracker(TrackerSettings(min_hits=1))
    box = [100.0, 100.0, 200.0, 200.0]
    s1 = tracker.update(0.0, np.array([box]), np.array([0.9]), ["cat"])
    s2 = tracker.update(0.1, np.array([box]), np.array([0.9]), ["dog"])
    assert s1.assigned != s2.assigned
    assert {v.label for v in s2.tracks} == {"cat", "dog"}


def test_low_score_detection_keeps_a_track_but_never_starts_one() -> None:
    tracker = Tracker(TrackerSettings(min_hits=1, high_score=0.5, new_track_score=0.6))
    box = np.array([[100.0, 100.0, 180.0, 260.0]])
    s0 = tracker.update(0.0, box, np.array([0.3]), ["person"])
    assert s0.assigned == (None,) and not s0.tracks, "a low score starts nothing"
    s1 = tracker.update(0.1, box, np.array([0.9]), ["person"])
    s2 = tracker.update(0.2, box + 2, np.array([0.3]), ["person"])  # second stage: kept by a weak detection
    assert s1.assigned == s2.assigned == (1,)
    lost = tracker.update(0.3, np.zeros((0, 4)), np.zeros(0), [])
    assert lost.assigned == ()
    s4 = tracker.update(0.4, box + 4, np.array([0.3]), ["person"])
    assert s4.assigned == (None,), "a weak detection does not revive a track that was lost"


def test_new_track_needs_new_track_score_and_max_tracks_bounds_them() -> None:
    tracker = Tracker(TrackerSettings(min_hits=1, new_track_score=0.8, max_tracks=2))
    boxes = np.array([[i * 100.0, 0.0, i * 100.0 + 50, 50.0] for i in range(4)])
    step = tracker.update(0.0, boxes, np.array([0.9, 0.7, 0.9, 0.95]), ["a"] * 4)
    assert step.assigned == (1, None, 2, None)
    assert tracker.refused == 1


def test_time_must_not_go_backwards_and_finish_ends_confirmed_tracks() -> None:
    tracker = Tracker(TrackerSettings(min_hits=2))
    walk(tracker, [0.0, 0.1, 0.2], lambda t: [moving(t), moving(t, 400)])
    tracker.update(0.3, np.array([[0.0, 0.0, 10.0, 10.0]]), np.array([0.9]), ["person"])  # a tentative one
    with pytest.raises(ValueError, match="backwards"):
        tracker.update(0.1, np.zeros((0, 4)), np.zeros(0), [])
    ended = tracker.finish()
    assert sorted(v.id for v in ended) == [1, 2]
    assert tracker.time is None


def test_greedy_match_takes_the_best_pairs_first() -> None:
    iou = np.array([[0.9, 0.8], [0.85, 0.1]])
    assert sorted(greedy_match(iou, 0.3)) == [(0, 0)]
    assert greedy_match(iou, 0.05) == [(0, 0), (1, 1)]
    assert greedy_match(np.zeros((0, 3)), 0.1) == []
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0]])
    m = iou_matrix(boxes, boxes)
    assert m[0, 0] == pytest.approx(1.0) and m[0, 1] == pytest.approx(25 / 175)


def test_fractions_and_pixels() -> None:
    assert resolve([(0.5, 0.0), (0.5, 1.0)], 800, 600) == ((400.0, 0.0), (400.0, 600.0))
    assert resolve([(10, 0), (10, 600)], 800, 600) == ((10.0, 0.0), (10.0, 600.0))
    square = resolve([(0, 0.5), (0.5, 0.5), (0.5, 1), (0, 1)], 100, 100)
    assert inside(square, (25, 75)) and not inside(square, (75, 75)) and not inside(square, (25, 25))


def test_zone_hysteresis_ignores_a_one_frame_excursion() -> None:
    state = ZoneState(min_frames=3)
    observations = [False, True, False, False, True, True, False, True, True, True, False, True, False, False, False]
    flips = [i for i, o in enumerate(observations) if state.update(o)]
    assert flips == [9, 14], "in after three frames inside in a row, out after three outside"
    assert state.inside is False


def test_line_crossing_needs_min_frames_on_the_new_side_and_the_segment() -> None:
    a, b = (400.0, 0.0), (400.0, 600.0)  # P2 - P1 points down: the left side is positive
    state = LineState(min_frames=2)
    xs = [300, 310, 320, 410, 395, 405, 420, 430, 380, 370, 360]
    got = [(i, d) for i, x in enumerate(xs) if (d := state.update(a, b, (float(x), 300.0))) is not None]
    assert got == [(6, "negative"), (9, "positive")], "left→right is negative; jitter is not a crossing"
    short = LineState(min_frames=1)
    short.update((400.0, 0.0), (400.0, 200.0), (300.0, 500.0))
    assert short.update((400.0, 0.0), (400.0, 200.0), (500.0, 500.0)) is None, "passed below the segment's end"
    assert segments_cross((0, 0), (10, 10), (0, 10), (10, 0))
    assert not segments_cross((0, 0), (1, 1), (5, 0), (6, 1))
