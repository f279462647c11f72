"""See what the model sees: replay a video and write an MP4 with the boxes drawn on every sampled frame.

    python examples/annotate.py [VIDEO] [OUT.mp4] [--fps 5]

(``streamprep run VIDEO --annotate OUT.mp4`` does the same from the command line.)
"""

import argparse
from fractions import Fraction
from pathlib import Path

import av
import cv2

import streamprep

DEMO = Path(__file__).resolve().parent.parent / "recordings" / "demo_720p.mp4"

parser = argparse.ArgumentParser()
parser.add_argument("video", nargs="?", default=str(DEMO))
parser.add_argument("out", nargs="?", default="annotated.mp4")
parser.add_argument("--fps", type=float, default=5)
args = parser.parse_args()

with av.open(args.out, "w") as container:
    stream = None
    for result in streamprep.stream(args.video, fps=args.fps, frames=True):
        assert result.frame is not None
        image = result.frame.to_bgr().copy()
        for d in result.detections or ():
            p1, p2 = (round(d.box.x1), round(d.box.y1)), (round(d.box.x2), round(d.box.y2))
            cv2.rectangle(image, p1, p2, (0, 255, 0), 3)
            cv2.putText(image, f"{d.label} {d.score:.2f}", (p1[0] + 4, p1[1] + 28), 0, 1.0, (0, 255, 0), 2)
        if stream is None:
            stream = container.add_stream("libx264", rate=Fraction(args.fps).limit_denominator(1000))
            stream.width, stream.height, stream.pix_fmt = result.width, result.height, "yuv420p"
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        container.mux(stream.encode(frame))
    if stream is not None:
        container.mux(stream.encode(None))
print(f"wrote {args.out}")
