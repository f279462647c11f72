"""Video frames become exactly the RGB FFmpeg makes of them, whatever matrix and range the stream is tagged with.

The reference is what anyone can run: decode with PyAV, ``frame.to_ndarray(format="rgb24")`` (FFmpeg's own
conversion; it equals ``ffmpeg -pix_fmt rgb24``), then ``cv2.resize(INTER_LINEAR)``; letterbox pads with 114.
The recordings are the colour boards of ``recordings/`` (photos edge to edge, saturated bars, a 4-pixel
checkerboard of primaries) in BT.601 limited, BT.709 limited and BT.601 full range.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import RECORDINGS

from streamprep.preprocess.kernels import Preprocessor, ffmpeg_affine, yuv_to_bgr
from streamprep.preprocess.spec import Color, DType, Layout, PreprocessSpec, Resize, Scaling
from streamprep.sources.file import FileSource
from streamprep.values.frames import Frame

CLIPS = {
    "colour_601_540p": ("bt601", "limited"),
    "colour_709_720p": ("bt709", "limited"),
    "colour_full_540p": ("bt601", "full"),
}
SIZES = (224, 256, 640)


def reference(rgb: np.ndarray, size: int, resize: str) -> np.ndarray:
    h, w = rgb.shape[:2]
    if resize == "stretch":
        return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)
    r = min(size / w, size / h)
    rw, rh = round(w * r), round(h * r)
    out = np.full((size, size, 3), 114, np.uint8)
    x0, y0 = (size - rw) // 2, (size - rh) // 2
    out[y0 : y0 + rh, x0 : x0 + rw] = cv2.resize(rgb, (rw, rh), interpolation=cv2.INTER_LINEAR)
    return out


def pyav_rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


def streamprep_frames(path: Path) -> list[Frame]:
    async def collect() -> list[Frame]:
        return [f async for f in FileSource(path.stem, path, None).frames()]

    return asyncio.run(collect())


def pixels_spec(size: int, resize: str, conversion: str = "exact") -> PreprocessSpec:
    """A spec whose tensor is the model-size RGB pixels themselves."""
    return PreprocessSpec(
        width=size,
        height=size,
        resize=Resize(resize),
        color=Color.RGB,
        scaling=Scaling.NONE,
        layout=Layout.NHWC,
        dtype=DType.UINT8,
        color_conversion=conversion,  # type: ignore[arg-type]
    )


def differences(
    frames: list[Frame], rgbs: list[np.ndarray], spec: PreprocessSpec, tags: tuple[str, str] | None = None
) -> np.ndarray:
    pre = Preprocessor(spec)
    out = pre.new_batch(1)
    diffs = []
    for frame, rgb in zip(frames, rgbs, strict=True):
        matrix, rng = tags or (frame.color_matrix, frame.color_range)
        pre.into(frame.image, out[0], frame.pixel_format, None, matrix, rng)
        diffs.append(np.abs(out[0].astype(np.int16) - reference(rgb, spec.width, spec.resize.value)))
    return np.stack(diffs)


@pytest.fixture(scope="module")
def decoded() -> dict[str, tuple[list[Frame], list[np.ndarray]]]:
    paths = {name: RECORDINGS / f"{name}.mp4" for name in CLIPS}
    return {name: (streamprep_frames(path), pyav_rgb(path)) for name, path in paths.items()}


@pytest.mark.parametrize("name", list(CLIPS))
def test_frames_carry_the_stream_matrix_and_range(name: str, decoded: dict) -> None:
    frames, _ = decoded[name]
    assert len(frames) == 6
    assert {(f.pixel_format, f.color_matrix, f.color_range) for f in frames} == {("yuv420p", *CLIPS[name])}


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", list(CLIPS))
def test_default_path_matches_ffmpeg_then_resize(name: str, size: int, resize: str, decoded: dict) -> None:
    frames, rgbs = decoded[name]
    diff = differences(frames, rgbs, pixels_spec(size, resize))
    assert diff.mean() <= 0.5 and diff.max() <= 8, (diff.mean(), diff.max())


@pytest.mark.parametrize("name", ["colour_709_720p", "colour_full_540p"])
def test_fast_path_honours_the_stream_tags(name: str, decoded: dict) -> None:
    """The plane-wise option converts with the stream's matrix and range: far closer than BT.601 limited."""
    frames, rgbs = decoded[name]
    spec = pixels_spec(256, "stretch", "fast")
    honoured = differences(frames, rgbs, spec)
    forced = differences(frames, rgbs, spec, ("bt601", "limited"))
    assert honoured.mean() < 3.0, honoured.mean()
    assert forced.mean() > 1.4 * honoured.mean(), (forced.mean(), honoured.mean())


def test_fast_path_is_an_option_and_differs_at_colour_edges(decoded: dict) -> None:
    """Why it is not the default: chroma at half resolution, clipped after resizing."""
    frames, rgbs = decoded["colour_601_540p"]
    diff = differences(frames, rgbs, pixels_spec(256, "stretch", "fast"))
    assert diff.max() > 8


def test_preprocess_writes_the_tensor_of_the_frame_shown_at_a_time(tmp_path: Path) -> None:
    clip = RECORDINGS / "colour_709_720p.mp4"
    out = tmp_path / "t.npy"
    proc = subprocess.run(
        [sys.executable, "-m", "streamprep", "preprocess", str(clip), "--at", "0.2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "frame at 0.167 s (bt709 limited range)" in proc.stderr
    tensor = np.load(out)
    # the bundled SSD: 256x256 uint8 NHWC RGB, stretch; the frame shown at 0.2 s of a 12 fps clip is frame 2
    expected = cv2.resize(pyav_rgb(clip)[2], (256, 256), interpolation=cv2.INTER_LINEAR)
    assert tensor.shape == (1, 256, 256, 3)
    assert np.array_equal(tensor[0], expected)


def test_preprocess_refuses_a_time_after_the_end(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamprep",
            "preprocess",
            str(RECORDINGS / "colour_601_540p.mp4"),
            "--at",
            "3",
            "--out",
            str(tmp_path / "t.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3
    assert "after the end (0.500 s)" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
@pytest.mark.parametrize("rng", ["limited", "full"])
def test_fast_path_matrix_is_ffmpegs(matrix: str, rng: str) -> None:
    """The fast path's affine map, fitted to swscale, has the textbook coefficients of the matrix and range;
    only its offsets differ (swscale comes out up to about 1.5 levels darker)."""
    fitted, formula = ffmpeg_affine(matrix, rng), yuv_to_bgr(matrix, rng)
    assert np.abs(fitted[:, :3] - formula[:, :3]).max() < 0.01
    assert np.all(fitted[:, 3] <= formula[:, 3]) and np.all(fitted[:, 3] > formula[:, 3] - 2.0)
