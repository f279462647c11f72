"""Frame skipping: the frames sampling selects are exactly those decoding every frame selects.

Ground truth is plain PyAV decoding every frame of the stream and streamprep's sampler applied to every
frame's timestamp; streamprep's sources (which leave frames undecoded) must give the same frames: same
pts, same index among all frames of the stream, same pixels. On every bundled recording and on
generated streams of every GOP structure (``servers/streams.py``), through the file source (with
look-ahead) and the live source's decode loop (without), and over RTSP.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import pytest
from conftest import RECORDINGS, RtspServer
from servers import streams

from streamprep.config.resolve import resolve_sources
from streamprep.config.schema import parse
from streamprep.flow.queues import DropPolicy
from streamprep.sources import decode_options
from streamprep.sources.file import FileSource, Timeline, to_image
from streamprep.sources.live import LiveOptions, LiveSource
from streamprep.sources.nal import NalReader
from streamprep.sources.sampling import Sampler
from streamprep.sources.skipping import DecodeOptions, SampleMode
from streamprep.values.errors import ConfigError

RATES = (5.0, 2.0, 1.0, 0.4)


@dataclass(frozen=True)
class Decoded:
    """One frame of decoding everything: its pts (seconds), index in output order, pixel digest, keyframe."""

    pts: Fraction
    index: int
    digest: str
    key: bool


Picked = tuple[Fraction, int, str]


def digest(image: object) -> str:
    return hashlib.md5(memoryview(image)).hexdigest()  # type: ignore[arg-type]


def decode_everything(path: Path) -> list[Decoded]:
    """Every frame, with the presentation times a file source gives: the stream's own, kept monotonic
    where they jump back (two recordings joined), as :class:`~streamprep.sources.file.Timeline` does."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        timeline = Timeline("truth", 1 / Fraction(stream.average_rate or stream.guessed_rate or 30))
        return [
            Decoded(timeline.place(Fraction(f.pts) * stream.time_base), i, digest(to_image(f)[0]), bool(f.key_frame))
            for i, f in enumerate(container.decode(stream))
        ]


def selected(frames: list[Decoded], fps: float | None) -> list[Picked]:
    sampler = Sampler(fps)
    return [(f.pts, f.index, f.digest) for f in frames if sampler.keep(f.pts)]


async def collect(source: FileSource | LiveSource) -> list[Picked]:
    return [
        (Fraction(f.pts).limit_denominator(1 << 20), f.index, digest(f.image))
        async for f in source.frames()
        if f.pts is not None
    ]


def replay(path: Path, fps: float | None, decoding: DecodeOptions) -> tuple[list[Picked], FileSource]:
    source = FileSource("t", path, fps, decoding=decoding)
    return asyncio.run(collect(source)), source


def replay_live(path: Path, fps: float, decoding: DecodeOptions) -> tuple[list[Picked], LiveSource]:
    """The live source's decode loop (no look-ahead) on a file, unpaced, nothing dropped."""
    options = LiveOptions(handoff=1000, policy=DropPolicy.BLOCK, decoding=decoding)
    source = LiveSource("t", str(path), fps, options)
    return asyncio.run(collect(source)), source


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return streams.make_all(tmp_path_factory.mktemp("streams"))


@pytest.fixture(scope="session")
def truth() -> Callable[[Path], list[Decoded]]:
    cache: dict[Path, list[Decoded]] = {}

    def get(path: Path) -> list[Decoded]:
        if path not in cache:
            cache[path] = decode_everything(path)
        return cache[path]

    return get


def stream_path(generated: dict[str, Path], name: str) -> Path:
    if name not in generated:
        pytest.skip(f"PyAV has no {streams.KINDS[name].codec} encoder")
    return generated[name]


@pytest.mark.parametrize("name", sorted(p.name for p in RECORDINGS.glob("*.mp4")))
def test_recordings_select_the_same_frames_while_decoding_fewer(
    name: str, truth: Callable[[Path], list[Decoded]]
) -> None:
    path = RECORDINGS / name
    everything = truth(path)
    for fps in (5.0, 1.0, 0.3):
        frames, source = replay(path, fps, DecodeOptions())
        assert frames == selected(everything, fps), f"{name} at {fps} fps"
        assert source.counts.decoded + source.counts.skipped == len(everything)
        if len(everything) >= 60:  # the short colour boards (6 frames, one GOP) leave nothing to skip
            assert source.counts.skipped > 0, f"{name} at {fps} fps: something can be left out (GOP tails, B-frames)"


@pytest.mark.parametrize("name", sorted(streams.KINDS))
def test_every_stream_kind_selects_the_same_frames(
    name: str, generated: dict[str, Path], truth: Callable[[Path], list[Decoded]]
) -> None:
    path = stream_path(generated, name)
    everything = truth(path)
    kind = streams.KINDS[name]
    for fps in RATES:
        frames, source = replay(path, fps, DecodeOptions())
        assert frames == selected(everything, fps), f"{name} at {fps} fps"
        assert source.counts.decoded + source.counts.skipped >= len(everything)
        if kind.codec == "mpeg4":
            assert source.counts.skipped == 0, "nothing says which MPEG-4 Part 2 frames are references: decode all"
        elif kind.nonref_expected and fps == 5.0:
            assert source.counts.skipped > 0


def test_without_skipping_every_frame_is_decoded(generated: dict[str, Path]) -> None:
    path = stream_path(generated, "h264_bframes.mp4")
    on, with_skipping = replay(path, 5.0, DecodeOptions())
    off, without = replay(path, 5.0, DecodeOptions(skip=False))
    assert on == off
    assert (without.counts.decoded, without.counts.skipped) == (96, 0)
    assert with_skipping.counts.decoded < 60


@pytest.mark.parametrize(
    "name", ["h264_bframes.ts", "h264_nonref_b.mp4", "hevc_temporal.mp4", "h264_joined.ts", "h264_concat.ts"]
)
def test_live_decode_loop_selects_the_same_frames(name: str, generated: dict[str, Path]) -> None:
    path = stream_path(generated, name)
    for fps in (5.0, 1.0):
        on, source = replay_live(path, fps, DecodeOptions())
        off, everything = replay_live(path, fps, DecodeOptions(skip=False))
        assert on == off, f"{name} at {fps} fps"
        assert everything.counts.skipped == 0 and source.counts.skipped > 0
        assert source.counts.decoded + source.counts.skipped == everything.counts.decoded


def test_timestamps_going_back_are_followed_and_logged(
    generated: dict[str, Path], truth: Callable[[Path], list[Decoded]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamprep.sources.skipping")
    path = stream_path(generated, "h264_concat.ts")
    everything = truth(path)
    with av.open(str(path)) as container:
        raw = [f.pts for f in container.decode(container.streams.video[0])]
    assert any(b < a for a, b in itertools.pairwise(raw)), "pts really go back in the stream"
    assert all(b.pts > a.pts for a, b in itertools.pairwise(everything)), "the source keeps them monotonic"
    frames, source = replay(path, 2.0, DecodeOptions())
    assert frames == selected(everything, 2.0)
    assert "decoding every frame for now: timestamps go back" in caplog.text
    assert "in step again" in caplog.text
    assert source.counts.skipped > 0


@pytest.mark.parametrize(
    "name", ["h264_bframes.mp4", "h264_open_gop.ts", "hevc_open_gop.ts", "h264_vfr.mp4", "mpeg4_bframes.mp4"]
)
def test_keyframe_mode_decodes_only_the_keyframes_it_keeps(
    name: str, generated: dict[str, Path], truth: Callable[[Path], list[Decoded]]
) -> None:
    path = stream_path(generated, name)
    everything = truth(path)
    keyframes = [f for f in everything if f.key]
    for fps in (2.0, 0.5, None):
        sampler = Sampler(fps)
        expected = [(f.pts, f.index, f.digest) for f in keyframes if sampler.keep(f.pts)]
        frames, source = replay(path, fps, DecodeOptions(sample=SampleMode.KEYFRAMES))
        # the first keyframe at or after each slot boundary, with its true pts, index and pixels
        assert frames == expected, f"{name} at {fps}"
        assert source.counts.decoded == len(expected)
        assert source.counts.decoded + source.counts.skipped == len(everything)


def test_keyframe_mode_on_the_live_loop_does_not_wait_for_the_decoder_delay(generated: dict[str, Path]) -> None:
    path = stream_path(generated, "h264_bframes.ts")
    frames, source = replay_live(path, 1.0, DecodeOptions(sample=SampleMode.KEYFRAMES))
    assert [p for p, _, _ in frames] == [0, 1, 2, 3]  # keyframes every second, pts from the first
    assert source.counts.decoded == 4


@pytest.mark.slow
async def test_rtsp_camera_with_b_frames_leaves_frames_out_and_delivers_intact_ones(
    rtsp_server: Callable[..., RtspServer], generated: dict[str, Path], truth: Callable[[Path], list[Decoded]]
) -> None:
    for name, args in (("h264_bframes.mp4", ()), ("hevc_temporal.mp4", ("--hevc",))):
        path = stream_path(generated, name)
        known = {f.digest for f in truth(path)}
        server = rtsp_server("--file", str(path), *args)
        source = LiveSource("cam", server.url(), 5.0, LiveOptions(handoff=64, policy=DropPolicy.BLOCK))
        frames: list[Picked] = []

        async def take(n: int, source: LiveSource = source, frames: list[Picked] = frames) -> None:
            async for f in source.frames():
                frames.append((Fraction(f.pts or 0).limit_denominator(1 << 20), f.index, digest(f.image)))
                if len(frames) >= n:
                    return

        await asyncio.wait_for(take(20), 60)
        assert source.counts.skipped > 0, name
        # every delivered frame is pixel for pixel a frame of the file: no reference was left out
        assert all(d in known for _, _, d in frames), name
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(frames)]
        assert min(gaps) >= Fraction(1, 5) - Fraction(1, 30), gaps  # one per 0.2 s slot


def test_nal_reader_tells_references_from_headers() -> None:
    avcc = bytes([1, 0x64, 0, 0x1F, 0xFF, 0xE1]) + bytes(10)  # avcC: 4-byte lengths
    h264 = NalReader("h264", avcc)

    def unit(*headers: int) -> bytes:
        return b"".join(len(bytes([h, 0x88, 0x84])).to_bytes(4, "big") + bytes([h, 0x88, 0x84]) for h in headers)

    assert h264.read(unit(0x01)).reference is False  # nal_ref_idc 0, non-IDR slice
    assert h264.read(unit(0x41)).reference is True
    assert h264.read(unit(0x06, 0x01, 0x01)).reference is False  # SEI then two non-reference slices
    assert h264.read(unit(0x01, 0x21)).reference is True  # one slice of the picture is a reference
    idr = h264.read(unit(0x67, 0x68, 0x65))
    assert (idr.reference, idr.idr, idr.parameter_sets) == (True, True, True)
    assert h264.read(unit(0x06)).reference is None  # no picture in it
    assert h264.read(unit(0x01)[:-1]).reference is None  # length runs past the end
    assert h264.read(b"\x00\x00\x00\x01\x41\x9a\x00\x00\x01\x01\x9e").reference is None  # not length-prefixed
    annexb = NalReader("h264", None)
    assert annexb.read(b"\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x01\x9e\x00").reference is False
    assert annexb.read(b"\x00\x00\x01\x14\x01\x02").reference is None  # an SVC extension: not ours to judge
    assert NalReader("mpeg4", None).read(b"\x00\x00\x01\xb6\x50").reference is None

    hevc = NalReader("hevc", None)

    def hevc_unit(kind: int, tid: int) -> bytes:
        return b"\x00\x00\x01" + bytes([kind << 1, tid + 1, 0xAF])

    assert hevc.read(hevc_unit(0, 0)).reference is None  # TRAIL_N, but no SPS yet: unknown
    sps_three_layers = b"\x00\x00\x01" + bytes([33 << 1, 1, 0x05])  # sps_max_sub_layers_minus1 = 2
    assert hevc.read(sps_three_layers).parameter_sets
    assert hevc.read(hevc_unit(2, 2)).reference is False  # TSA_N on the top sub-layer
    assert hevc.read(hevc_unit(2, 1)).reference is True  # TSA_N below the top: higher layers may use it
    assert hevc.read(hevc_unit(1, 2)).reference is True  # TRAIL_R
    assert hevc.read(hevc_unit(19, 0)).idr and not hevc.read(hevc_unit(21, 0)).idr  # IDR_W_RADL / CRA
    assert hevc.read(hevc_unit(8, 2)).may_be_dropped  # RASL_N


def test_sampling_keys_and_source_overrides() -> None:
    cfg = parse(
        {
            "sample": "keyframes",
            "hwaccel": "off",
            "sources": [
                {"url": "a.mp4"},
                {"url": "b.mp4", "sample": "exact", "skip_frames": False},
            ],
        }
    )
    a, b = (decode_options(s) for s in resolve_sources(cfg))
    assert a == DecodeOptions(sample=SampleMode.KEYFRAMES, skip=True, hwaccel=None)
    assert b == DecodeOptions(sample=SampleMode.EXACT, skip=False, hwaccel=None)
    with pytest.raises(ConfigError, match="sample"):
        parse({"sample": "nearest"})
    with pytest.raises(ConfigError, match=r"sources\.0\.hwaccel: unknown hardware decoder 'gpu'"):
        parse({"sources": [{"url": "a.mp4", "hwaccel": "gpu"}]})
