"""How long to wait before trying again: one capped, jittered, exponential backoff for everything that retries.

A :class:`Backoff` belongs to one thing that fails and retries (a camera, a broker connection, a remote
model, a worker process). Its contract:

- the first wait is ``first_s``; each :meth:`next_wait` after that doubles the base, up to ``cap_s``;
- the wait returned is the base scaled by a factor drawn uniformly from ``[1 - jitter, 1]``, so many
  sources that failed together do not all come back in the same instant (``jitter = 0`` gives the base);
- :meth:`succeeded` starts it afresh, and so does :meth:`next_wait` given a ``ran_s`` of at least
  ``healthy_after_s`` (a thing that ran that long before failing again is not flapping);
- at most ``per_minute`` waits end inside any 60 s window (``0``: no such cap): a thing that keeps
  failing at once is held back until the window allows another try.

It computes waits and never sleeps itself, so it is the same value in threads, tasks and processes.
"""

from __future__ import annotations

import collections
import random
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """The numbers of a backoff (seconds)."""

    first_s: float = 0.5
    cap_s: float = 10.0
    jitter: float = 0.5
    healthy_after_s: float | None = None
    per_minute: int = 0


class Backoff:
    """The waits of one retrying thing under a :class:`BackoffPolicy` (see the module's contract)."""

    def __init__(self, policy: BackoffPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self._base = policy.first_s
        self._rng = rng or random.Random()
        self._recent: collections.deque[float] = collections.deque()

    def succeeded(self) -> None:
        """It worked: the next failure waits ``first_s`` again."""
        self._base = self.policy.first_s

    def next_wait(self, ran_s: float | None = None, now: float | None = None) -> float:
        """The wait before the next try; ``ran_s``: how long it ran before this failure, if known."""
        policy = self.policy
        if ran_s is not None and policy.healthy_after_s is not None and ran_s >= policy.healthy_after_s:
            self._base = policy.first_s
        wait = self._base * self._rng.uniform(1.0 - policy.jitter, 1.0)
        self._base = min(self._base * 2, policy.cap_s)
        if policy.per_minute > 0:
            now = time.monotonic() if now is None else now
            while self._recent and now - self._recent[0] > 60.0:
                self._recent.popleft()
            if len(self._recent) >= policy.per_minute:
                wait = max(wait, 60.0 - (now - self._recent[0]))
            self._recent.append(now + wait)
        return wait
