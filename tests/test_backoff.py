"""The one backoff every retrying part uses (streamprep.flow.backoff)."""

from __future__ import annotations

import random

from streamprep.flow.backoff import Backoff, BackoffPolicy


def test_waits_double_up_to_the_cap_without_jitter() -> None:
    b = Backoff(BackoffPolicy(first_s=0.5, cap_s=3.0, jitter=0.0))
    assert [b.next_wait() for _ in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_jitter_stays_within_its_band_and_varies() -> None:
    b = Backoff(BackoffPolicy(first_s=1.0, cap_s=1.0, jitter=0.5), rng=random.Random(3))
    waits = [b.next_wait() for _ in range(200)]
    assert all(0.5 <= w <= 1.0 for w in waits)
    assert max(waits) - min(waits) > 0.3


def test_success_and_a_healthy_run_start_afresh() -> None:
    b = Backoff(BackoffPolicy(first_s=1.0, cap_s=30.0, jitter=0.0, healthy_after_s=60.0))
    assert [b.next_wait(), b.next_wait(), b.next_wait()] == [1.0, 2.0, 4.0]
    b.succeeded()
    assert b.next_wait() == 1.0
    assert b.next_wait(ran_s=10.0) == 2.0  # failed again soon: still backing off
    assert b.next_wait(ran_s=61.0) == 1.0  # ran a minute: not flapping


def test_per_minute_cap_holds_the_next_try_back() -> None:
    b = Backoff(BackoffPolicy(first_s=0.1, cap_s=0.1, jitter=0.0, per_minute=3))
    assert [b.next_wait(now=100.0) for _ in range(3)] == [0.1, 0.1, 0.1]
    wait = b.next_wait(now=100.0)  # a fourth try comes 60 s after the first (at 100.1), not before
    assert abs(wait - 60.1) < 1e-9
    assert b.next_wait(now=200.0) == 0.1  # the window has moved on
