"""Detect objects in a video, frame by frame: the shortest use of streamprep from Python.

    python examples/detect.py [VIDEO] [--fps 2]

One result per sampled frame, as it comes; boxes are in the video's own pixels.
"""

import argparse
from pathlib import Path

import streamprep

DEMO = Path(__file__).resolve().parent.parent / "recordings" / "demo_720p.mp4"

parser = argparse.ArgumentParser()
parser.add_argument("video", nargs="?", default=str(DEMO))
parser.add_argument("--fps", type=float, default=2)
args = parser.parse_args()

for result in streamprep.stream(args.video, fps=args.fps):
    found = ", ".join(f"{d.label} {d.score:.2f}" for d in result.detections or ()) or "nothing"
    print(f"{result.source} {result.pts:5.2f} s: {found}")
