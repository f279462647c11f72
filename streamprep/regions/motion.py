"""``motion``: look only where something moves, and now and then at what stands still.

**Detector** (:class:`MotionDetector`, per source). Each frame is reduced to a grey picture
``analysis_width`` pixels wide (the Y plane of an I420/NV12 frame, or BGR converted to grey; area
resampling) and blurred (a ``blur`` × ``blur`` Gaussian), which averages away sensor noise and compression
blocks. Two comparisons decide what moves:

- against the **background**, a running average of past pictures with time constant ``background_s``
  seconds (the weight of a frame is ``1 - exp(-dt / background_s)``, so it behaves the same at any sampling
  rate): pixels further than ``threshold`` grey levels from it are *foreground*;
- against the **recent picture**, the one analysed about ``window_s`` seconds earlier: pixels further than
  ``threshold`` levels from it are *changing*.

Both differences are taken after removing a global gain and offset (the median ratio of the two pictures,
then the median difference: auto-exposure, a cloud, a uniform change of light). A pixel *moves* when it is
both foreground and changing; moving pixels are dilated (``dilate`` iterations of a 3×3 square) and split
into connected blobs; blobs whose boxes come within ``join`` analysis pixels of each other are joined (the
head, back and tail of one animal), and the boxes of at least ``min_area`` of the frame, scaled to source
pixels, are the motion. So the box covers where the object is now (where it was ``window_s`` ago is
changing but back to background), an object that stops no longer moves once ``window_s`` has passed (it is
kept alive by the re-checks below), and neither the "ghost" an object leaves in the background when it
starts off nor the trail behind it ever moves.

**Global changes.** When more than ``global_fraction`` of the (unmasked) picture is foreground even after
the global gain and offset are removed (an uneven light switched on or off, the camera moved), the
background and the recent picture are re-initialised from this frame: the frame reports
:attr:`MotionState.GLOBAL` and no motion, and the next one compares against the new scene. A smaller local
change of light (a lamp lighting a tenth of the picture) is not global: it is changing, so moving, only
until the recent picture has it too, ``window_s`` later. Either way a lighting step keeps frames "in motion"
for at most ``window_s`` (0.2 s), far under a second; a step that spreads over several frames is re-
initialised on each frame where it is global (motion in that time is not seen: the price of the reset).

**Masks.** ``masks`` are polygons (fractions of the frame, or pixels, as zones) where motion is ignored
(a tree, a clock, a screen); they are left out of the global-change fraction too.

The planner that turns motion into regions is :mod:`streamprep.regions.planner`.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from streamprep.events.geometry import resolve
from streamprep.values.frames import BoxTuple, Image

Polygon = tuple[tuple[float, float], ...]
_EPS = 1e-6  # seconds: timestamps that are due "now" within float rounding
_SAMPLE_STEP = 2  # the global gain and offset are measured on every _SAMPLE_STEP-th pixel and row
_MIN_SAMPLE = 64  # fewer unmasked pixels on that grid: measured on all of them


class MotionState(enum.StrEnum):
    """What the detector made of one frame."""

    FIRST = "first"  # the first frame (or timestamps went back): the background starts here
    STILL = "still"  # nothing moves
    MOTION = "motion"  # at least one moving blob
    GLOBAL = "global"  # most of the picture changed at once (lighting, camera): background re-initialised


@dataclass(frozen=True, slots=True)
class MotionSettings:
    """Motion detection and planning parameters (per source). Times are seconds of the source's timeline."""

    analysis_width: int = 320
    blur: int = 5
    background_s: float = 2.0
    window_s: float = 0.2
    threshold: float = 20.0
    dilate: int = 2
    join: int = 4
    min_area: float = 0.0003
    global_fraction: float = 0.3
    masks: tuple[Polygon, ...] = ()
    # planning
    region_scale: float = 1.0
    margin: float = 1.25
    merge_growth: float = 1.25
    size_step: int = 32
    recheck_s: float = 2.0
    miss_limit: int = 2
    match_iou: float = 0.3
    max_tracked: int = 100
    rescan_s: float | None = None
    tile_overlap: float = 0.2

    def __post_init__(self) -> None:
        if self.analysis_width < 16:
            raise ValueError(f"analysis_width must be at least 16, got {self.analysis_width}")
        if self.blur < 1 or self.blur % 2 == 0:
            raise ValueError(f"blur must be a positive odd kernel size, got {self.blur}")
        for name in ("background_s", "recheck_s", "region_scale", "margin"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not 0 < self.global_fraction <= 1:
            raise ValueError(f"global_fraction must be in (0, 1], got {self.global_fraction!r}")
        if self.miss_limit < 1 or self.max_tracked < 1:
            raise ValueError("miss_limit and max_tracked must be at least 1")
        if not (self.window_s >= 0 and self.threshold > 0 and self.merge_growth >= 1 and self.size_step >= 2):
            raise ValueError("window_s must be >= 0, threshold > 0, merge_growth >= 1 and size_step >= 2")
        if not 0.0 <= self.tile_overlap < 1.0:
            raise ValueError(f"tile_overlap must be in [0, 1), got {self.tile_overlap!r}")
        if self.rescan_s is not None and not self.rescan_s > 0:
            raise ValueError(f"rescan_s must be a positive number or None, got {self.rescan_s!r}")


@dataclass(frozen=True, slots=True)
class MotionResult:
    """One frame's motion: its :class:`MotionState`, the moving boxes in source pixels, and the fraction of
    the (unmasked) picture that is foreground."""

    state: MotionState
    boxes: tuple[BoxTuple, ...] = ()
    foreground: float = 0.0


def luma(image: Image, pixel_format: str = "bgr24") -> Image:
    """The frame's grey picture at full size: the Y plane of ``yuv420p``/``nv12`` (a view), grey from BGR."""
    if pixel_format in ("yuv420p", "nv12"):
        return image[: image.shape[0] * 2 // 3]
    if pixel_format != "bgr24":
        raise ValueError(f"pixel format {pixel_format!r} is not bgr24, yuv420p or nv12")
    grey: Image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)  # type: ignore[assignment]
    return grey


class MotionDetector:
    """The motion detector of one source (see the module docstring). Not thread-safe; one per source."""

    def __init__(self, settings: MotionSettings | None = None) -> None:
        self.settings = settings or MotionSettings()
        self._background: npt.NDArray[np.float32] | None = None
        self._recent: deque[tuple[float, npt.NDArray[np.float32]]] = deque()
        self._last_pts: float | None = None
        self._size: tuple[int, int] | None = None  # source width, height
        self._exclude: npt.NDArray[np.bool_] | None = None
        self._keep: npt.NDArray[np.bool_] | None = None  # ~exclude
        self._kept = 0  # unmasked pixels
        self._sample: npt.NDArray[np.intp] = np.zeros(0, np.intp)  # where the global gain and offset are measured
        self._kernel = np.ones((3, 3), np.uint8)

    def reset(self) -> None:
        """Forget the background: the next frame starts again (:attr:`MotionState.FIRST`)."""
        self._background = None
        self._recent.clear()
        self._last_pts = None

    def _picture(self, image: Image, pixel_format: str) -> npt.NDArray[np.float32]:
        grey = luma(image, pixel_format) if pixel_format != "bgr24" else image
        h, w = grey.shape[:2]
        aw = min(self.settings.analysis_width, w)
        ah = max(1, round(h * aw / w))
        small = cv2.resize(grey, (aw, ah), interpolation=cv2.INTER_AREA)
        flat = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        k = self.settings.blur
        out: npt.NDArray[np.float32] = cv2.GaussianBlur(flat, (k, k), 0).astype(np.float32)
        if self._size != (w, h) or self._exclude is None or self._exclude.shape != out.shape:
            self._size = (w, h)
            self._exclude = self._mask(aw, ah)
            self._keep = ~self._exclude
            self._kept = int(np.count_nonzero(self._keep))
            grid = np.zeros_like(self._keep)
            grid[::_SAMPLE_STEP, ::_SAMPLE_STEP] = True
            sample = np.flatnonzero(self._keep & grid)
            self._sample = sample if sample.size >= _MIN_SAMPLE else np.flatnonzero(self._keep)
            self._background = None
            self._recent.clear()
        return out

    def _mask(self, aw: int, ah: int) -> npt.NDArray[np.bool_]:
        assert self._size is not None
        w, h = self._size
        canvas = np.zeros((ah, aw), np.uint8)
        for polygon in self.settings.masks:
            points = np.array([(x * aw / w, y * ah / h) for x, y in resolve(polygon, w, h)], np.float64)
            cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1)
        excluded: npt.NDArray[np.bool_] = canvas.astype(bool)
        return excluded

    def _start(self, picture: npt.NDArray[np.float32], pts: float) -> None:
        self._background = picture.copy()
        self._recent.clear()
        self._recent.append((pts, picture))

    def _reference(self, pts: float) -> npt.NDArray[np.float32]:
        """The picture analysed about ``window_s`` before ``pts`` (the newest one at least that old, else the
        oldest kept); older ones are forgotten."""
        window = self.settings.window_s
        while len(self._recent) > 1 and self._recent[1][0] <= pts - window + _EPS:
            self._recent.popleft()
        return self._recent[0][1]

    def update(self, image: Image, pts: float, pixel_format: str = "bgr24") -> MotionResult:
        """Analyse one frame (``bgr24`` H×W×3, or ``yuv420p``/``nv12`` as :class:`~streamprep.values.frames.Frame`
        holds them) shown at ``pts`` seconds."""
        s = self.settings
        picture = self._picture(image, pixel_format)
        assert self._keep is not None and self._size is not None
        if self._background is None or self._last_pts is None or pts < self._last_pts:
            self._start(picture, pts)
            self._last_pts = pts
            return MotionResult(MotionState.FIRST)
        dt = pts - self._last_pts
        self._last_pts = pts
        keep = self._keep
        fg = self._changed(picture, self._background, keep)
        foreground = np.count_nonzero(fg) / self._kept if self._kept else 0.0
        if foreground > s.global_fraction:
            self._start(picture, pts)
            return MotionResult(MotionState.GLOBAL, foreground=foreground)
        changing = self._changed(picture, self._reference(pts), keep)
        cv2.accumulateWeighted(picture, self._background, 1.0 - math.exp(-dt / s.background_s))
        self._recent.append((pts, picture))
        while len(self._recent) > 256:  # bounded whatever the frame rate
            self._recent.popleft()
        moving = (fg & changing).astype(np.uint8)
        if not moving.any():
            return MotionResult(MotionState.STILL, (), foreground)
        mask = cv2.dilate(moving, self._kernel, iterations=s.dilate) if s.dilate else moving
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        ah, aw = picture.shape
        w, h = self._size
        sx, sy = w / aw, h / ah
        blobs = [(int(v[0]), int(v[1]), int(v[0] + v[2]), int(v[1] + v[3])) for v in stats[1:count]]
        boxes: list[BoxTuple] = [
            (x1 * sx, y1 * sy, min(w, x2 * sx), min(h, y2 * sy))
            for x1, y1, x2, y2 in _join(blobs, s.join)
            if (x2 - x1) * (y2 - y1) >= s.min_area * aw * ah
        ]
        state = MotionState.MOTION if boxes else MotionState.STILL
        return MotionResult(state, tuple(boxes), foreground)

    def _changed(
        self, picture: npt.NDArray[np.float32], reference: npt.NDArray[np.float32], keep: npt.NDArray[np.bool_]
    ) -> npt.NDArray[np.bool_]:
        """Pixels further than ``threshold`` from ``reference`` once a global gain and offset are removed (the
        median ratio, then the median difference, both measured on every other pixel of every other row of the
        unmasked picture: robust to the objects that move)."""
        diff: npt.NDArray[np.float32]
        if self._sample.size:
            p, r = picture.ravel()[self._sample], reference.ravel()[self._sample]
            gain = float(np.median(p / (r + 1.0)))
            offset = float(np.median(p - r * gain))
            diff = cv2.scaleAdd(reference, -gain, picture)  # type: ignore[assignment]  # picture - gain x reference
            diff -= np.float32(offset)
        else:
            diff = np.subtract(picture, reference, dtype=np.float32)
        changed: npt.NDArray[np.bool_] = (np.abs(diff, out=diff) > self.settings.threshold) & keep
        return changed


def _join(boxes: Sequence[tuple[int, int, int, int]], gap: int) -> list[tuple[int, int, int, int]]:
    """Boxes (x1, y1, x2, y2) that come within ``gap`` of each other replaced by their union, until none do."""
    out = list(boxes)
    joined = True
    while joined:
        joined = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if a[0] - gap <= b[2] and b[0] - gap <= a[2] and a[1] - gap <= b[3] and b[1] - gap <= a[3]:
                    out[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del out[j]
                    joined = True
                    break
            if joined:
                break
    return out
