"""Your own frames in, a function of yours called with every result: FrameSource and CallbackSink.

    python examples/custom_source.py [PHOTO ...]

Any Python generator of BGR arrays can be a source (a camera SDK, a simulator, images on disk): here,
photos shown one after another as a 2-frames-per-second stream.
"""

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

import cv2

import streamprep

PHOTOS = Path(__file__).resolve().parent.parent / "tests" / "data"


def frames(paths: list[Path]) -> Iterator[tuple[object, float]]:
    for i, path in enumerate(paths):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"{path}: not an image")
        yield image, i / 2.0  # (frame, seconds)


def report(result: streamprep.Result) -> None:
    found = ", ".join(d.label for d in result.detections or ()) or "nothing"
    print(f"callback: frame {result.frame_index} at {result.pts:.1f} s: {found}")


parser = argparse.ArgumentParser()
parser.add_argument("photos", nargs="*", type=Path, default=sorted(PHOTOS.glob("*.png")))
args = parser.parse_args()

source = streamprep.FrameSource(frames(args.photos), id="photos")
started = time.monotonic()
results = list(streamprep.stream(source, sinks=[streamprep.CallbackSink(report)]))
print(f"{len(results)} results from {len(args.photos)} photos in {time.monotonic() - started:.1f} s")
