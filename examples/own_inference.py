"""Preprocessed batches for inference you run yourself (here: ONNX Runtime directly; PyTorch, TensorRT or a
remote server work the same way): streamprep.tensors.

    python examples/own_inference.py [VIDEO]

Each batch is exactly the tensor the model's contract asks for; each slot says which frame a row is, and
maps the model's boxes back to that frame's pixels.
"""

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort

import streamprep
from streamprep.config.schema import BUNDLED_MODELS

DEMO = Path(__file__).resolve().parent.parent / "recordings" / "demo_720p.mp4"
MODEL = BUNDLED_MODELS / "ssd_mobilenet_v2_fpnlite_256_int8.onnx"

parser = argparse.ArgumentParser()
parser.add_argument("video", nargs="?", default=str(DEMO))
args = parser.parse_args()

session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
labels = (MODEL.with_suffix(".labels.txt")).read_text().split("\n")

for batch in streamprep.tensors(args.video, MODEL, fps=1, batch=4):
    scores, encodings, anchors = session.run(None, {name: batch.tensor})  # the SSD's three outputs
    for slot in batch.slots:
        best = scores[slot.index, :, 1:].max(axis=1)  # column 0 is background
        i = int(np.argmax(best))
        klass = int(np.argmax(scores[slot.index, i, 1:])) + 1
        a = anchors[slot.index, i]
        e = encodings[slot.index, i]
        w, h = a[2] - a[0], a[3] - a[1]
        box = np.array([[e[0] * w + a[0], e[1] * h + a[1], e[2] * w + a[2], e[3] * h + a[3]]]) * 256  # input px
        x1, y1, x2, y2 = slot.to_source(box)[0]
        print(
            f"{slot.source} {slot.pts:5.2f} s row {slot.index}: {labels[klass]} {best[i]:.2f} "
            f"at [{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}] of {slot.width}x{slot.height}"
        )
