"""Build the short H.264/MP4 test recordings in ``recordings/`` from real photos.

Each clip is a sequence of slow Ken Burns shots (zoom and pan over a still photo,
placed over a blurred, darkened copy of itself) with hard cuts between shots, so
that a COCO detector finds a known subject (person, cat, cup) in known time ranges.

The colour clips (``colour_*``) show a board with sharp colour edges instead: the five photos
tiled edge to edge next to saturated colour bars and a fine checkerboard of primaries, in
BT.601 limited range, BT.709 limited range and BT.601 full range, each tagged accordingly, for
checking that video frames are converted to RGB exactly as FFmpeg converts them.

The output is deterministic: frames are rendered with fixed OpenCV warps, converted to
yuv420p with numpy (the clip's matrix and range), and encoded by libx264 with a single thread
and fixed settings, so two runs give byte-identical files.

Usage (from the repository root)::

    .venv/bin/python scripts/make_recordings.py [PHOTO_DIR] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PHOTO_DIR = REPO_ROOT.parent / "shared" / "photos"
OUTPUT_DIR = REPO_ROOT / "recordings"

Rgb = npt.NDArray[np.uint8]

# FFmpeg enum values (libavutil/pixfmt.h) used to tag the output.
AVCOL_PRI_SMPTE170M = 6
AVCOL_TRC_SMPTE170M = 6
AVCOL_SPC_SMPTE170M = 6
AVCOL_PRI_BT709 = 1
AVCOL_TRC_BT709 = 1
AVCOL_SPC_BT709 = 1
AVCOL_RANGE_MPEG = 1
AVCOL_RANGE_JPEG = 2

# Luma weights (Kr, Kb) and FFmpeg tags (primaries, transfer, matrix) per colour matrix.
MATRICES = {
    "bt601": ((0.299, 0.114), (AVCOL_PRI_SMPTE170M, AVCOL_TRC_SMPTE170M, AVCOL_SPC_SMPTE170M)),
    "bt709": ((0.2126, 0.0722), (AVCOL_PRI_BT709, AVCOL_TRC_BT709, AVCOL_SPC_BT709)),
}
BOARD = "colour board"  # a Shot.photo that is the colour board, not a photo file

CFR_TIME_BASE = Fraction(1, 30)
VFR_TIME_BASE = Fraction(1, 90_000)
VFR_JITTER_SEED = 20_240_601


@dataclass(frozen=True)
class Shot:
    """A Ken Burns move over one photo, shown from ``start`` to ``end`` seconds.

    ``zoom`` is the displayed photo height as a multiple of the frame height, at the
    start and end of the shot. ``focus`` is the point of the photo, in normalised
    photo coordinates (x, y), that sits at the centre of the frame at start and end.
    Both are eased with a smoothstep between the two ends.
    """

    photo: str
    start: float
    end: float
    zoom: tuple[float, float]
    focus: tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class Clip:
    """One output file: frame size, quality, shots and frame timestamps.

    ``ticks`` are the frame timestamps in units of ``time_base``; the last frame lasts
    until the end of the last shot. A variable-rate clip is encoded without B-frames.
    """

    name: str
    width: int
    height: int
    crf: int
    shots: tuple[Shot, ...]
    time_base: Fraction
    ticks: tuple[int, ...]
    variable_rate: bool = False
    x264_extra: str = ""  # more x264-params
    matrix: str = "bt601"
    full_range: bool = False
    gop: int = 60


def cfr_ticks(duration: float, fps: int) -> tuple[int, ...]:
    """Frame timestamps, in units of 1/fps, for a constant-rate clip of ``duration`` seconds."""
    return tuple(range(round(duration * fps)))


def vfr_ticks() -> tuple[int, ...]:
    """Frame timestamps, in 1/90000 s ticks, for the variable-rate clip (10.0 s in all).

    0-3 s at 30 fps, 3-5 s at 24 fps, 5-7 s at 10 fps, 7-10 s with seeded jittered
    intervals of 20-80 ms (the last interval is cut so the clip ends at 10.0 s).
    """
    tick = VFR_TIME_BASE.denominator
    ticks = [i * tick // 30 for i in range(90)]
    ticks += [3 * tick + i * tick // 24 for i in range(48)]
    ticks += [5 * tick + i * tick // 10 for i in range(20)]
    rng = random.Random(VFR_JITTER_SEED)
    t = 7 * tick
    while t < 10 * tick - tick // 50:
        ticks.append(t)
        t += rng.randint(20, 80) * tick // 1000
    return tuple(ticks)


DEMO_720P = Clip(
    name="demo_720p.mp4",
    width=1280,
    height=720,
    crf=28,
    shots=(
        Shot("astronaut.png", 0.0, 4.0, (1.0, 1.12), ((0.5, 0.5), (0.47, 0.45))),
        Shot("chelsea.png", 4.0, 8.0, (1.0, 1.0), ((0.44, 0.5), (0.58, 0.5))),
        Shot("coffee.png", 8.0, 12.0, (1.0, 1.2), ((0.5, 0.5), (0.48, 0.42))),
    ),
    time_base=CFR_TIME_BASE,
    ticks=cfr_ticks(12.0, 30),
)

PAN_1080P = Clip(
    name="pan_1080p.mp4",
    width=1920,
    height=1080,
    crf=30,
    shots=(
        Shot("chelsea.png", 0.0, 5.0, (0.97, 1.03), ((0.44, 0.5), (0.56, 0.5))),
        Shot("astronaut.png", 5.0, 10.0, (1.1, 1.0), ((0.42, 0.46), (0.55, 0.5))),
    ),
    time_base=CFR_TIME_BASE,
    ticks=cfr_ticks(10.0, 30),
)

VFR_720P = Clip(
    name="vfr_720p.mp4",
    width=1280,
    height=720,
    crf=28,
    shots=(
        Shot("coffee.png", 0.0, 5.0, (1.0, 1.15), ((0.46, 0.5), (0.5, 0.44))),
        Shot("astronaut.png", 5.0, 10.0, (1.12, 1.0), ((0.46, 0.44), (0.5, 0.5))),
    ),
    time_base=VFR_TIME_BASE,
    ticks=vfr_ticks(),
    variable_rate=True,
)


def colour_clip(name: str, width: int, height: int, matrix: str, full_range: bool) -> Clip:
    """A 0.5 s, 12 fps clip of the colour board: sharp at frame 0, then a slow zoom towards its centre."""
    return Clip(
        name=name,
        width=width,
        height=height,
        crf=20,
        shots=(Shot(BOARD, 0.0, 0.5, (1.0, 1.03), ((0.5, 0.5), (0.51, 0.49))),),
        time_base=Fraction(1, 12),
        ticks=cfr_ticks(0.5, 12),
        matrix=matrix,
        full_range=full_range,
        gop=6,
    )


COLOUR_601 = colour_clip("colour_601_540p.mp4", 960, 540, "bt601", False)
COLOUR_709 = colour_clip("colour_709_720p.mp4", 1280, 720, "bt709", False)
COLOUR_FULL = colour_clip("colour_full_540p.mp4", 960, 540, "bt601", True)

CLIPS = (DEMO_720P, PAN_1080P, VFR_720P, COLOUR_601, COLOUR_709, COLOUR_FULL)
BOARD_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "camera.png")


def load_photo(path: Path) -> Rgb:
    """Read a photo as an RGB uint8 array (grey photos are expanded to three channels)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        msg = f"cannot read photo {path}"
        raise FileNotFoundError(msg)
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def colour_board(photo_dir: Path, width: int, height: int) -> Rgb:
    """The colour board at ``width``×``height``: photos tiled edge to edge, colour bars, a checkerboard.

    A 3×2 grid of cells: five photos (each cropped to fill its cell, no gaps, so photo meets photo along
    hard edges) and one cell of saturated bars (red, green, blue, cyan, magenta, yellow, white, black)
    above a 4-pixel checkerboard of red, green, blue and white: the edges where converting chroma at a
    different resolution, or with the wrong matrix or range, shows most.
    """
    board = np.zeros((height, width, 3), np.uint8)
    xs = [round(i * width / 3) for i in range(4)]
    ys = [0, height // 2, height]
    cells = [(xs[c], ys[r], xs[c + 1] - xs[c], ys[r + 1] - ys[r]) for r in range(2) for c in range(3)]
    for (x, y, w, h), name in zip(cells, BOARD_PHOTOS, strict=False):
        photo = load_photo(photo_dir / name)
        ph, pw = photo.shape[:2]
        scale = max(w / pw, h / ph)
        cw, ch = round(w / scale), round(h / scale)
        x0, y0 = (pw - cw) // 2, (ph - ch) // 2
        crop = photo[y0 : y0 + ch, x0 : x0 + cw]
        board[y : y + h, x : x + w] = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
    x, y, w, h = cells[5]
    bars = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 255, 255), (255, 0, 255), (255, 255, 0), (255,) * 3, (0,) * 3]
    for i, colour in enumerate(bars):
        board[y : y + h // 2, x + i * w // len(bars) : x + (i + 1) * w // len(bars)] = colour
    checker = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
    yy, xx = np.mgrid[0 : h - h // 2, 0:w]
    pattern = ((yy // 4) % 2) * 2 + (xx // 4) % 2
    board[y + h // 2 : y + h, x : x + w] = np.asarray(checker, np.uint8)[pattern]
    return board


def blurred_background(photo: Rgb, width: int, height: int) -> Rgb:
    """Cover the frame with a heavily blurred, darkened copy of the photo."""
    ph, pw = photo.shape[:2]
    scale = max(width / pw, height / ph)
    cw, ch = round(width / scale), round(height / scale)
    x0, y0 = (pw - cw) // 2, (ph - ch) // 2
    crop = photo[y0 : y0 + ch, x0 : x0 + cw]
    small = cv2.resize(crop, (width // 16, height // 16), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=3.0)
    big = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    return (big.astype(np.uint16) * 9 // 20).astype(np.uint8)


def smoothstep(t: float) -> float:
    """Ease 0..1 to 0..1 with zero slope at both ends."""
    t = min(max(t, 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def lerp(a: float, b: float, t: float) -> float:
    """Linear interpolation from ``a`` to ``b``."""
    return a + (b - a) * t


class ShotRenderer:
    """Renders the frames of one shot at a given frame size."""

    def __init__(self, shot: Shot, photo: Rgb, width: int, height: int) -> None:
        self.shot = shot
        self.photo = photo
        self.width = width
        self.height = height
        self.background = blurred_background(photo, width, height)

    def render(self, t: float) -> Rgb:
        """The RGB frame shown at clip time ``t`` seconds."""
        shot = self.shot
        progress = smoothstep((t - shot.start) / (shot.end - shot.start))
        ph, pw = self.photo.shape[:2]
        zoom = lerp(shot.zoom[0], shot.zoom[1], progress)
        fx = lerp(shot.focus[0][0], shot.focus[1][0], progress)
        fy = lerp(shot.focus[0][1], shot.focus[1][1], progress)
        scale = zoom * self.height / ph
        matrix = np.array(
            [
                [scale, 0.0, self.width / 2 - scale * fx * pw],
                [0.0, scale, self.height / 2 - scale * fy * ph],
            ],
            dtype=np.float64,
        )
        frame = self.background.copy()
        cv2.warpAffine(
            self.photo,
            matrix,
            (self.width, self.height),
            dst=frame,
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_TRANSPARENT,
        )
        return frame


def rgb_to_yuv420p(rgb: Rgb, matrix: str = "bt601", full_range: bool = False) -> npt.NDArray[np.uint8]:
    """Convert RGB to planar yuv420p (BT.601 or BT.709, limited or full range), as PyAV's array layout."""
    height, width = rgb.shape[:2]
    px = rgb.astype(np.float32)
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    pooled = px.reshape(height // 2, 2, width // 2, 2, 3).mean(axis=(1, 3))
    pr, pg, pb = pooled[..., 0], pooled[..., 1], pooled[..., 2]
    if matrix == "bt601" and not full_range:
        # the original clips' exact arithmetic, kept so that they rebuild byte for byte
        y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0
        u = 128.0 + (-37.797 * pr - 74.203 * pg + 112.0 * pb) / 255.0
        v = 128.0 + (112.0 * pr - 93.786 * pg - 18.214 * pb) / 255.0
    else:
        (kr, kb), _ = MATRICES[matrix]
        kg = 1.0 - kr - kb
        luma, chroma, offset = (255.0, 255.0, 0.0) if full_range else (219.0, 224.0, 16.0)
        y = offset + luma * (kr * r + kg * g + kb * b) / 255.0
        u = 128.0 + chroma * (pb - (kr * pr + kg * pg + kb * pb)) / (2.0 * (1.0 - kb)) / 255.0
        v = 128.0 + chroma * (pr - (kr * pr + kg * pg + kb * pb)) / (2.0 * (1.0 - kr)) / 255.0

    def to_u8(plane: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
        return np.clip(np.rint(plane), 0, 255).astype(np.uint8)

    chroma = np.concatenate([to_u8(u).reshape(-1), to_u8(v).reshape(-1)])
    return np.concatenate([to_u8(y), chroma.reshape(height // 2, width)])


def open_stream(container: av.container.OutputContainer, clip: Clip) -> av.VideoStream:
    """Add a deterministic, single-threaded libx264 yuv420p stream for the clip."""
    time_base = clip.time_base
    if clip.variable_rate:
        stream = container.add_stream("libx264")
    else:
        stream = container.add_stream("libx264", rate=1 / time_base)
    stream.width = clip.width
    stream.height = clip.height
    stream.pix_fmt = "yuv420p"
    stream.time_base = time_base
    ctx = stream.codec_context
    ctx.time_base = time_base
    ctx.thread_count = 1
    ctx.gop_size = clip.gop
    ctx.color_primaries, ctx.color_trc, ctx.colorspace = MATRICES[clip.matrix][1]
    ctx.color_range = AVCOL_RANGE_JPEG if clip.full_range else AVCOL_RANGE_MPEG
    x264_params = "threads=1:lookahead-threads=1:sliced-threads=0"
    if clip.variable_rate:
        # No B-frames: decode order equals display order, so the MP4 sample durations
        # (stts) are exactly the display durations and the last frame ends on time.
        x264_params += ":bframes=0"
    stream.options = {"preset": "medium", "crf": str(clip.crf), "x264-params": x264_params + clip.x264_extra}
    return stream


def frames_for(clip: Clip, renderers: Sequence[ShotRenderer]) -> Iterator[tuple[int, int, Rgb]]:
    """Yield (pts, duration, rgb) per frame; the last frame lasts until the end of the clip."""
    ticks = clip.ticks
    end_tick = round(Fraction(clip.shots[-1].end) / clip.time_base)
    for index, pts in enumerate(ticks):
        t = float(pts * clip.time_base)
        renderer = next(r for r in renderers if t < r.shot.end)
        next_pts = ticks[index + 1] if index + 1 < len(ticks) else end_tick
        yield pts, next_pts - pts, renderer.render(t)


def write_clip(clip: Clip, photo_dir: Path, output_dir: Path) -> Path:
    """Render and encode one clip into ``output_dir``."""
    renderers = [
        ShotRenderer(
            shot,
            colour_board(photo_dir, clip.width, clip.height)
            if shot.photo == BOARD
            else load_photo(photo_dir / shot.photo),
            clip.width,
            clip.height,
        )
        for shot in clip.shots
    ]
    path = output_dir / clip.name
    encode(clip, frames_for(clip, renderers), path)
    return path


def encode(clip: Clip, frames: Iterable[tuple[int, int, Rgb]], path: Path) -> None:
    """Encode (pts, duration, rgb) frames into an MP4 file, deterministically."""
    time_base = clip.time_base
    primaries, trc, colorspace = MATRICES[clip.matrix][1]
    color_range = AVCOL_RANGE_JPEG if clip.full_range else AVCOL_RANGE_MPEG
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = open_stream(container, clip)
        durations: dict[Fraction, Fraction] = {}

        def mux(packets: Sequence[av.Packet[av.VideoStream]]) -> None:
            # libx264 leaves packet durations unset; give each packet its frame's display
            # duration so that the MP4 sample durations, the last one included, are exact.
            for packet in packets:
                if packet.pts is not None:
                    start = packet.pts * packet.time_base
                    packet.duration = round(durations.pop(start) / packet.time_base)
                container.mux(packet)

        for pts, duration, rgb in frames:
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(rgb, clip.matrix, clip.full_range), format="yuv420p")
            frame.pts = pts
            frame.duration = duration
            frame.time_base = time_base
            frame.color_primaries = primaries
            frame.color_trc = trc
            frame.colorspace = colorspace
            frame.color_range = color_range
            durations[pts * time_base] = duration * time_base
            mux(stream.encode(frame))
        mux(stream.encode(None))


# --- Scenes: cut-outs moving along known paths, with per-frame ground truth ------------------------------


@dataclass(frozen=True)
class Subject:
    """A cut-out of a photo (``crop`` = x1, y1, x2, y2 of the photo) shown ``height`` pixels tall.

    ``path`` holds keyframes (t seconds, x of the box centre, y of the box bottom), linearly
    interpolated; the subject exists from the first keyframe to the last and is drawn where it is
    inside the frame. Each subject is one visit: ``id`` is its ground-truth identity.
    """

    id: int
    label: str
    photo: str
    crop: tuple[int, int, int, int]
    height: int
    path: tuple[tuple[float, float, float], ...]

    def position(self, t: float) -> tuple[float, float] | None:
        keys = self.path
        if t < keys[0][0] or t > keys[-1][0]:
            return None
        for (t0, x0, y0), (t1, x1, y1) in itertools.pairwise(keys):
            if t0 <= t <= t1:
                k = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
                return lerp(x0, x1, k), lerp(y0, y1, k)
        return keys[-1][1], keys[-1][2]


@dataclass(frozen=True)
class Occluder:
    """A dark panel (a passing van) drawn over everything: ``width``×``height`` at the top of the frame,
    its left edge moving from ``x_start`` at ``start`` with ``speed`` pixels per second, until ``end``."""

    width: int
    height: int
    start: float
    end: float
    x_start: float
    speed: float

    def left(self, t: float) -> float | None:
        if not self.start <= t <= self.end:
            return None
        return self.x_start + self.speed * (t - self.start)


@dataclass(frozen=True)
class Scene:
    """A clip of subjects over a static background, with zones and lines whose answers are known."""

    clip: Clip
    duration: float
    subjects: tuple[Subject, ...]
    occluders: tuple[Occluder, ...]
    zones: dict[str, tuple[tuple[float, float], ...]]
    lines: dict[str, tuple[tuple[float, float], tuple[float, float]]]
    seed: int


TRACKS_FPS = 15
TRACKS = Scene(
    clip=Clip(
        name="tracks_800x600.mp4",
        width=800,
        height=600,
        crf=30,
        shots=(),
        time_base=Fraction(1, TRACKS_FPS),
        ticks=cfr_ticks(18.0, TRACKS_FPS),
        # without these, 1 encode in 3 came out different (same frames, same settings): x264's rate-control
        # lookahead and macroblock tree were the part that varied here
        x264_extra=":sync-lookahead=0:rc-lookahead=0:mbtree=0",
    ),
    duration=18.0,
    subjects=(
        # walks left to right along the top, behind a passing van, across the gate (negative), out right
        Subject(
            1, "person", "astronaut.png", (0, 0, 420, 512), 256, ((0.0, 130, 275), (6.0, 670, 275), (7.5, 920, 275))
        ),
        # enters from the right along the bottom, crosses the gate (positive) into the mat zone, waits,
        # walks back out of the zone across the gate (negative) and leaves to the right
        Subject(
            2,
            "cat",
            "chelsea.png",
            (0, 0, 451, 300),
            270,
            ((1.0, 1010, 585), (2.5, 620, 585), (5.5, 200, 585), (7.5, 200, 585), (10.5, 620, 585), (12.0, 1010, 585)),
        ),
        # slides in from the left, stays, leaves; comes back after 3 s (a new visit) and stays to the end
        Subject(
            3,
            "cup",
            "coffee.png",
            (130, 20, 440, 340),
            230,
            ((8.0, -120, 280), (9.0, 250, 280), (11.0, 250, 280), (12.0, -120, 280)),
        ),
        Subject(
            4, "cup", "coffee.png", (130, 20, 440, 340), 230, ((15.0, -120, 280), (16.0, 250, 280), (18.0, 250, 280))
        ),
    ),
    occluders=(Occluder(width=360, height=300, start=1.5, end=3.0, x_start=800, speed=-600),),
    zones={"mat": ((0.0, 0.55), (0.45, 0.55), (0.45, 1.0), (0.0, 1.0))},
    lines={"gate": ((0.5, 0.0), (0.5, 1.0))},
    seed=20_261_201,
)

SCENES = (TRACKS,)


def scene_background(width: int, height: int, seed: int) -> Rgb:
    """A soft gradient with a faint blurred texture (seeded), like a wall and a floor."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.dstack([100 + 50 * xx / width, 95 + 40 * yy / height, 85 + 30 * (xx + yy) / (width + height)])
    noise = np.random.default_rng(seed).random((height // 8, width // 8, 3), dtype=np.float32) * 40 - 20
    texture = cv2.resize(cv2.GaussianBlur(noise, (0, 0), 1.5), (width, height), interpolation=cv2.INTER_LINEAR)
    floor = np.where(yy[..., None] > height * 0.5, -15.0, 0.0)
    return np.clip(base + texture + floor, 0, 255).astype(np.uint8)


class SceneRenderer:
    """Renders a scene's frames and the ground truth of each."""

    def __init__(self, scene: Scene, photo_dir: Path) -> None:
        self.scene = scene
        width, height = scene.clip.width, scene.clip.height
        self.background = scene_background(width, height, scene.seed)
        self.cutouts: dict[int, Rgb] = {}
        for subject in scene.subjects:
            x1, y1, x2, y2 = subject.crop
            photo = load_photo(photo_dir / subject.photo)[y1:y2, x1:x2]
            scale = subject.height / photo.shape[0]
            size = (round(photo.shape[1] * scale), subject.height)
            self.cutouts[subject.id] = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)

    def render(self, t: float) -> tuple[Rgb, list[dict[str, object]]]:
        scene, frame = self.scene, self.background.copy()
        width, height = scene.clip.width, scene.clip.height
        placed: list[tuple[Subject, int, int, int, int]] = []
        for subject in scene.subjects:
            at = subject.position(t)
            if at is None:
                continue
            cutout = self.cutouts[subject.id]
            h, w = cutout.shape[:2]
            x1, y1 = round(at[0] - w / 2), round(at[1] - h)
            fx1, fy1, fx2, fy2 = max(x1, 0), max(y1, 0), min(x1 + w, width), min(y1 + h, height)
            if fx2 > fx1 and fy2 > fy1:
                frame[fy1:fy2, fx1:fx2] = cutout[fy1 - y1 : fy2 - y1, fx1 - x1 : fx2 - x1]
            placed.append((subject, x1, y1, x1 + w, y1 + h))
        covered = np.zeros((height, width), dtype=bool)
        for occ in scene.occluders:
            left = occ.left(t)
            if left is None:
                continue
            ox1, ox2 = max(round(left), 0), min(round(left) + occ.width, width)
            if ox2 > ox1:
                frame[: occ.height, ox1:ox2] = (52, 58, 70)
                frame[30:110, ox1:ox2] = (120, 135, 150)  # windows
                covered[: occ.height, ox1:ox2] = True
        truth: list[dict[str, object]] = []
        for subject, x1, y1, x2, y2 in placed:
            fx1, fy1, fx2, fy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
            area = (x2 - x1) * (y2 - y1)
            seen = 0 if fx2 <= fx1 or fy2 <= fy1 else int((~covered[fy1:fy2, fx1:fx2]).sum())
            if seen == 0:
                continue
            truth.append(
                {
                    "id": subject.id,
                    "label": subject.label,
                    "box": [fx1, fy1, fx2, fy2],
                    "full_box": [x1, y1, x2, y2],
                    "visibility": round(seen / area, 3),
                }
            )
        return frame, truth


def expected_events(scene: Scene, truth: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The answer an event engine should give, from the ground truth: each subject's visit (first and last
    frame it is visible), each change of side of each line and each zone entry and exit of its bottom
    centre (the first frame on the new side or inside/outside), in clip seconds."""
    width, height = scene.clip.width, scene.clip.height

    def px(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(x * width, y * height) for x, y in points]

    def inside(poly: list[tuple[float, float]], x: float, y: float) -> bool:
        result = False
        for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1], strict=True):
            if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
                result = not result
        return result

    visits: list[dict[str, Any]] = []
    crossings: list[dict[str, Any]] = []
    zones: list[dict[str, Any]] = []
    for subject in scene.subjects:
        seen = [(f["pts"], o) for f in truth for o in f["objects"] if o["id"] == subject.id]
        visits.append({"id": subject.id, "label": subject.label, "first_pts": seen[0][0], "last_pts": seen[-1][0]})
        for name, pts in scene.lines.items():
            (ax, ay), (bx, by) = px(pts)
            previous = None
            for t, o in seen:
                x1, _, x2, y2 = o["full_box"]
                side = (bx - ax) * (y2 - ay) - (by - ay) * ((x1 + x2) / 2 - ax) > 0
                if previous is not None and side != previous:
                    direction = "positive" if side else "negative"
                    crossings.append({"id": subject.id, "line": name, "direction": direction, "pts": t})
                previous = side
        for name, poly in scene.zones.items():
            polygon = px(poly)
            was_in, entered = False, None
            for t, o in seen:
                x1, _, x2, y2 = o["full_box"]
                now_in = inside(polygon, (x1 + x2) / 2, y2)
                if now_in and not was_in:
                    entered = t
                elif was_in and not now_in:
                    zones.append({"id": subject.id, "zone": name, "entered_pts": entered, "left_pts": t})
                was_in = now_in
            if was_in:
                zones.append({"id": subject.id, "zone": name, "entered_pts": entered, "left_pts": None})
    crossings.sort(key=lambda c: c["pts"])
    return {"visits": visits, "crossings": crossings, "zones": zones}


def write_scene(scene: Scene, photo_dir: Path, output_dir: Path) -> Path:
    """Render and encode a scene, and write its ground truth beside it (same name, ``.json``)."""
    renderer = SceneRenderer(scene, photo_dir)
    clip = scene.clip
    end_tick = round(Fraction(scene.duration) / clip.time_base)
    truth: list[dict[str, Any]] = []

    def frames() -> Iterator[tuple[int, int, Rgb]]:
        for index, pts in enumerate(clip.ticks):
            t = float(pts * clip.time_base)
            rgb, objects = renderer.render(t)
            truth.append({"index": index, "pts": round(t, 6), "objects": objects})
            next_pts = clip.ticks[index + 1] if index + 1 < len(clip.ticks) else end_tick
            yield pts, next_pts - pts, rgb

    path = output_dir / clip.name
    encode(clip, frames(), path)
    answer = {
        "clip": clip.name,
        "width": clip.width,
        "height": clip.height,
        "fps": float(1 / clip.time_base),
        "duration": scene.duration,
        "zones": {name: [list(p) for p in poly] for name, poly in scene.zones.items()},
        "lines": {name: [list(p) for p in pts] for name, pts in scene.lines.items()},
        "subjects": [
            {
                "id": s.id,
                "label": s.label,
                "photo": s.photo,
                "crop": list(s.crop),
                "height": s.height,
                "path": [list(k) for k in s.path],
            }
            for s in scene.subjects
        ],
        "occluders": [vars(o) for o in scene.occluders],
        "expected": expected_events(scene, truth),
        "frames": truth,
    }
    path.with_suffix(".json").write_text(json.dumps(answer, separators=(",", ":")) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Build every clip from the photos in the given folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "photo_dir",
        nargs="?",
        type=Path,
        default=DEFAULT_PHOTO_DIR,
        help=(
            "folder with astronaut.png, chelsea.png, coffee.png, rocket.jpg and camera.png "
            f"(default: ../shared/photos next to the repository, {DEFAULT_PHOTO_DIR})"
        ),
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        choices=[c.name for c in CLIPS] + [s.clip.name for s in SCENES],
        help="build only these clips",
    )
    args = parser.parse_args(argv)
    photo_dir: Path = args.photo_dir.resolve()
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    wanted = set(args.only or [c.name for c in CLIPS] + [s.clip.name for s in SCENES])
    for clip in CLIPS:
        if clip.name in wanted:
            path = write_clip(clip, photo_dir, OUTPUT_DIR)
            print(f"{path.relative_to(REPO_ROOT)}: {len(clip.ticks)} frames, {path.stat().st_size} bytes")
    for scene in SCENES:
        if scene.clip.name in wanted:
            path = write_scene(scene, photo_dir, OUTPUT_DIR)
            size = path.stat().st_size
            print(f"{path.relative_to(REPO_ROOT)}: {len(scene.clip.ticks)} frames, {size} bytes, truth beside it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
