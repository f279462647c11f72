"""Preprocessing parity on real photos, against independent references.

References: OpenCV's ``cv2.dnn.blobFromImageWithParams`` where it applies, and the textbook float64
formulas in NumPy. Geometry is checked exactly, and boxes survive a round trip through the inverse.
"""

from __future__ import annotations

import itertools

import av
import cv2
import numpy as np
import pytest
from conftest import photo

from streamprep.preprocess.geometry import Roi, plan
from streamprep.preprocess.kernels import Preprocessor
from streamprep.preprocess.spec import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Color,
    DType,
    Interpolation,
    Layout,
    PreprocessSpec,
    Resize,
    Scaling,
)
from streamprep.values.errors import FrameError

PHOTOS = ["astronaut", "chelsea", "coffee"]
INTERP = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC}


def run(spec: PreprocessSpec, image: np.ndarray, roi: Roi | None = None) -> np.ndarray:
    pre = Preprocessor(spec, roi)
    out = pre.new_batch(2)
    out[:] = 77  # a stale buffer: everything must be overwritten
    pre.into(image, out[1])
    return out[1]


def reference_pixels(spec: PreprocessSpec, image: np.ndarray, roi: Roi | None = None) -> np.ndarray:
    """Model-size uint8 HxWxC in the model's colour order, built independently with NumPy slicing."""
    h, w = image.shape[:2]
    if roi is not None:
        image = image[roi.y : roi.y + roi.height, roi.x : roi.x + roi.width]
        h, w = image.shape[:2]
    W, H = spec.width, spec.height
    if spec.resize is Resize.STRETCH:
        small = cv2.resize(image, (W, H), interpolation=INTERP[spec.interpolation.value])
    elif spec.resize is Resize.LETTERBOX:
        r = min(W / w, H / h)
        rw, rh = round(w * r), round(h * r)
        small = np.full((H, W, 3), spec.pad_value, np.uint8)
        x0, y0 = ((W - rw) // 2, (H - rh) // 2) if spec.anchor == "center" else (0, 0)
        small[y0 : y0 + rh, x0 : x0 + rw] = cv2.resize(image, (rw, rh), interpolation=INTERP[spec.interpolation.value])
    elif spec.resize is Resize.CENTER_CROP:
        r = max(W / w, H / h)
        cw, ch = min(w, round(W / r)), min(h, round(H / r))
        x0, y0 = (w - cw) // 2, (h - ch) // 2
        small = cv2.resize(image[y0 : y0 + ch, x0 : x0 + cw], (W, H), interpolation=INTERP[spec.interpolation.value])
    else:  # torchvision: Resize(round(min(W, H) / crop_fraction)), then CenterCrop((H, W))
        size = round(min(W, H) / spec.crop_fraction)
        nw, nh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        resized = cv2.resize(image, (nw, nh), interpolation=INTERP[spec.interpolation.value])
        # CenterCrop pads a side that is too short (split (d // 2, d - d // 2)), then crops at rounded offsets
        dx, dy = max(0, W - nw), max(0, H - nh)
        border = (dy // 2, dy - dy // 2, dx // 2, dx - dx // 2)
        resized = cv2.copyMakeBorder(resized, *border, cv2.BORDER_CONSTANT, value=(spec.pad_value,) * 3)
        nh, nw = resized.shape[:2]
        top, left = round((nh - H) / 2.0), round((nw - W) / 2.0)
        small = resized[top : top + H, left : left + W]
    if spec.color is Color.RGB:
        return small[:, :, ::-1]
    if spec.color is Color.GRAY:
        return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)[:, :, None]
    return small


def reference_values(spec: PreprocessSpec, pixels: np.ndarray) -> np.ndarray:
    """The textbook formulas in float64."""
    x = pixels.astype(np.float64)
    if spec.scaling is Scaling.NONE:
        y = x
    elif spec.scaling is Scaling.UNIT:
        y = x / 255.0
    elif spec.scaling is Scaling.SYMMETRIC:
        y = x / 127.5 - 1.0
    elif spec.scaling is Scaling.MEAN_STD:
        c = pixels.shape[2]
        mean = np.array(spec.mean if c == 3 else [np.mean(spec.mean)])
        std = np.array(spec.std if c == 3 else [np.mean(spec.std)])
        y = (x / 255.0 - mean) / std
    elif spec.scaling is Scaling.PER_IMAGE:  # tf.image.per_image_standardization
        y = (x - x.mean()) / max(x.std(), 1.0 / np.sqrt(x.size))
    else:  # min-max
        y = (x - x.min()) / (x.max() - x.min())
    if spec.layout is Layout.NCHW:
        y = y.transpose(2, 0, 1)
    return y


FLOAT_CASES = list(
    itertools.product(
        PHOTOS,
        list(Scaling),
        [Layout.NCHW, Layout.NHWC],
        [Color.RGB, Color.BGR, Color.GRAY],
        [Resize.STRETCH, Resize.LETTERBOX, Resize.CENTER_CROP, Resize.SHORTER_CROP],
    )
)


@pytest.mark.parametrize(("name", "scaling", "layout", "color", "resize"), FLOAT_CASES)
def test_float32_matches_textbook_formulas(
    name: str, scaling: Scaling, layout: Layout, color: Color, resize: Resize
) -> None:
    spec = PreprocessSpec(width=224, height=160, scaling=scaling, layout=layout, color=color, resize=resize)
    image = photo(name)
    got = run(spec, image)
    want = reference_values(spec, reference_pixels(spec, image))
    assert got.dtype == np.float32
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("size", [(224, 224), (320, 320), (640, 640), (352, 256)])
def test_stretch_mean_std_matches_opencv_blob(name: str, size: tuple[int, int]) -> None:
    image = photo(name)
    spec = PreprocessSpec(width=size[0], height=size[1], scaling=Scaling.MEAN_STD, color=Color.RGB)
    params = cv2.dnn.Image2BlobParams()
    params.scalefactor = (*(float(v) for v in 1.0 / (255.0 * np.array(IMAGENET_STD))), 0.0)
    params.mean = (*(float(v) for v in 255.0 * np.array(IMAGENET_MEAN)), 0.0)
    params.size = size
    params.swapRB = True
    blob = cv2.dnn.blobFromImageWithParams(image, params)[0]
    assert np.abs(run(spec, image) - blob).max() <= 1e-5


@pytest.mark.parametrize("name", PHOTOS)
def test_unit_nhwc_bgr_matches_opencv_blob(name: str) -> None:
    image = photo(name)
    spec = PreprocessSpec(width=320, height=320, scaling=Scaling.UNIT, color=Color.BGR, layout=Layout.NHWC)
    params = cv2.dnn.Image2BlobParams()
    params.scalefactor = (1 / 255.0, 1 / 255.0, 1 / 255.0, 0.0)
    params.size = (320, 320)
    params.datalayout = cv2.DNN_LAYOUT_NHWC
    blob = cv2.dnn.blobFromImageWithParams(image, params)[0]
    assert np.abs(run(spec, image) - blob).max() <= 1e-5


@pytest.mark.parametrize("name", PHOTOS)
def test_center_crop_is_within_one_level_of_opencv(name: str) -> None:
    """OpenCV resizes the whole image then crops; streamprep crops then resizes (less work)."""
    image = photo(name)
    spec = PreprocessSpec(width=224, height=224, scaling=Scaling.UNIT, color=Color.BGR, resize=Resize.CENTER_CROP)
    params = cv2.dnn.Image2BlobParams()
    params.scalefactor = (1 / 255.0, 1 / 255.0, 1 / 255.0, 0.0)
    params.size = (224, 224)
    params.paddingmode = cv2.dnn.DNN_PMODE_CROP_CENTER
    blob = cv2.dnn.blobFromImageWithParams(image, params)[0]
    diff = np.abs(run(spec, image) - blob)
    assert diff.max() <= 2 / 255.0 + 1e-6
    assert diff.mean() < 0.5 / 255.0


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("layout", [Layout.NCHW, Layout.NHWC])
@pytest.mark.parametrize("resize", [Resize.STRETCH, Resize.LETTERBOX])
def test_uint8_is_exact(name: str, layout: Layout, resize: Resize) -> None:
    spec = PreprocessSpec(width=256, height=192, scaling=Scaling.NONE, dtype=DType.UINT8, layout=layout, resize=resize)
    image = photo(name)
    want = reference_pixels(spec, image)
    if layout is Layout.NCHW:
        want = want.transpose(2, 0, 1)
    got = run(spec, image)
    assert got.dtype == np.uint8
    assert np.array_equal(got, want)


@pytest.mark.parametrize("name", PHOTOS)
def test_int8_quantised_is_exact(name: str) -> None:
    spec = PreprocessSpec(
        width=224, height=224, scaling=Scaling.SYMMETRIC, dtype=DType.INT8, quant_scale=1 / 128, quant_zero_point=0
    )
    image = photo(name)
    real = reference_values(spec, reference_pixels(spec, image))
    want = np.clip(np.rint(real * 128), -128, 127).astype(np.int8)
    assert np.array_equal(run(spec, image), want)


def test_int8_raw_pixels_shift_by_128() -> None:
    spec = PreprocessSpec(width=64, height=64, scaling=Scaling.NONE, dtype=DType.INT8)
    image = photo("coffee")
    want = (reference_pixels(spec, image).astype(np.int16) - 128).astype(np.int8).transpose(2, 0, 1)
    assert np.array_equal(run(spec, image), want)


@pytest.mark.parametrize("scaling", [Scaling.MEAN_STD, Scaling.UNIT, Scaling.PER_IMAGE])
def test_float16(scaling: Scaling) -> None:
    spec = PreprocessSpec(width=160, height=160, scaling=scaling, dtype=DType.FLOAT16)
    image = photo("astronaut")
    got = run(spec, image)
    want = reference_values(spec, reference_pixels(spec, image))
    assert got.dtype == np.float16
    assert np.abs(got.astype(np.float64) - want).max() <= np.abs(want).max() * 2**-10


@pytest.mark.parametrize("interp", list(Interpolation))
def test_interpolations(interp: Interpolation) -> None:
    spec = PreprocessSpec(width=200, height=120, scaling=Scaling.NONE, dtype=DType.UINT8, interpolation=interp)
    image = photo("chelsea")
    assert np.array_equal(run(spec, image), reference_pixels(spec, image).transpose(2, 0, 1))


def test_letterbox_geometry_is_exact() -> None:
    image = photo("chelsea")  # 451x300
    spec = PreprocessSpec(
        width=320,
        height=320,
        resize=Resize.LETTERBOX,
        scaling=Scaling.NONE,
        dtype=DType.UINT8,
        layout=Layout.NHWC,
        color=Color.BGR,
        pad_value=114,
    )
    geo = plan(spec, 451, 300)
    assert (geo.resized_width, geo.resized_height, geo.pad_x, geo.pad_y) == (320, 213, 0, 53)
    out = run(spec, image)
    assert (out[:53] == 114).all() and (out[53 + 213 :] == 114).all()
    assert np.array_equal(out[53 : 53 + 213], cv2.resize(image, (320, 213)))
    top_left = plan(spec.model_copy(update={"anchor": "top_left"}), 451, 300)
    assert (top_left.pad_x, top_left.pad_y) == (0, 0)


def test_roi_is_applied_first() -> None:
    image = photo("astronaut")
    roi = Roi(100, 50, 300, 200)
    spec = PreprocessSpec(
        width=150, height=100, scaling=Scaling.NONE, dtype=DType.UINT8, layout=Layout.NHWC, color=Color.BGR
    )
    assert np.array_equal(run(spec, image, roi), reference_pixels(spec, image, roi))
    geo = plan(spec, 512, 512, roi)
    np.testing.assert_allclose(geo.boxes_to_source(np.array([[0.0, 0.0, 150.0, 100.0]])), [[100, 50, 400, 250]])


@pytest.mark.parametrize("resize", list(Resize))
@pytest.mark.parametrize("src", [(1920, 1080), (1280, 720), (451, 300), (300, 451), (640, 640)])
def test_boxes_round_trip_within_half_a_pixel(resize: Resize, src: tuple[int, int]) -> None:
    spec = PreprocessSpec(width=320, height=256, resize=resize)
    geo = plan(spec, *src)
    rng = np.random.default_rng(7)
    x1 = rng.uniform(geo.crop_x, geo.crop_x + geo.crop_width * 0.6, 200)
    y1 = rng.uniform(geo.crop_y, geo.crop_y + geo.crop_height * 0.6, 200)
    boxes = np.stack([x1, y1, x1 + geo.crop_width * 0.3, y1 + geo.crop_height * 0.3], axis=1)
    model_boxes = geo.forward(boxes.reshape(-1, 2, 2)).reshape(-1, 4)
    back = geo.boxes_to_source(model_boxes)
    assert np.abs(back - boxes).max() <= 0.5
    # and the forward map puts the crop's corners on the placed image's corners
    corners = geo.forward(
        np.array(
            [[geo.crop_x, geo.crop_y], [geo.crop_x + geo.crop_width, geo.crop_y + geo.crop_height]], dtype=np.float64
        )
    )
    np.testing.assert_allclose(
        corners, [[geo.pad_x, geo.pad_y], [geo.pad_x + geo.resized_width, geo.pad_y + geo.resized_height]]
    )


def test_bad_roi_is_refused() -> None:
    spec = PreprocessSpec(width=64, height=64)
    with pytest.raises(FrameError, match="outside the 100x100 frame"):
        plan(spec, 100, 100, Roi(50, 50, 80, 10))


def i420(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.cvtColor(image[: h - h % 2, : w - w % 2], cv2.COLOR_BGR2YUV_I420)


def ffmpeg_bgr(yuv: np.ndarray) -> np.ndarray:
    """FFmpeg's own conversion of an untagged (BT.601 limited) I420 frame, through PyAV."""
    return av.VideoFrame.from_ndarray(yuv, format="yuv420p").to_ndarray(format="bgr24")


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("resize", [Resize.STRETCH, Resize.LETTERBOX, Resize.CENTER_CROP])
def test_yuv420p_frames_convert_as_ffmpeg_then_resize(name: str, resize: Resize) -> None:
    """By default an I420 frame is converted by FFmpeg at full size, then preprocessed like any BGR frame."""
    yuv = i420(photo(name))
    spec = PreprocessSpec(width=224, height=224, scaling=Scaling.NONE, dtype=DType.UINT8, resize=resize)
    pre = Preprocessor(spec)
    got, want = pre.new_batch(1), pre.new_batch(1)
    geo_yuv = pre.into(yuv, got[0], "yuv420p")
    geo_bgr = pre.into(ffmpeg_bgr(yuv), want[0])
    assert geo_yuv == geo_bgr
    assert np.array_equal(got, want)


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("resize", [Resize.STRETCH, Resize.LETTERBOX, Resize.CENTER_CROP])
def test_yuv420p_fast_path_resizes_planes_then_converts(name: str, resize: Resize) -> None:
    """With color_conversion = fast, the planes are resized first: within chroma-interpolation error of
    FFmpeg converting the whole frame first."""
    yuv = i420(photo(name))
    bgr = ffmpeg_bgr(yuv)
    spec = PreprocessSpec(
        width=224, height=224, scaling=Scaling.NONE, dtype=DType.UINT8, resize=resize, color_conversion="fast"
    )
    pre = Preprocessor(spec)
    got, want = pre.new_batch(1), pre.new_batch(1)
    geo_yuv = pre.into(yuv, got[0], "yuv420p")
    geo_bgr = pre.into(bgr, want[0])
    assert geo_yuv == geo_bgr
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert diff.mean() < 1.0
    assert np.percentile(diff, 99) <= 6


def test_yuv420p_fast_path_with_odd_geometry_converts_first() -> None:
    yuv = i420(photo("chelsea"))  # 450x300: letterboxed to 225x150, odd
    spec = PreprocessSpec(
        width=225,
        height=225,
        resize=Resize.LETTERBOX,
        scaling=Scaling.NONE,
        dtype=DType.UINT8,
        color_conversion="fast",
    )
    pre = Preprocessor(spec)
    got, want = pre.new_batch(1), pre.new_batch(1)
    pre.into(yuv, got[0], "yuv420p")
    pre.into(ffmpeg_bgr(yuv), want[0])
    assert np.array_equal(got, want)


def test_region_in_fractions_or_pixels_per_call() -> None:
    image = photo("astronaut")  # 512x512
    spec = PreprocessSpec(
        width=128, height=64, scaling=Scaling.NONE, dtype=DType.UINT8, layout=Layout.NHWC, color=Color.BGR
    )
    pre = Preprocessor(spec)
    by_fraction, by_pixels, whole = pre.new_batch(1), pre.new_batch(1), pre.new_batch(1)
    geo = pre.into(image, by_fraction[0], region=(0.25, 0.5, 0.5, 0.25))
    assert (geo.crop_x, geo.crop_y, geo.crop_width, geo.crop_height) == (128, 256, 256, 128)
    pre.into(image, by_pixels[0], region=(128, 256, 256, 128))
    pre.into(image, whole[0])
    assert np.array_equal(by_fraction, by_pixels)
    assert np.array_equal(by_fraction[0], cv2.resize(image[256:384, 128:384], (128, 64)))
    assert not np.array_equal(by_fraction, whole)
