"""Which frames to keep for a target frame rate, decided from presentation timestamps alone.

Time is cut into slots of ``1/fps`` seconds counted from the first frame's timestamp; the first frame
that falls into a new slot is kept. With exact (rational) timestamps a 30 fps stream sampled at 5 fps
keeps exactly every sixth frame, and a variable-frame-rate stream keeps the frame nearest after each
slot boundary, as even as the source allows. The sampler never sees pixels, so a dropped frame costs
only its decoding.
"""

from __future__ import annotations

import math
from fractions import Fraction


class Sampler:
    """Decide frame by frame whether to keep it. ``fps=None`` keeps every frame."""

    def __init__(self, fps: float | None) -> None:
        if fps is not None and not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        self._fps = Fraction(str(fps)) if fps is not None else None
        self._origin: Fraction | None = None
        self._last_slot = -1

    @property
    def fps(self) -> float | None:
        return float(self._fps) if self._fps is not None else None

    def slot(self, pts: Fraction) -> int | None:
        """The slot ``pts`` falls in, counted from the current origin; None before the first frame, without a
        target rate, or before the origin (such a frame would restart the count)."""
        if self._fps is None or self._origin is None or pts < self._origin:
            return None
        return math.floor((pts - self._origin) * self._fps)

    def would_keep(self, pts: Fraction) -> bool:
        """What :meth:`keep` would answer for ``pts`` now, without changing anything."""
        if self._fps is None or self._origin is None or pts < self._origin + self._last_slot / self._fps:
            return True
        return math.floor((pts - self._origin) * self._fps) > self._last_slot

    def keep(self, pts: Fraction) -> bool:
        """True if the frame at ``pts`` seconds should be kept.

        Timestamps that go back before the last kept slot (a stream that was reset) restart the count.
        """
        if self._fps is None:
            return True
        if self._origin is None or pts < self._origin + self._last_slot / self._fps:
            self._origin = pts
            self._last_slot = 0
            return True
        slot = math.floor((pts - self._origin) * self._fps)
        if slot > self._last_slot:
            self._last_slot = slot
            return True
        return False
