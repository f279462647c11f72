"""The fast path: one frame into one slot of a preallocated batch tensor.

Order of work, chosen so that float work touches only model-size data:
crop (a view) → uint8 resize at model size → pad → colour order → layout → values.

Video frames in I420 (``yuv420p``) are converted to BGR first, exactly as FFmpeg converts them (its own
swscale, honouring the stream's matrix and range, at full size), so a tensor equals "decode to RGB with
FFmpeg, then resize". ``color_conversion = "fast"`` instead resizes the Y, U and V planes to model size and
converts there with the stream's matrix and range: cheaper, but chroma is interpolated from its
half-resolution plane and out-of-gamut values are clipped after resizing rather than before, which shows
at sharp colour edges (see the README for the measured difference).
Every value transform streamprep offers is a per-channel function of a uint8 pixel, so values are
one table look-up per element (``cv2.LUT``) straight into the batch buffer: exact to float rounding,
and one pass over the output. Per-image scalings (standardisation, min-max) build their table from
statistics of the resized image.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt

from streamprep.preprocess.geometry import Geometry, Region, Roi, plan, resolve
from streamprep.preprocess.spec import Color, DType, Interpolation, Layout, PreprocessSpec, Resize, Scaling
from streamprep.values.frames import Image

Array = npt.NDArray[Any]

_INTERPOLATION = {
    Interpolation.NEAREST: cv2.INTER_NEAREST,
    Interpolation.LINEAR: cv2.INTER_LINEAR,
    Interpolation.AREA: cv2.INTER_AREA,
    Interpolation.CUBIC: cv2.INTER_CUBIC,
}
_NUMPY_DTYPE: dict[DType, type[np.generic]] = {
    DType.FLOAT32: np.float32,
    DType.FLOAT16: np.float16,
    DType.UINT8: np.uint8,
    DType.INT8: np.int8,
}
# The YCbCr matrices video streams carry, as luma weights (Kr, Kb); FFmpeg's enum values for them and
# for the ranges (libavutil/pixfmt.h: AVCOL_SPC_SMPTE170M, AVCOL_SPC_BT709, AVCOL_RANGE_MPEG/JPEG).
YUV_MATRICES: dict[str, tuple[float, float]] = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}
YUV_RANGES = ("limited", "full")
_SWS_COLORSPACE = {"bt601": 6, "bt709": 1}
_SWS_RANGE = {"limited": 1, "full": 2}


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
        format="bgr24", src_colorspace=_SWS_COLORSPACE[matrix], src_color_range=_SWS_RANGE[color_range]
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


def affine_for(spec: PreprocessSpec, image: Image | None = None) -> tuple[Array, Array]:
    """Per-channel ``(a, b)`` such that the model value of pixel ``x`` is ``a * x + b`` (float64).

    Channels are in the model's colour order. ``image`` (model-size, model colour order) is needed for
    the per-image scalings only.
    """
    c = spec.channels
    ones, zeros = np.ones(c), np.zeros(c)
    if spec.scaling is Scaling.NONE:
        return ones, zeros
    if spec.scaling is Scaling.UNIT:
        return ones / 255.0, zeros
    if spec.scaling is Scaling.SYMMETRIC:
        return ones * (2.0 / 255.0), zeros - 1.0
    if spec.scaling is Scaling.MEAN_STD:
        mean = np.asarray(spec.mean[:c] if c == 3 else [np.mean(spec.mean)], dtype=np.float64)
        std = np.asarray(spec.std[:c] if c == 3 else [np.mean(spec.std)], dtype=np.float64)
        return 1.0 / (255.0 * std), -mean / std
    if image is None:
        raise ValueError(f"scaling {spec.scaling.value} needs the image")
    pixels = image.reshape(-1)
    if spec.scaling is Scaling.PER_IMAGE:
        average = float(pixels.mean(dtype=np.float64))
        adjusted = max(float(pixels.std(dtype=np.float64)), 1.0 / np.sqrt(pixels.size))
        return ones / adjusted, zeros - average / adjusted
    lo, hi = float(pixels.min()), float(pixels.max())
    span = hi - lo if hi > lo else 1.0
    return ones / span, zeros - lo / span


def quantisation(spec: PreprocessSpec) -> tuple[float, int]:
    """``(scale, zero_point)`` for an integer input: real value ``(q - zero_point) * scale``."""
    scale = spec.quant_scale if spec.quant_scale is not None else 1.0
    if spec.quant_zero_point is not None:
        return scale, spec.quant_zero_point
    return scale, (-128 if spec.dtype is DType.INT8 and spec.quant_scale is None else 0)


def value_tables(spec: PreprocessSpec, a: Array, b: Array) -> Array:
    """A ``[channels, 256]`` table of model values for every uint8 pixel value, in the model dtype."""
    x = np.arange(256, dtype=np.float64)
    real = a[:, None] * x[None, :] + b[:, None]
    if spec.dtype in (DType.FLOAT32, DType.FLOAT16):
        return real.astype(_NUMPY_DTYPE[spec.dtype])
    scale, zero_point = quantisation(spec)
    info = np.iinfo(np.dtype(_NUMPY_DTYPE[spec.dtype]))
    q: Array = np.clip(np.rint(real / scale) + zero_point, info.min, info.max)
    return q.astype(_NUMPY_DTYPE[spec.dtype])


class Preprocessor:
    """Writes frames into batch tensors according to one :class:`PreprocessSpec`. Thread-safe."""

    def __init__(self, spec: PreprocessSpec, roi: Roi | None = None) -> None:
        self.spec = spec
        self.roi = roi
        self.dtype = np.dtype(_NUMPY_DTYPE[spec.dtype])
        self._interp = _INTERPOLATION[spec.interpolation]
        self._per_image = spec.scaling in (Scaling.PER_IMAGE, Scaling.MINMAX)
        self._static_tables = None if self._per_image else value_tables(spec, *affine_for(spec))
        planar_float = spec.layout is Layout.NCHW and spec.dtype is DType.FLOAT32 and spec.color is not Color.GRAY
        self._plane_affine = affine_for(spec) if planar_float and not self._per_image else None
        self._identity = (
            self._static_tables is not None
            and spec.dtype is DType.UINT8
            and bool(np.array_equal(self._static_tables, np.tile(np.arange(256), (spec.channels, 1))))
        )
        self._geometries: dict[tuple[int, int, Region | None, tuple[int, int] | None], Geometry] = {}
        self._local = threading.local()

    def new_batch(self, batch: int) -> Array:
        """A tensor for ``batch`` frames, to be reused across batches (with ``resize = rect``, the largest
        input; :meth:`batch_for` gives the view a batch uses)."""
        return np.zeros(self.spec.tensor_shape(batch), dtype=self.dtype)

    def input_size(self, width: int, height: int, region: Region | None = None) -> tuple[int, int]:
        """The input (width, height) a frame of this size gets on its own: the spec's, or with
        ``resize = rect`` the frame's (see :func:`~streamprep.preprocess.geometry.rect_size`)."""
        if self.spec.resize is not Resize.RECT:
            return self.spec.width, self.spec.height
        geo = self.geometry(width, height, region)
        return geo.out_width, geo.out_height

    def batch_for(self, tensor: Array, frames: Sequence[tuple[int, int, Region | None]]) -> Array:
        """The tensor a batch of frames (width, height, region) is written into: ``tensor`` itself, or with
        ``resize = rect`` a view of its memory shaped for the largest input among the frames (the others are
        letterboxed into it, as Ultralytics batches rect inputs). ``tensor`` is one :meth:`new_batch` made,
        or a view this returned earlier."""
        if self.spec.resize is not Resize.RECT:
            return tensor
        sizes = [self.input_size(w, h, region) for w, h, region in frames]
        width, height = max(s[0] for s in sizes), max(s[1] for s in sizes)
        root = tensor
        while isinstance(root.base, np.ndarray):
            root = root.base
        spec = self.spec.model_copy(update={"width": width, "height": height})
        shape = spec.tensor_shape(self.spec.batch or len(frames))
        flat = root.reshape(-1)
        if flat.size < int(np.prod(shape)):
            raise ValueError(f"a batch of {shape} does not fit a tensor of {root.shape}")
        return flat[: int(np.prod(shape))].reshape(shape)

    def geometry(
        self, width: int, height: int, region: Region | None = None, out: tuple[int, int] | None = None
    ) -> Geometry:
        """The geometry for a frame size and region of interest (``region`` or the preprocessor's own roi);
        ``out`` is the input size of a ``resize = rect`` batch (default: the frame's own)."""
        key = (width, height, region, out if self.spec.resize is Resize.RECT else None)
        geo = self._geometries.get(key)
        if geo is None:
            roi = resolve(region, width, height) if region is not None else self.roi
            geo = plan(self.spec, width, height, roi, key[3])
            self._geometries[key] = geo
        return geo

    def _scratch(self, key: tuple[object, ...], shape: tuple[int, ...], fill: int = 0) -> Image:
        """A per-thread uint8 work buffer, made once per geometry and reused for every frame."""
        buffers: dict[tuple[object, ...], Image] | None = getattr(self._local, "buffers", None)
        if buffers is None:
            buffers = self._local.buffers = {}
        buf = buffers.get(key)
        if buf is None:
            buf = buffers[key] = np.full(shape, fill, dtype=np.uint8)
        return buf

    def exact_bgr(
        self, image: Image, color_matrix: str = "bt601", color_range: str = "limited", pixel_format: str = "yuv420p"
    ) -> Image:
        """An I420 (or NV12) frame converted to full-size BGR by FFmpeg's swscale, as
        ``to_ndarray(format="bgr24")`` converts the decoded frame (a reformatter per thread, so swscale's
        state is built once)."""
        reformatter = getattr(self._local, "reformatter", None)
        if reformatter is None:
            reformatter = self._local.reformatter = av.video.reformatter.VideoReformatter()
        if pixel_format == "nv12":
            image = _nv12_to_i420(image)  # the same samples: converted as the I420 frame would be
        frame = av.VideoFrame.from_numpy_buffer(image, format="yuv420p")
        bgr = reformatter.reformat(
            frame,
            format="bgr24",
            src_colorspace=_SWS_COLORSPACE[color_matrix],
            src_color_range=_SWS_RANGE[color_range],
        )
        return np.asarray(bgr.to_ndarray(), dtype=np.uint8)

    def _at_model_size(
        self,
        image: Image,
        pixel_format: str = "bgr24",
        region: Region | None = None,
        color_matrix: str = "bt601",
        color_range: str = "limited",
        out: tuple[int, int] | None = None,
        geometry: Geometry | None = None,
    ) -> tuple[Array, Geometry]:
        """The frame cropped, resized and padded to model size, as BGR (a per-thread buffer)."""
        yuv = pixel_format in ("yuv420p", "nv12")
        height = image.shape[0] * 2 // 3 if yuv else image.shape[0]
        geo = geometry or self.geometry(image.shape[1], height, region, out)
        if yuv and (self.spec.color_conversion == "exact" or not _even(geo)):
            image, yuv = self.exact_bgr(image, color_matrix, color_range, pixel_format), False
        size = (geo.resized_width, geo.resized_height)
        small: Array
        if yuv:
            affine = ffmpeg_affine(color_matrix, color_range)
            small = self._resize_i420(image, geo, affine, interleaved=pixel_format == "nv12")
        else:
            crop = image[geo.crop_y : geo.crop_y + geo.crop_height, geo.crop_x : geo.crop_x + geo.crop_width]
            if not geo.padded:
                dst = self._scratch(("resized", geo), (geo.out_height, geo.out_width, 3))
                cv2.resize(crop, size, dst=dst, interpolation=self._interp)
                return dst, geo
            small = cv2.resize(crop, size, interpolation=self._interp)
        if not geo.padded:
            return small, geo
        canvas = self._scratch(("canvas", geo), (geo.out_height, geo.out_width, 3), self.spec.pad_value)
        _place(small, canvas, geo.pad_x, geo.pad_y)
        return canvas, geo

    def _resize_i420(self, image: Image, geo: Geometry, affine: Array, interleaved: bool = False) -> Image:
        """Resize the Y, U and V planes of an I420 frame (or Y and the interleaved UV plane of an NV12 one)
        straight to model size, then convert colour there with ``affine`` (the stream's matrix and range, see
        :func:`ffmpeg_affine`).

        Chroma is interpolated from its own half-resolution plane and clipping happens after the resize,
        so the result differs from converting the full frame first at sharp colour edges.
        """
        h, w = geo.src_height, geo.src_width
        size = (geo.resized_width, geo.resized_height)
        x, y, cw, ch = geo.crop_x, geo.crop_y, geo.crop_width, geo.crop_height
        quarter = (h // 2) * (w // 2)
        chroma = image[h:].reshape(-1)
        yuv = self._scratch(("yuv", geo), (3, geo.resized_height, geo.resized_width))
        cv2.resize(image[y : y + ch, x : x + cw], size, dst=yuv[0], interpolation=self._interp)
        if interleaved:
            uv = chroma.reshape(h // 2, w // 2, 2)[y // 2 : (y + ch) // 2, x // 2 : (x + cw) // 2]
            small_uv = self._scratch(("uv", geo), (geo.resized_height, geo.resized_width, 2))
            cv2.resize(uv, size, dst=small_uv, interpolation=self._interp)
            cv2.split(small_uv, [yuv[1], yuv[2]])
        for k in () if interleaved else (1, 2):
            plane = chroma[(k - 1) * quarter : k * quarter].reshape(h // 2, w // 2)
            crop = plane[y // 2 : (y + ch) // 2, x // 2 : (x + cw) // 2]
            cv2.resize(crop, size, dst=yuv[k], interpolation=self._interp)
        packed = self._scratch(("yuv444", geo), (geo.resized_height, geo.resized_width, 3))
        cv2.merge([yuv[0], yuv[1], yuv[2]], dst=packed)
        bgr = self._scratch(("yuv-bgr", geo), (geo.resized_height, geo.resized_width, 3))
        cv2.transform(packed, affine, dst=bgr)
        return bgr

    def model_image(self, image: Image) -> tuple[Array, Geometry]:
        """The frame at model size as a new uint8 HxWxC array in the model's colour order."""
        bgr, geo = self._at_model_size(image)
        if self.spec.color is Color.RGB:
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), geo
        if self.spec.color is Color.GRAY:
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[:, :, None], geo
        return bgr.copy(), geo

    def _tables(self, pixels: Image) -> Array:
        """The value tables: fixed for the spec, or from this image's statistics (per-image scalings)."""
        if self._static_tables is not None:
            return self._static_tables
        return value_tables(self.spec, *affine_for(self.spec, pixels))

    def into(
        self,
        image: Image,
        out: Array,
        pixel_format: str = "bgr24",
        region: Region | None = None,
        color_matrix: str = "bt601",
        color_range: str = "limited",
        geometry: Geometry | None = None,
    ) -> Geometry:
        """Preprocess one frame (``bgr24``, ``yuv420p`` or ``nv12``, see :class:`~streamprep.values.frames.Frame`)
        into ``out``, one batch slot (``tensor[i]``), cropping ``region`` first. ``color_matrix`` (``bt601``,
        ``bt709``) and ``color_range`` (``limited``, ``full``) say how a YUV frame is converted.
        ``geometry`` replaces the planned one (test-time augmentation's scaled views). Returns the geometry."""
        size = (out.shape[2], out.shape[1]) if self.spec.layout is Layout.NCHW else (out.shape[1], out.shape[0])
        bgr, geo = self._at_model_size(image, pixel_format, region, color_matrix, color_range, size, geometry)
        shape = (geo.out_height, geo.out_width)
        if self.spec.color is Color.GRAY:
            gray = self._scratch(("gray", geo), shape)
            cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY, dst=gray)
            tables = self._tables(gray)
            target = out[0] if self.spec.layout is Layout.NCHW else out[:, :, 0]
            _write(gray, tables[0:1], target, self._identity)
            return geo
        tables = self._tables(bgr)
        if self.spec.layout is Layout.NHWC:
            pixels = bgr
            if self.spec.color is Color.RGB:
                pixels = self._scratch(("rgb", geo), (*shape, 3))
                cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=pixels)
            _write(pixels, tables, out, self._identity)
            return geo
        planes = self._scratch(("planes", geo), (3, *shape))
        cv2.split(bgr, [planes[0], planes[1], planes[2]])
        order = (2, 1, 0) if self.spec.color is Color.RGB else (0, 1, 2)
        for c, src in enumerate(order):
            if self._plane_affine is not None:
                # one float32 multiply-add per element: a little cheaper than the table look-up
                a, b = self._plane_affine
                cv2.addWeighted(planes[src], a[c], planes[src], 0.0, b[c], dst=out[c], dtype=cv2.CV_32F)
            else:
                _write(planes[src], tables[c : c + 1], out[c], self._identity)
        return geo


def _place(small: Array, canvas: Array, x: int, y: int) -> None:
    """Copy ``small`` into ``canvas`` with its top-left corner at (x, y), either of which may be negative:
    what falls outside the canvas is cut off."""
    h, w = canvas.shape[:2]
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(w, x + small.shape[1]), min(h, y + small.shape[0])
    np.copyto(canvas[y0:y1, x0:x1], small[y0 - y : y1 - y, x0 - x : x1 - x])


def frame_to_bgr(image: Image, pixel_format: str, color_matrix: str = "bt601", color_range: str = "limited") -> Image:
    """A full-size I420 or NV12 frame as BGR, converted by FFmpeg's swscale with the stream's matrix and range."""
    if pixel_format == "nv12":
        image = _nv12_to_i420(image)
    frame = av.VideoFrame.from_numpy_buffer(image, format="yuv420p")
    bgr = frame.reformat(
        format="bgr24", src_colorspace=_SWS_COLORSPACE[color_matrix], src_color_range=_SWS_RANGE[color_range]
    )
    return np.asarray(bgr.to_ndarray(), dtype=np.uint8)


def _nv12_to_i420(image: Image) -> Image:
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


def _even(geo: Geometry) -> bool:
    """I420 planes can be cropped and resized separately only on even coordinates and sizes."""
    values = (geo.src_width, geo.src_height, geo.crop_x, geo.crop_y, geo.crop_width, geo.crop_height)
    return all(v % 2 == 0 for v in (*values, geo.resized_width, geo.resized_height))


def _write(pixels: Image, tables: Array, out: Array, identity: bool) -> None:
    if identity:
        np.copyto(out, pixels, casting="unsafe")
    else:
        _lookup(pixels, tables, out)


def _lookup(pixels: Image, tables: Array, out: Array) -> None:
    """``out[..., c] = tables[c][pixels[..., c]]`` in one pass."""
    channels = tables.shape[0]
    if out.dtype in (np.float32, np.uint8, np.int8):
        lut = tables.T.reshape(256, 1, channels) if channels > 1 else tables.reshape(256, 1)
        cv2.LUT(pixels, np.ascontiguousarray(lut), dst=out)
        return
    if channels == 1:
        np.take(tables[0], pixels.reshape(out.shape), out=out)
        return
    for c in range(channels):
        np.take(tables[c], pixels[..., c], out=out[..., c])
