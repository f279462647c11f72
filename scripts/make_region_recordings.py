"""Build the 1080p recordings for regions (tiles and motion, issue 21) with per-frame ground truth.

Small cut-outs of the photos (80-120 px: too small for a detector that sees the whole 1080p frame at 256x256)
over a static textured background with a little seeded sensor noise, each clip with a JSON file beside it
holding every frame's objects (id, label, box in source pixels, and whether it moved since the previous
frame). Encoding reuses ``make_recordings.py`` (deterministic libx264, single-threaded).

- ``regions_walk_1080p.mp4``: a cup that never moves, a cat and two people who stand still for the first
  1.5-2 s and then walk across tile borders (one of them along a row of tile borders), then stop.
- ``regions_light_1080p.mp4``: the same kind of still scene; at 2.0 s the light changes in one step (a
  brighter, uneven light, stronger on the right). Nothing moves.
- ``regions_border_1080p.mp4``: a 240-px person and a 200-px cup, each across a border between two tiles,
  drifting slowly along it for 1 s.

Usage (from the repository root)::

    .venv/bin/python scripts/make_region_recordings.py [PHOTO_DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import itertools

import make_recordings as mr

WIDTH, HEIGHT, FPS = 1920, 1080, 10
CRF = 30
NOISE_STD = 2.0  # grey levels of per-frame sensor noise


@dataclass(frozen=True)
class Mover:
    """A cut-out ``height`` px tall; ``path`` = (t, x of the box centre, y of the box bottom) keyframes,
    linearly interpolated and held before the first and after the last."""

    id: int
    label: str
    photo: str
    crop: tuple[int, int, int, int]
    height: int
    path: tuple[tuple[float, float, float], ...]

    def position(self, t: float) -> tuple[float, float]:
        keys = self.path
        if t <= keys[0][0]:
            return keys[0][1], keys[0][2]
        for (t0, x0, y0), (t1, x1, y1) in itertools.pairwise(keys):
            if t0 <= t <= t1:
                k = (t - t0) / (t1 - t0)
                return mr.lerp(x0, x1, k), mr.lerp(y0, y1, k)
        return keys[-1][1], keys[-1][2]


@dataclass(frozen=True)
class RegionScene:
    name: str
    duration: float
    movers: tuple[Mover, ...]
    light_at: float | None  # the time of the lighting step, if any
    seed: int


PERSON = ("astronaut.png", (0, 0, 420, 512))
CAT = ("chelsea.png", (0, 0, 451, 300))
CUP = ("coffee.png", (130, 20, 440, 340))

WALK = RegionScene(
    name="regions_walk_1080p.mp4",
    duration=6.0,
    movers=(
        Mover(1, "cup", *CUP, 110, ((0.0, 400, 950),)),
        Mover(2, "cat", *CAT, 100, ((0.0, 1600, 800), (2.0, 1600, 800), (5.0, 1000, 800))),
        # box y 480-600: across the border between two rows of 256-px tiles at every x
        Mover(3, "person", *PERSON, 120, ((0.0, 250, 600), (1.5, 250, 600), (5.0, 1650, 600))),
        Mover(4, "person", *PERSON, 100, ((0.0, 1700, 330), (2.0, 1700, 330), (5.5, 700, 330))),
    ),
    light_at=None,
    seed=2026_12_06,
)

LIGHT = RegionScene(
    name="regions_light_1080p.mp4",
    duration=4.0,
    movers=(
        Mover(1, "cup", *CUP, 110, ((0.0, 500, 900),)),
        Mover(2, "cat", *CAT, 100, ((0.0, 1400, 820),)),
        Mover(3, "person", *PERSON, 120, ((0.0, 900, 450),)),
    ),
    light_at=2.0,
    seed=2026_12_07,
)

# larger objects (200-240 px), each placed across a border between two tiles of the default plan (256-px tiles,
# 20 % overlap: columns start at 0, 184, ..., 1294, 1480, 1664; rows at 0, 164, 330, 494, 660, 824) so that no
# tile holds all of it and each of two tiles sees about two thirds: pieces that NMS alone would report twice
BORDER = RegionScene(
    name="regions_border_1080p.mp4",
    duration=1.0,
    movers=(
        # inside the row of tiles at y 660-916, across the columns at x 1294-1550 and 1480-1736
        Mover(1, "person", *PERSON, 240, ((0.0, 1505, 904), (1.0, 1525, 904))),
        # inside the column at x 740-996, across the rows at y 164-420 and 330-586
        Mover(2, "cup", *CUP, 200, ((0.0, 850, 465), (1.0, 850, 485))),
    ),
    light_at=None,
    seed=2026_12_08,
)

SCENES = (WALK, LIGHT, BORDER)


def lighting(width: int, height: int) -> tuple[np.ndarray, float]:
    """The step's gain per pixel (1.25 on the left to 1.75 on the right, plus a soft spot) and offset."""
    xx = np.linspace(1.25, 1.75, width, dtype=np.float32)[None, :].repeat(height, 0)
    yy, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    spot = 0.3 * np.exp(-(((xs - width * 0.7) / (width * 0.2)) ** 2 + ((yy - height * 0.4) / (height * 0.3)) ** 2))
    return (xx + spot)[..., None], 6.0


def render(scene: RegionScene, photo_dir: Path) -> Iterator[tuple[int, int, np.ndarray, dict[str, Any]]]:
    """(pts, duration, rgb, truth) per frame."""
    background = mr.scene_background(WIDTH, HEIGHT, scene.seed)
    cutouts = {}
    for m in scene.movers:
        x1, y1, x2, y2 = m.crop
        photo = mr.load_photo(photo_dir / m.photo)[y1:y2, x1:x2]
        size = (round(photo.shape[1] * m.height / photo.shape[0]), m.height)
        cutouts[m.id] = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    gain, offset = lighting(WIDTH, HEIGHT)
    rng = np.random.default_rng(scene.seed)
    frames = round(scene.duration * FPS)
    previous: dict[int, list[int]] = {}
    for index in range(frames):
        t = index / FPS
        frame = background.copy()
        objects = []
        for m in scene.movers:
            cx, bottom = m.position(t)
            cut = cutouts[m.id]
            h, w = cut.shape[:2]
            x1, y1 = round(cx - w / 2), round(bottom - h)
            frame[y1 : y1 + h, x1 : x1 + w] = cut
            box = [x1, y1, x1 + w, y1 + h]
            moved = m.id in previous and previous[m.id] != box
            previous[m.id] = box
            objects.append({"id": m.id, "label": m.label, "box": box, "moving": moved})
        lit = scene.light_at is not None and t >= scene.light_at - 1e-9
        pixels = frame.astype(np.float32)
        if lit:
            pixels = pixels * gain + offset
        pixels += rng.normal(0.0, NOISE_STD, pixels.shape[:2]).astype(np.float32)[..., None]
        rgb = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        truth = {"index": index, "pts": round(t, 6), "lit": lit, "objects": objects}
        yield index, 1, rgb, truth


def write(scene: RegionScene, photo_dir: Path, output_dir: Path) -> Path:
    frames = round(scene.duration * FPS)
    clip = mr.Clip(
        name=scene.name,
        width=WIDTH,
        height=HEIGHT,
        crf=CRF,
        shots=(),
        time_base=Fraction(1, FPS),
        ticks=mr.cfr_ticks(scene.duration, FPS),
        x264_extra=":sync-lookahead=0:rc-lookahead=0:mbtree=0",
    )
    truth: list[dict[str, Any]] = []

    def frames_of() -> Iterator[tuple[int, int, np.ndarray]]:
        for pts, duration, rgb, row in render(scene, photo_dir):
            truth.append(row)
            yield pts, duration, rgb

    path = output_dir / scene.name
    mr.encode(clip, frames_of(), path)
    answer = {
        "clip": scene.name,
        "width": WIDTH,
        "height": HEIGHT,
        "fps": FPS,
        "duration": scene.duration,
        "light_at": scene.light_at,
        "movers": [
            {
                "id": m.id,
                "label": m.label,
                "photo": m.photo,
                "crop": list(m.crop),
                "height": m.height,
                "path": [list(k) for k in m.path],
            }
            for m in scene.movers
        ],
        "frames": truth,
    }
    assert len(truth) == frames
    path.with_suffix(".json").write_text(json.dumps(answer, separators=(",", ":")) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("photo_dir", nargs="?", type=Path, default=mr.DEFAULT_PHOTO_DIR, help="the photos folder")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=[s.name for s in SCENES], help="build only these")
    args = parser.parse_args(argv)
    for scene in SCENES:
        if args.only and scene.name not in args.only:
            continue
        path = write(scene, args.photo_dir.resolve(), mr.OUTPUT_DIR)
        print(f"{path.relative_to(mr.REPO_ROOT)}: {path.stat().st_size} bytes, truth beside it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
