"""Small encoded test streams, generated with PyAV: every GOP structure frame skipping has to get right.

Each stream is 320x240, 30 fps (or variable), a few seconds of moving, textured content in which every
frame differs from every other (so frames can be told apart by their pixels). Kinds:

========================  ===========================================================================
``h264_bframes.mp4``      H.264, B-frames with a B-pyramid (reference B), closed GOPs every 30 frames
``h264_no_bframes.mp4``   H.264, no B-frames (every frame a reference), closed GOPs every 45 frames
``h264_nonref_b.mp4``     H.264, B-frames without pyramid (every B non-reference), GOPs every 60 frames
``h264_open_gop.mp4``     H.264, B-frames, open GOPs (non-IDR I-frames with leading B-frames)
``h264_vfr.mp4``          H.264, B-frames, variable frame rate (jittered timestamps, 1/90000)
``h264_bframes.ts``       MPEG-TS (Annex B, parameter sets in-band), B-frames, closed GOPs
``h264_open_gop.ts``      MPEG-TS, open GOPs
``h264_joined.ts``        MPEG-TS joined in the middle of a GOP (starts without a keyframe)
``h264_concat.ts``        two MPEG-TS clips back to back: timestamps go back in the middle
``hevc_closed.mp4``       HEVC (libx265), B-frames, closed GOPs (IDR)
``hevc_open_gop.ts``      HEVC in MPEG-TS, open GOPs (CRA with RASL pictures)
``hevc_temporal.mp4``     HEVC with three temporal sub-layers (non-reference pictures on the top one)
``mpeg4_bframes.mp4``     MPEG-4 Part 2 with B-frames: no reference flag to read (decode everything)
========================  ===========================================================================

HEVC kinds are made only when PyAV has libx265.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

WIDTH, HEIGHT = 320, 240


@dataclass(frozen=True)
class Kind:
    codec: str
    options: dict[str, str]
    frames: int = 96
    container: str = "mp4"
    vfr: bool = False
    nonref_expected: bool = True  # the stream has frames nothing refers to
    post: str = ""  # "join" (cut mid-GOP) or "concat" (two copies back to back)
    extra: dict[str, str] = field(default_factory=dict)


def _x264(params: str) -> dict[str, str]:
    return {"preset": "veryfast", "x264-params": f"scenecut=0:{params}"}


def _x265(params: str) -> dict[str, str]:
    return {"preset": "ultrafast", "x265-params": f"log-level=error:scenecut=0:{params}"}


KINDS: dict[str, Kind] = {
    "h264_bframes.mp4": Kind("libx264", _x264("keyint=30:min-keyint=30:bframes=3:b-pyramid=normal")),
    "h264_no_bframes.mp4": Kind("libx264", _x264("keyint=45:min-keyint=45:bframes=0"), nonref_expected=False),
    "h264_nonref_b.mp4": Kind("libx264", _x264("keyint=60:min-keyint=60:bframes=2:b-pyramid=none")),
    "h264_open_gop.mp4": Kind("libx264", _x264("keyint=30:min-keyint=30:bframes=3:open-gop=1")),
    "h264_vfr.mp4": Kind("libx264", _x264("keyint=40:min-keyint=40:bframes=3"), vfr=True),
    "h264_bframes.ts": Kind("libx264", _x264("keyint=30:min-keyint=30:bframes=3"), container="mpegts"),
    "h264_open_gop.ts": Kind("libx264", _x264("keyint=30:min-keyint=30:bframes=3:open-gop=1"), container="mpegts"),
    "h264_joined.ts": Kind("libx264", _x264("keyint=48:min-keyint=48:bframes=3"), container="mpegts", post="join"),
    "h264_concat.ts": Kind(
        "libx264", _x264("keyint=30:min-keyint=30:bframes=3"), frames=60, container="mpegts", post="concat"
    ),
    "hevc_closed.mp4": Kind("libx265", _x265("keyint=30:min-keyint=30:bframes=4:open-gop=0")),
    "hevc_open_gop.ts": Kind("libx265", _x265("keyint=30:min-keyint=30:bframes=4:open-gop=1"), container="mpegts"),
    "hevc_temporal.mp4": Kind("libx265", _x265("keyint=48:min-keyint=48:temporal-layers=3")),
    "mpeg4_bframes.mp4": Kind(
        "mpeg4", {"qscale": "4"}, nonref_expected=False, extra={"max_b_frames": "2", "gop_size": "30"}
    ),
}


def has_encoder(name: str) -> bool:
    try:
        av.Codec(name, "w")
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def available() -> list[str]:
    return [name for name, kind in KINDS.items() if has_encoder(kind.codec)]


def picture(i: int, t: float) -> np.ndarray:
    """Frame ``i`` at ``t`` seconds: a drifting colour gradient, a moving box and a binary frame counter."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    image = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[..., 0] = (x + 40 * t) % 256
    image[..., 1] = (y * 2 + 25 * t) % 256
    image[..., 2] = ((x + y) // 2 + 60 * np.sin(t)) % 256
    bx = int(20 + (WIDTH - 80) * (0.5 + 0.5 * np.sin(t * 1.3)))
    by = int(20 + (HEIGHT - 80) * (0.5 + 0.5 * np.cos(t * 0.9)))
    image[by : by + 40, bx : bx + 40] = (250, 250, 30)
    for bit in range(10):  # the frame number, so no two frames look alike
        value = 255 if i >> bit & 1 else 0
        image[HEIGHT - 12 : HEIGHT - 2, 4 + bit * 12 : 14 + bit * 12] = value
    return image


def _timestamps(kind: Kind) -> Iterator[tuple[int, Fraction]]:
    """(pts in the stream time base, seconds) per frame."""
    if not kind.vfr:
        for i in range(kind.frames):
            yield i, Fraction(i, 30)
        return
    rng = random.Random(1414)
    ticks = 0
    for _ in range(kind.frames):
        yield ticks, Fraction(ticks, 90000)
        ticks += rng.choice((1500, 2250, 3000, 3000, 3750, 6000, 9000))  # 16.7-100 ms


def encode(path: Path, name: str) -> Path:
    kind = KINDS[name]
    target = path if not kind.post else path.with_suffix(".part.ts")
    with av.open(str(target), "w", format=kind.container) as out:
        stream = out.add_stream(kind.codec, rate=30, options=dict(kind.options))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if kind.vfr:
            stream.codec_context.time_base = Fraction(1, 90000)
        for key, value in kind.extra.items():
            setattr(stream.codec_context, key, int(value))
        for i, (pts, t) in enumerate(_timestamps(kind)):
            frame = av.VideoFrame.from_ndarray(picture(i, float(t)), format="rgb24")
            frame.pts = pts
            if kind.vfr:
                frame.time_base = Fraction(1, 90000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    if kind.post == "join":
        data = target.read_bytes()
        start = (len(data) // 3) // 188 * 188  # a third in, on a TS packet boundary: inside a GOP
        path.write_bytes(data[start:])
        target.unlink()
    elif kind.post == "concat":
        data = target.read_bytes()
        path.write_bytes(data + data)
        target.unlink()
    return path


def make_all(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {name: encode(folder / name, name) for name in available()}
