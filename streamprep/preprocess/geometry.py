"""Where each model-input pixel comes from in the source frame, and the way back.

Every geometric transform streamprep applies is "take an integer crop of the source, resize it to
``resized``, place it at ``pad`` in the model input". A :class:`Geometry` holds exactly that, so the
forward map is ``model = (src - crop_origin) * scale + pad`` and the inverse is its exact inverse.
A negative ``pad`` places the resized crop partly outside the input: only the window the input covers
is kept (torchvision's Resize followed by CenterCrop).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streamprep.preprocess.spec import PreprocessSpec, Resize
from streamprep.values.errors import FrameError

FloatArray = npt.NDArray[np.floating]


@dataclass(frozen=True, slots=True)
class Roi:
    """A region of interest in source pixels (x, y, width, height), applied before anything else."""

    x: int
    y: int
    width: int
    height: int

    def describe(self) -> str:
        return f"[{self.x}, {self.y}, {self.width}, {self.height}] (x, y, width, height in pixels)"


@dataclass(frozen=True, slots=True)
class Geometry:
    src_width: int
    src_height: int
    crop_x: int
    crop_y: int
    crop_width: int
    crop_height: int
    resized_width: int
    resized_height: int
    pad_x: int
    pad_y: int
    out_width: int
    out_height: int

    @property
    def scale_x(self) -> float:
        return self.resized_width / self.crop_width

    @property
    def scale_y(self) -> float:
        return self.resized_height / self.crop_height

    @property
    def padded(self) -> bool:
        return (self.resized_width, self.resized_height) != (self.out_width, self.out_height)

    def forward(self, xy: FloatArray) -> FloatArray:
        """Source-frame points ``[..., 2]`` (x, y) to model-input points."""
        out = np.empty_like(xy, dtype=np.float64)
        out[..., 0] = (xy[..., 0] - self.crop_x) * self.scale_x + self.pad_x
        out[..., 1] = (xy[..., 1] - self.crop_y) * self.scale_y + self.pad_y
        return out

    def inverse(self, xy: FloatArray) -> FloatArray:
        """Model-input points ``[..., 2]`` (x, y) to source-frame points."""
        out = np.empty_like(xy, dtype=np.float64)
        out[..., 0] = (xy[..., 0] - self.pad_x) / self.scale_x + self.crop_x
        out[..., 1] = (xy[..., 1] - self.pad_y) / self.scale_y + self.crop_y
        return out

    def boxes_to_source(self, boxes: FloatArray) -> FloatArray:
        """Model-input boxes ``[N, 4]`` (x1, y1, x2, y2) to source pixels, clipped to the crop."""
        pts = self.inverse(np.asarray(boxes, dtype=np.float64).reshape(-1, 2, 2)).reshape(-1, 4)
        np.clip(pts[:, 0::2], self.crop_x, self.crop_x + self.crop_width, out=pts[:, 0::2])
        np.clip(pts[:, 1::2], self.crop_y, self.crop_y + self.crop_height, out=pts[:, 1::2])
        return pts


Region = tuple[float, float, float, float]  # x, y, width, height: pixels, or fractions when all are <= 1


def resolve(region: Region, src_width: int, src_height: int) -> Roi:
    """A region of interest as given in the config (pixels, or fractions of the frame) in pixels."""
    x, y, w, h = region
    if all(0 <= v <= 1 for v in region):
        return Roi(round(x * src_width), round(y * src_height), round(w * src_width), round(h * src_height))
    return Roi(round(x), round(y), round(w), round(h))


def rect_size(spec: PreprocessSpec, width: int, height: int) -> tuple[int, int]:
    """The input size ``resize = rect`` gives a ``width``×``height`` region, as Ultralytics' LetterBox with
    ``auto=True``: scaled to fit ``spec.width``×``spec.height``, each side padded up to the nearest size that
    differs from the full one by a multiple of ``spec.stride``."""
    r = min(spec.width / width, spec.height / height)
    rw, rh = max(1, round(width * r)), max(1, round(height * r))

    def padded(full: int, inner: int) -> int:
        return full - (full - inner) // spec.stride * spec.stride

    return padded(spec.width, rw), padded(spec.height, rh)


def plan(
    spec: PreprocessSpec,
    src_width: int,
    src_height: int,
    roi: Roi | None = None,
    out: tuple[int, int] | None = None,
) -> Geometry:
    """The geometry ``spec`` applies to a ``src_width``×``src_height`` frame.

    ``out`` (width, height) is the input size for ``resize = rect``, where it varies: the frame's own
    :func:`rect_size`, or a larger one shared by a batch (the frame is then letterboxed into it, centred).
    """
    if roi is None:
        roi = Roi(0, 0, src_width, src_height)
    if roi.width <= 0 or roi.height <= 0 or roi.x < 0 or roi.y < 0:
        raise FrameError(f"region of interest {roi.describe()} is empty or negative")
    if roi.x + roi.width > src_width or roi.y + roi.height > src_height:
        raise FrameError(f"region of interest {roi.describe()} lies outside the {src_width}x{src_height} frame")
    out_w, out_h = spec.width, spec.height
    cx, cy, cw, ch = roi.x, roi.y, roi.width, roi.height
    if spec.resize is Resize.RECT:
        out_w, out_h = out if out is not None else rect_size(spec, cw, ch)
    rw, rh, px, py = out_w, out_h, 0, 0
    if spec.resize in (Resize.LETTERBOX, Resize.RECT):
        # rect scales by the bounding size, whatever (larger) input a batch shares, so a frame looks the same
        # in every batch
        r = min(spec.width / cw, spec.height / ch) if spec.resize is Resize.RECT else min(out_w / cw, out_h / ch)
        rw, rh = max(1, min(out_w, round(cw * r))), max(1, min(out_h, round(ch * r)))
        if spec.anchor == "center" or spec.resize is Resize.RECT:
            px, py = (out_w - rw) // 2, (out_h - rh) // 2
    elif spec.resize is Resize.CENTER_CROP:
        r = max(out_w / cw, out_h / ch)
        cx, cy, cw, ch = _centred(cx, cy, cw, ch, min(cw, round(out_w / r)), min(ch, round(out_h / r)))
    elif spec.resize is Resize.SHORTER_CROP:
        # exactly torchvision's Resize(round(size / crop_fraction)) then CenterCrop(size): the shorter side
        # to that length, the longer one truncated; the crop's offsets rounded (Python's round), or, where
        # the resized image is smaller than the input, padding split as CenterCrop pads
        short = round(min(out_w, out_h) / spec.crop_fraction)
        rw, rh = (short, int(short * ch / cw)) if cw <= ch else (int(short * cw / ch), short)
        px, py = _centre_offset(rw, out_w), _centre_offset(rh, out_h)
    return Geometry(src_width, src_height, cx, cy, cw, ch, rw, rh, px, py, out_w, out_h)


def _centre_offset(resized: int, out: int) -> int:
    """Where torchvision's CenterCrop puts a ``resized`` length in an ``out`` one (negative: cut off)."""
    return -round((resized - out) / 2.0) if resized >= out else (out - resized) // 2


def _centred(x: int, y: int, w: int, h: int, new_w: int, new_h: int) -> tuple[int, int, int, int]:
    return x + (w - new_w) // 2, y + (h - new_h) // 2, new_w, new_h
