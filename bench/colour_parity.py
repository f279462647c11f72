"""Colour parity: how far streamprep's tensors are from "decode to RGB with FFmpeg, then resize".

What it measures: for each recording, every frame of the colour boards (``recordings/colour_*``: photos
edge to edge, saturated bars and a 4-pixel checkerboard of primaries, in BT.601 limited, BT.709 limited and
BT.601 full range) and every 30th frame of the demo clips, the absolute difference in levels (0..255)
between

- streamprep: the frames streamprep's ``FileSource`` hands over (the decoder's I420 planes, tagged with
  the stream's matrix and range) written by ``Preprocessor.into`` with a spec whose tensor is the
  model-size RGB pixels (uint8 NHWC, no scaling), with ``color_conversion`` ``exact`` (the default) and
  ``fast``; and
- the reference anyone can run: ``frame.to_ndarray(format="rgb24")`` (FFmpeg's conversion, equal to
  ``ffmpeg -pix_fmt rgb24``), then ``cv2.resize(INTER_LINEAR)`` to S×S (stretch), or to fit with the rest
  padded with 114, centred (letterbox),

at S = 224, 256 and 640. Cells are mean / max over all pixels, channels and frames of the recording.
The thresholds the default path must meet: mean ≤ 0.5 and max ≤ 8 levels; the exit status is 1 when the
exact path misses them anywhere.

Run from the repository root::

    .venv/bin/python bench/colour_parity.py
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt
from benchenv import machine, revision, versions

from streamprep.preprocess.kernels import Preprocessor
from streamprep.preprocess.spec import Color, DType, Layout, PreprocessSpec, Resize, Scaling
from streamprep.sources.file import FileSource
from streamprep.values.frames import Frame

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ("colour_601_540p", "colour_709_720p", "colour_full_540p", "demo_720p", "pan_1080p")
SIZES = (224, 256, 640)
GEOMETRIES = ("stretch", "letterbox")
EVERY = 30  # frames of the long clips: one per second
MEAN_LIMIT, MAX_LIMIT = 0.5, 8
Array = npt.NDArray[Any]


def reference(rgb: Array, size: int, geometry: str) -> Array:
    h, w = rgb.shape[:2]
    if geometry == "stretch":
        return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)
    r = min(size / w, size / h)
    rw, rh = round(w * r), round(h * r)
    out = np.full((size, size, 3), 114, np.uint8)
    x0, y0 = (size - rw) // 2, (size - rh) // 2
    out[y0 : y0 + rh, x0 : x0 + rw] = cv2.resize(rgb, (rw, rh), interpolation=cv2.INTER_LINEAR)
    return out


def load(path: Path) -> tuple[list[Frame], list[Array]]:
    keep = 1 if path.stem.startswith("colour_") else EVERY
    with av.open(str(path)) as container:
        rgbs = [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])][::keep]

    async def collect() -> list[Frame]:
        return [f async for f in FileSource(path.stem, path, None).frames()]

    return asyncio.run(collect())[::keep], rgbs


def measure(frames: list[Frame], rgbs: list[Array], size: int, geometry: str, conversion: str) -> tuple[float, int]:
    spec = PreprocessSpec(
        width=size,
        height=size,
        resize=Resize(geometry),
        color=Color.RGB,
        scaling=Scaling.NONE,
        layout=Layout.NHWC,
        dtype=DType.UINT8,
        color_conversion=conversion,  # type: ignore[arg-type]
    )
    pre = Preprocessor(spec)
    out = pre.new_batch(1)
    total, count, worst = 0.0, 0, 0
    for frame, rgb in zip(frames, rgbs, strict=True):
        pre.into(frame.image, out[0], frame.pixel_format, None, frame.color_matrix, frame.color_range)
        diff = np.abs(out[0].astype(np.int16) - reference(rgb, size, geometry))
        total += float(diff.sum())
        count += diff.size
        worst = max(worst, int(diff.max()))
    return total / count, worst


def main() -> int:
    print(f"streamprep: {revision()}")
    print(f"machine: {machine()}")
    print(f"libraries: {versions()}")
    print()
    head = ["recording", "frames", "tags"]
    head += [f"{s}² {g} {c}" for s in SIZES for g in GEOMETRIES for c in ("exact", "fast")]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    failed = False
    for name in CLIPS:
        frames, rgbs = load(ROOT / "recordings" / f"{name}.mp4")
        cells = [name, str(len(frames)), f"{frames[0].color_matrix} {frames[0].color_range}"]
        for size in SIZES:
            for geometry in GEOMETRIES:
                for conversion in ("exact", "fast"):
                    mean, worst = measure(frames, rgbs, size, geometry, conversion)
                    cells.append(f"{mean:.2f} / {worst}")
                    if conversion == "exact" and (mean > MEAN_LIMIT or worst > MAX_LIMIT):
                        failed = True
        print("| " + " | ".join(cells) + " |")
    print()
    print(f"exact path within mean {MEAN_LIMIT} / max {MAX_LIMIT} everywhere: {'no' if failed else 'yes'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
