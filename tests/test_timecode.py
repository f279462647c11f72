"""The clock server's time code: written into a frame, read back after H.264 and after preprocessing."""

from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
from conftest import photo
from servers.timecode import (
    MODULO_MS,
    band_height,
    cell_edges,
    luma_row,
    read_ms,
    read_time,
    tensor_luma,
    unwrap,
)

from streamprep.preprocess.kernels import Preprocessor
from streamprep.preprocess.spec import Color, DType, Layout, PreprocessSpec, Resize, Scaling

W, H = 1280, 720
MS = 1_764_600_123_456  # a Unix time in milliseconds


def i420_frame(ms: int, background: np.ndarray) -> np.ndarray:
    """A 1280x720 I420 frame as the clock server makes it: a photo, and the code in a neutral band on top."""
    yuv = cv2.cvtColor(cv2.resize(background, (W, H)), cv2.COLOR_BGR2YUV_I420)
    rows = band_height(H)
    yuv[:rows] = np.frombuffer(luma_row(ms, W), np.uint8)
    chroma = (W // 2) * (rows // 2)  # U and V planes are stored as rows of W/2 packed two to a row of W
    flat = yuv.reshape(-1)
    flat[W * H : W * H + chroma] = 128
    flat[W * H + (W // 2) * (H // 2) : W * H + (W // 2) * (H // 2) + chroma] = 128
    return yuv


def test_round_trip_and_checksum() -> None:
    frame = i420_frame(MS, photo("coffee"))
    assert read_ms(frame[:H]) == MS % MODULO_MS
    assert read_time(frame[:H], MS / 1000 + 3600) == pytest.approx(MS / 1000)
    edges = cell_edges(W)
    damaged = frame[:H].copy()
    cell = 5  # one data bit flipped in every row of the band: the CRC refuses it
    damaged[:, edges[cell] : edges[cell + 1]] = 255 - damaged[:, edges[cell] : edges[cell + 1]]
    assert read_ms(damaged) is None
    assert read_ms(cv2.cvtColor(photo("coffee"), cv2.COLOR_BGR2GRAY)) is None, "no code in a plain photo"


def test_unwrap_picks_the_nearest_time() -> None:
    ms = MS % MODULO_MS
    assert unwrap(ms, MS / 1000) == pytest.approx(MS / 1000)
    assert unwrap(ms, MS / 1000 + MODULO_MS / 1000 * 0.4) == pytest.approx(MS / 1000)
    assert unwrap(ms, MS / 1000 + MODULO_MS / 1000 * 0.6) == pytest.approx(MS / 1000 + MODULO_MS / 1000)


def test_survives_h264() -> None:
    """x264 at a low bit rate, as the clock server encodes (ultrafast, zerolatency): every frame reads back."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = W, H, "yuv420p"
    codec.time_base = Fraction(1, 30)
    codec.bit_rate = 1_000_000
    codec.options = {"preset": "ultrafast", "tune": "zerolatency"}
    decoder = av.CodecContext.create("h264", "r")
    stamps = [MS + 33 * i for i in range(12)]
    backgrounds = [photo(name) for name in ("coffee", "chelsea", "astronaut")]
    decoded = []
    for i, ms in enumerate(stamps):
        frame = av.VideoFrame.from_ndarray(i420_frame(ms, backgrounds[i % 3]), format="yuv420p")
        frame.pts = i
        for packet in codec.encode(frame):
            decoded += decoder.decode(packet)
    for packet in codec.encode(None):
        decoded += decoder.decode(packet)
    assert [read_ms(f.to_ndarray()[:H]) for f in decoded] == [ms % MODULO_MS for ms in stamps]


SPECS = [
    PreprocessSpec(
        width=256, height=256, resize=Resize.STRETCH, layout=Layout.NHWC, dtype=DType.UINT8, scaling=Scaling.NONE
    ),
    PreprocessSpec(width=256, height=256, resize=Resize.LETTERBOX, layout=Layout.NCHW, scaling=Scaling.UNIT),
    PreprocessSpec(width=320, height=320, resize=Resize.LETTERBOX, layout=Layout.NCHW, scaling=Scaling.MEAN_STD),
    PreprocessSpec(
        width=224, height=224, resize=Resize.STRETCH, layout=Layout.NHWC, color=Color.BGR, scaling=Scaling.SYMMETRIC
    ),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.resize.value}-{s.width}-{s.layout.value}-{s.scaling.value}")
def test_survives_preprocessing(spec: PreprocessSpec) -> None:
    """Read back from the very tensor streamprep hands to a model, stretched or letterboxed, any scaling."""
    pre = Preprocessor(spec)
    tensor = pre.new_batch(1)
    pre.into(i420_frame(MS, photo("chelsea")), tensor[0], "yuv420p")
    assert read_ms(tensor_luma(tensor, spec.layout.value)) == MS % MODULO_MS
