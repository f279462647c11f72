from fractions import Fraction

import pytest

from streamprep.sources.sampling import Sampler


def kept(sampler: Sampler, pts: list[Fraction]) -> list[Fraction]:
    return [p for p in pts if sampler.keep(p)]


def test_30fps_to_5fps_keeps_every_sixth_frame() -> None:
    pts = [Fraction(i, 30) for i in range(300)]
    out = kept(Sampler(5), pts)
    assert len(out) == 50
    assert out == [Fraction(i, 5) for i in range(50)]


def test_no_target_keeps_everything() -> None:
    pts = [Fraction(i, 30) for i in range(10)]
    assert kept(Sampler(None), pts) == pts


def test_target_above_source_rate_keeps_every_frame() -> None:
    pts = [Fraction(i, 10) for i in range(20)]
    assert kept(Sampler(30), pts) == pts


def test_variable_frame_rate_keeps_first_frame_of_each_slot() -> None:
    # 30 fps for 1 s, then 7 fps for 2 s, then jittered
    pts = [Fraction(i, 30) for i in range(30)] + [1 + Fraction(i, 7) for i in range(14)]
    pts += [3 + Fraction(i, 13) + Fraction(i % 3, 997) for i in range(26)]
    out = kept(Sampler(4), pts)
    slots = [int((p - pts[0]) * 4) for p in out]
    assert slots == sorted(set(slots)), "one frame per slot, in order"
    # every slot that has a frame is represented: nothing skipped
    assert set(slots) == {int((p - pts[0]) * 4) for p in pts}
    for p in out:
        slot_start = Fraction(int(p * 4), 4)
        earlier = [q for q in pts if slot_start <= q < p]
        assert not earlier, f"{p} is not the first frame of its slot"


def test_timestamps_going_back_restart_the_count() -> None:
    s = Sampler(1)
    assert s.keep(Fraction(100))
    assert not s.keep(Fraction(100, 1) + Fraction(1, 2))
    assert s.keep(Fraction(0))  # stream reset
    assert not s.keep(Fraction(1, 2))
    assert s.keep(Fraction(1))


@pytest.mark.parametrize("fps", [0, -1, float("nan"), float("inf")])
def test_bad_fps_is_refused(fps: float) -> None:
    with pytest.raises(ValueError, match="fps"):
        Sampler(fps)


def test_slot_and_would_keep_answer_without_changing_anything() -> None:
    s = Sampler(5)
    assert s.slot(Fraction(3)) is None and s.would_keep(Fraction(3))  # no origin yet
    assert s.keep(Fraction(1))
    assert (s.slot(Fraction(1)), s.slot(Fraction(13, 10)), s.slot(Fraction(7, 5))) == (0, 1, 2)
    assert s.slot(Fraction(1, 2)) is None  # before the origin: would restart the count
    assert not s.would_keep(Fraction(11, 10)) and s.would_keep(Fraction(6, 5))
    assert s.would_keep(Fraction(6, 5)), "asking twice changes nothing"
    assert s.keep(Fraction(6, 5)) and not s.would_keep(Fraction(13, 10))
    assert Sampler(None).slot(Fraction(1)) is None and Sampler(None).would_keep(Fraction(1))
