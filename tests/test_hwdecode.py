"""Hardware decoding: the start-up probe says what it chose and why, every stream falls back to software,
and NV12 frames (what hardware decoders give) are preprocessed like I420 ones.

The development machines have no GPU: here the probe finds no usable device and the fallbacks run for
real. On a machine with one the same tests check that hardware decoding gives the same pictures."""

from __future__ import annotations

import logging
from typing import Any

import av
import numpy as np
import pytest
from conftest import RECORDINGS

from streamprep.config.schema import ModelConfig
from streamprep.inference.model import load_model
from streamprep.preprocess.spec import SpecOverrides
from streamprep.sources import hwdecode
from streamprep.sources.file import FileSource, decode, open_container, to_image
from streamprep.sources.hwdecode import Decoder
from streamprep.sources.skipping import DecodeOptions
from streamprep.values.frames import Frame

CLIP = RECORDINGS / "demo_720p.mp4"


class Counts:
    decoded = 0
    corrupt = 0


def planes(image: np.ndarray, fmt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, U, V of an I420 or NV12 frame array, whatever the layout."""
    h = image.shape[0] * 2 // 3
    w = image.shape[1]
    chroma = image[h:].reshape(-1)
    if fmt == "nv12":
        uv = chroma.reshape(h // 2, w // 2, 2)
        return image[:h], uv[..., 0], uv[..., 1]
    q = (h // 2) * (w // 2)
    return image[:h], chroma[:q].reshape(h // 2, w // 2), chroma[q:].reshape(h // 2, w // 2)


def decode_with(device: str | None, limit: int = 40) -> list[tuple[np.ndarray, str]]:
    container, stream = open_container(CLIP, "t")
    try:
        out = []
        for frame in decode(container, stream, Counts(), decoder=Decoder(stream, device, "t")):
            out.append(to_image(frame))
            if len(out) >= limit:
                break
        return out
    finally:
        container.close()


def test_off_means_software_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    hwdecode._chosen.pop("off", None)
    choice = hwdecode.probe("off")
    assert choice.device is None
    assert 'hardware decode: off (hwaccel = "off")' in caplog.text


def test_auto_probe_names_each_candidate_and_why(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    hwdecode._chosen.pop("auto", None)
    choice = hwdecode.probe("auto")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("hardware decode:")]
    assert len(lines) == 1, lines
    if choice.device is None:
        # every candidate is named with the reason it was not taken
        for device in hwdecode.AUTO_ORDER:
            assert f"{device}: " in lines[0]
        assert "decoding in software" in lines[0]
    else:
        assert f"{choice.device} (" in lines[0] and "chosen" in lines[0]
    assert hwdecode.probe("auto") is choice  # probed once per process


def test_a_device_this_build_lacks_is_refused_with_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    missing = next((d for d in hwdecode.AUTO_ORDER if d not in av.codec.hwaccel.hwdevices_available()), None)
    if missing is None:
        pytest.skip("this FFmpeg build has every candidate device type")
    caplog.set_level(logging.INFO)
    hwdecode._chosen.pop(missing, None)
    choice = hwdecode.probe(missing)
    assert choice.device is None
    assert f"{missing}: not in this PyAV's FFmpeg build" in caplog.text
    assert any(r.levelno == logging.WARNING for r in caplog.records), "asked for explicitly: a warning"


@pytest.mark.parametrize("device", ["cuda", "drm"])
def test_each_stream_falls_back_to_software_with_the_same_pictures(
    device: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``cuda``: on a machine without an NVIDIA GPU no device opens; ``drm`` has no H.264 decoder at all.
    Either way the stream decodes in software, says so, and gives exactly the software pictures."""
    caplog.set_level(logging.INFO)
    software = decode_with(None)
    chosen = decode_with(device)
    assert len(chosen) == len(software)
    for (a, fa), (b, fb) in zip(software, chosen, strict=True):
        for pa, pb in zip(planes(a, fa), planes(b, fb), strict=True):
            assert np.array_equal(pa, pb)
    if all(fmt == "yuv420p" for _, fmt in chosen):  # software it was: the log says why
        assert f"source t: {device}" in caplog.text or "hardware decode on cuda failed" in caplog.text
        assert "decoding in software" in caplog.text


class _BrokenDevice:
    """Stands in for a hardware decoder context that fails mid-stream (no GPU here to fail for real)."""

    is_hwaccel = True

    def __init__(self) -> None:
        self.calls = 0

    def decode(self, packet: Any) -> list[Any]:
        self.calls += 1
        raise av.error.ExternalError(-1, "device lost")


def test_a_hardware_failure_mid_stream_goes_on_in_software_from_the_next_keyframe(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    container, stream = open_container(RECORDINGS / "pan_1080p.mp4", "t")
    try:
        decoder = Decoder(stream, None, "t")
        broken = _BrokenDevice()
        decoder._ctx, decoder.device = broken, "cuda"
        packets = [p for p in container.demux(stream) if p.size]
        frames = []
        for packet in packets[1:]:  # the first keyframe is the one that fails: wait for the next
            frames += decoder.decode(packet)
        frames += decoder.drain()
    finally:
        container.close()
    assert broken.calls == 1 and decoder.device is None
    assert "hardware decode on cuda failed (device lost); decoding in software from the next keyframe" in caplog.text
    first_key = next(p for p in packets[1:] if p.is_keyframe)
    assert frames and frames[0].pts == first_key.pts
    assert all(f.pts >= first_key.pts for f in frames)


def test_file_source_with_an_unusable_device_replays_like_software() -> None:
    import asyncio

    async def pts(decoding: DecodeOptions) -> list[float | None]:
        return [f.pts async for f in FileSource("t", CLIP, 5, decoding=decoding).frames()]

    assert asyncio.run(pts(DecodeOptions(hwaccel="cuda"))) == asyncio.run(pts(DecodeOptions()))


@pytest.mark.parametrize("conversion", ["exact", "fast"])
def test_nv12_frames_preprocess_to_the_same_tensor_as_i420(conversion: str) -> None:
    cfg = ModelConfig(preprocess=SpecOverrides(color_conversion=conversion))
    pre = load_model(cfg).preprocessor
    with av.open(str(RECORDINGS / "pan_1080p.mp4")) as container:
        frame = next(container.decode(video=0))
    i420, fa = to_image(frame)
    nv12, fb = to_image(frame.reformat(format="nv12"))
    assert (fa, fb) == ("yuv420p", "nv12") and nv12.shape == i420.shape
    for region in (None, (100.0, 60.0, 900.0, 700.0), (101.0, 61.0, 899.0, 701.0)):  # odd: full-size path
        a, b = pre.new_batch(1), pre.new_batch(1)
        pre.into(i420, a[0], fa, region)
        pre.into(nv12, b[0], fb, region)
        assert np.array_equal(a, b), region
    made = Frame("t", 0, 0, 0.0, 0.0, 0.0, nv12, "nv12")
    assert (made.width, made.height) == (1920, 1080)


def test_odd_sized_nv12_frames_become_bgr() -> None:
    with av.open(str(CLIP)) as container:
        frame = next(container.decode(video=0))
    odd = frame.reformat(format="nv12", width=641, height=361)
    image, fmt = to_image(odd)
    assert fmt == "bgr24" and image.shape == (361, 641, 3)
