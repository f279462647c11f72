"""The values the region planners hand out: which parts of a frame the model looks at, and what it carries.

A :class:`Region` is an axis-aligned rectangle of whole source pixels, always inside the frame. The model
sees it at native resolution: the crop (:func:`crop`, a view) goes through the model's normal preprocessing,
or the region is passed as the preprocessor's region of interest (:attr:`Region.roi`), which gives the same
tensor and maps the decoded boxes straight back to source pixels.

Regions are square wherever the frame allows (the model's input is square for the bundled detectors, and a
square crop keeps the aspect ratio under a stretch resize); their corners sit on even pixels so an I420
frame's chroma planes crop on whole samples.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from streamprep.values.frames import Box, BoxTuple, Detection, Image


class RegionKind(enum.StrEnum):
    """Why a region is in a plan."""

    FULL = "full"  # the whole frame (the optional full-frame pass of ``tiles``)
    TILE = "tile"  # one tile of a tile plan
    MOTION = "motion"  # around something that moved
    RECHECK = "recheck"  # around a still, tracked object whose last check is ``recheck_s`` old
    SCAN = "scan"  # a tile of a whole-frame scan (motion mode: the first frame and after a lighting change)
    DETECTION = "detection"  # a detection's box with its margin: what a second model looks at ([[model.then]])


@dataclass(frozen=True, slots=True)
class Region:
    """A rectangle of the source frame in whole pixels: top-left (x, y), ``width`` × ``height``."""

    x: int
    y: int
    width: int
    height: int
    kind: RegionKind

    @property
    def x2(self) -> int:
        return self.x + self.width

    @property
    def y2(self) -> int:
        return self.y + self.height

    @property
    def box(self) -> BoxTuple:
        """(x1, y1, x2, y2) in source pixels."""
        return (float(self.x), float(self.y), float(self.x2), float(self.y2))

    @property
    def roi(self) -> tuple[float, float, float, float]:
        """(x, y, width, height): the ``region`` argument of ``Preprocessor.into`` / ``geometry``, so the model
        sees this crop at native resolution and the decoder's boxes come back in source pixels."""
        return (float(self.x), float(self.y), float(self.width), float(self.height))

    def contains(self, box: BoxTuple, fraction: float = 0.9) -> bool:
        """Whether at least ``fraction`` of ``box``'s area lies inside this region."""
        return inside_fraction(box, self.box) >= fraction


@dataclass(frozen=True, slots=True)
class Tracked:
    """An object the model found earlier, as the motion planner remembers it.

    ``key`` identifies it across frames (the planner's own numbering), ``detection`` is its last detection
    (source pixels), ``checked_pts`` the timestamp (seconds) of the last frame on which the model looked at
    it, ``misses`` how many checks in a row did not find it again.
    """

    key: int
    detection: Detection
    checked_pts: float
    misses: int = 0


@dataclass(frozen=True, slots=True)
class RegionPlan:
    """What the model runs on for one frame of a ``width`` × ``height`` source.

    ``regions`` are inferred (an empty tuple: no model run for this frame); ``carried`` are objects that
    were not looked at on this frame and whose last detections are repeated with ``carried: true``;
    ``checked`` are the keys of the tracked objects that this plan's regions look at again.
    """

    width: int
    height: int
    regions: tuple[Region, ...]
    carried: tuple[Tracked, ...] = ()
    checked: tuple[int, ...] = ()


def crop(image: Image, region: Region, pixel_format: str = "bgr24") -> Image:
    """The region of a frame at native resolution, in the frame's own pixel format.

    ``bgr24`` (``H×W×3``): a view, no copy. ``yuv420p`` and ``nv12`` (the layouts of
    :class:`~streamprep.values.frames.Frame`): a new array in the same layout holding the region's Y samples and its
    chroma samples (the region's corner and size must be even, as the planners make them), so the crop is
    preprocessed as a frame of the region's size, without converting the whole frame to BGR first.
    """
    yuv = pixel_format in ("yuv420p", "nv12")
    if not yuv and pixel_format != "bgr24":
        raise ValueError(f"pixel format {pixel_format!r} is not bgr24, yuv420p or nv12")
    h = image.shape[0] * 2 // 3 if yuv else image.shape[0]
    w = image.shape[1]
    if region.x < 0 or region.y < 0 or region.x2 > w or region.y2 > h or region.width <= 0 or region.height <= 0:
        raise ValueError(f"region {region.roi} lies outside the {w}x{h} frame")
    if not yuv:
        return image[region.y : region.y2, region.x : region.x2]
    if region.x % 2 or region.y % 2 or region.width % 2 or region.height % 2:
        raise ValueError(f"region {region.roi} of a {pixel_format} frame needs an even corner and size")
    x, y, cw, ch = region.x // 2, region.y // 2, region.width // 2, region.height // 2
    out = np.empty((region.height * 3 // 2, region.width), dtype=np.uint8)
    out[: region.height] = image[region.y : region.y2, region.x : region.x2]
    chroma = image[h:].reshape(-1)
    if pixel_format == "nv12":
        uv = chroma.reshape(h // 2, w)[y : y + ch, 2 * x : 2 * (x + cw)]
        out[region.height :] = uv.reshape(-1).reshape(ch, region.width)
        return out
    quarter = (h // 2) * (w // 2)
    flat = out[region.height :].reshape(-1)
    for k in (0, 1):
        plane = chroma[k * quarter : (k + 1) * quarter].reshape(h // 2, w // 2)
        flat[k * ch * cw : (k + 1) * ch * cw] = plane[y : y + ch, x : x + cw].reshape(-1)
    return out


def to_source(detections: tuple[Detection, ...] | list[Detection], region: Region) -> tuple[Detection, ...]:
    """Detections decoded on a :func:`crop` (boxes in the crop's pixels) moved to source pixels.

    Not needed when the region was passed to the preprocessor as its region of interest: those boxes are in
    source pixels already.
    """
    dx, dy = region.x, region.y
    return tuple(
        Detection(d.label, d.class_id, d.score, Box(d.box.x1 + dx, d.box.y1 + dy, d.box.x2 + dx, d.box.y2 + dy))
        for d in detections
    )


def box_of(detection: Detection) -> BoxTuple:
    b = detection.box
    return (b.x1, b.y1, b.x2, b.y2)


def inside_fraction(box: BoxTuple, outer: BoxTuple) -> float:
    """The fraction of ``box``'s area that lies inside ``outer`` (0 for an empty box)."""
    area = max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])
    if area <= 0:
        return 0.0
    w = min(box[2], outer[2]) - max(box[0], outer[0])
    h = min(box[3], outer[3]) - max(box[1], outer[1])
    return max(0.0, w) * max(0.0, h) / area


def _even_floor(v: float) -> int:
    return int(v) // 2 * 2


def place(cx: float, cy: float, width: int, height: int, frame_w: int, frame_h: int, kind: RegionKind) -> Region:
    """A ``width`` × ``height`` region centred on (cx, cy) as nearly as the frame allows: shifted inside it,
    never past an edge, its corner on even pixels (sizes larger than the frame are cut to the frame)."""
    width, height = min(width, frame_w), min(height, frame_h)
    x = min(max(0, _even_floor(cx - width / 2)), frame_w - width)
    y = min(max(0, _even_floor(cy - height / 2)), frame_h - height)
    return Region(x, y, width, height, kind)


def square_around(
    box: BoxTuple, side: int, margin: float, frame_w: int, frame_h: int, kind: RegionKind, step: int = 2
) -> Region:
    """The region the model looks at for an object at ``box``: a square of at least ``side`` (the model's
    input side in source pixels) and at least ``margin`` × the box's longer side, centred on the box and
    shifted inside the frame. Where that square does not fit the frame (taller or wider than it), the side
    is cut to the frame; a box wider (taller) than the square then widens (heightens) the region to cover
    it, up to the frame, so the region is not square only when the frame leaves no other choice. Sizes above
    ``side`` are rounded up to a multiple of ``step`` (even), so a source's regions come in few sizes."""
    bw, bh = box[2] - box[0], box[3] - box[1]
    s = min(max(side, _up(margin * max(bw, bh), step)), frame_w, frame_h)
    width = min(frame_w, max(s, _up(bw * margin, step) if bw * margin > s else s))
    height = min(frame_h, max(s, _up(bh * margin, step) if bh * margin > s else s))
    return place((box[0] + box[2]) / 2, (box[1] + box[3]) / 2, width, height, frame_w, frame_h, kind)


def _up(v: float, step: int = 2) -> int:
    """``v`` rounded up to a multiple of ``step`` (itself rounded up to even)."""
    step = max(2, step + step % 2)
    return int(-(-v // step)) * step


def box_region(box: BoxTuple, margin: float, frame_w: int, frame_h: int) -> Region:
    """The crop a second model looks at for a detection at ``box``: the box widened by ``margin`` × its width
    on the left and on the right and ``margin`` × its height above and below, in whole pixels covering it, cut
    to the frame. Its corner and width are even and its height a multiple of 4, so an I420 crop
    (:func:`crop`) holds whole chroma samples and converts to exactly the pixels of the whole frame's
    conversion. Raises ValueError for a box that leaves no such region inside the frame."""
    bw, bh = box[2] - box[0], box[3] - box[1]
    w_cap, h_cap = frame_w - frame_w % 2, frame_h - frame_h % 2
    x1 = max(0, _even_floor(max(0.0, box[0] - margin * bw)))
    y1 = max(0, _even_floor(max(0.0, box[1] - margin * bh)))
    x2 = min(w_cap, _up(box[2] + margin * bw))
    y2 = y1 + _up(box[3] + margin * bh - y1, 4)
    if y2 > h_cap:
        y2 = h_cap
        y1 = max(0, y2 - _up(y2 - y1, 4))
        if (y2 - y1) % 4:
            y2 -= 2
    if x2 - x1 < 2 or y2 - y1 < 4:
        raise ValueError(f"box {[round(v, 1) for v in box]} leaves no crop inside the {frame_w}x{frame_h} frame")
    return Region(x1, y1, x2 - x1, y2 - y1, RegionKind.DETECTION)
