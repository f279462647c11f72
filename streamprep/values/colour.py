"""Colour conversion of decoded video frames, as FFmpeg converts them.

YUV frames (I420 or NV12) carry a matrix (BT.601 or BT.709) and a range (limited or full); converting them
to BGR is the one piece of pixel work a frame value itself offers (:meth:`~streamprep.values.frames.Frame.to_bgr`),
and preprocessing's fast path uses the same matrices, so both live here, below every other layer.
"""

from __future__ import annotations

import functools
from typing import Any

import av
import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]
Image = npt.NDArray[np.uint8]

# The YCbCr matrices video streams carry, as luma weights (Kr, Kb); FFmpeg's enum values for them and
# for the ranges (libavutil/pixfmt.h: AVCOL_SPC_SMPTE170M, AVCOL_SPC_BT709, AVCOL_RANGE_MPEG/JPEG).
YUV_MATRICES: dict[str, tuple[float, float]] = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}
YUV_RANGES = ("limited", "full")
SWS_COLORSPACE = {"bt601": 6, "bt709": 1}
SWS_RANGE = {"limited": 1, "full": 2}


def yuv_to_bgr(matrix: str = "bt601", color_range: str = "limited") -> Array:
    """The 3×4 affine matrix (for ``cv2.transform``) from 8-bit Y, Cb, Cr to B, G, R."""
    kr, kb = YUV_MATRICES[matrix]
    kg = 1.0 - kr - kb
    ys, cs, y0 = (1.0, 1.0, 0.0) if color_range == "full" else (255.0 / 219.0, 255.0 / 224.0, 16.0)
    rows = np.array(
        [
            [ys, cs * 2 * (1 - kb), 0.0],
            [ys, -cs * 2 * (1 - kb) * kb / kg, -cs * 2 * (1 - kr) * kr / kg],
            [ys, 0.0, cs * 2 * (1 - kr)],
        ]
    )
    offset = -rows @ np.array([y0, 128.0, 128.0])
    return np.hstack([rows, offset[:, None]]).astype(np.float32)


@functools.cache
def ffmpeg_affine(matrix: str = "bt601", color_range: str = "limited") -> Array:
    """The affine map FFmpeg's swscale actually applies (for the fast path), fitted once per process.

    swscale's coefficients are those of :func:`yuv_to_bgr`, but its fixed-point arithmetic comes out about
    one level darker; fitting its output on a seeded random frame (chroma repeated 2×2, as swscale reads
    it, clipped values left out) captures that, so the fast path is unbiased against the exact one.
    """
    rng = np.random.default_rng(0)
    h = w = 128
    i420 = rng.integers(0, 256, (h * 3 // 2, w), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
    bgr = frame.reformat(
        format="bgr24", src_colorspace=SWS_COLORSPACE[matrix], src_color_range=SWS_RANGE[color_range]
    ).to_ndarray()
    quarter = (h // 2) * (w // 2)
    u, v = (i420[h:].reshape(-1)[k * quarter : (k + 1) * quarter].reshape(h // 2, w // 2) for k in (0, 1))
    x = np.stack([i420[:h], u.repeat(2, 0).repeat(2, 1), v.repeat(2, 0).repeat(2, 1), np.ones((h, w))], axis=-1)
    x = x.reshape(-1, 4).astype(np.float64)
    rows = []
    for c in range(3):
        y = bgr[..., c].reshape(-1).astype(np.float64)
        inside = (y > 2) & (y < 253)
        rows.append(np.linalg.lstsq(x[inside], y[inside], rcond=None)[0])
    return np.array(rows, dtype=np.float32)


def frame_to_bgr(image: Image, pixel_format: str, color_matrix: str = "bt601", color_range: str = "limited") -> Image:
    """A full-size I420 or NV12 frame as BGR, converted by FFmpeg's swscale with the stream's matrix and range."""
    if pixel_format == "nv12":
        image = nv12_to_i420(image)
    frame = av.VideoFrame.from_numpy_buffer(image, format="yuv420p")
    bgr = frame.reformat(
        format="bgr24", src_colorspace=SWS_COLORSPACE[color_matrix], src_color_range=SWS_RANGE[color_range]
    )
    return np.asarray(bgr.to_ndarray(), dtype=np.uint8)


def nv12_to_i420(image: Image) -> Image:
    """An NV12 frame (Y, then interleaved U and V) as I420 (Y, then U, then V): the same samples."""
    height = image.shape[0] * 2 // 3
    out = np.empty_like(image)
    out[:height] = image[:height]
    uv = image[height:].reshape(-1, 2)
    quarter = uv.shape[0]
    flat = out[height:].reshape(-1)
    flat[:quarter] = uv[:, 0]
    flat[quarter:] = uv[:, 1]
    return out
