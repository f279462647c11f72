"""Models and clips built by the tests, whose right answer is known exactly.

``bright_box_model``: a real ONNX graph that accepts any [N, 3, H, W] float image in [0, 1] and "detects"
its bright region (the bounding box of pixels brighter than 0.5, in input pixels, YOLOv8 layout
[N, 4+1, 1]). ``clip``: a short H.264 file of a white rectangle on a dark background.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BIG = 1e9


def bright_box_model(path: Path, metadata: dict[str, str] | None = None, static: int | None = None) -> Path:
    """[N, 3, H, W] float in [0, 1] → [N, 5, 1]: (cx, cy, w, h) of the pixels brighter than 0.5, and a score."""

    def const(name: str, value: float | list[int]) -> onnx.TensorProto:
        array = np.array(value, np.int64 if isinstance(value, list) else np.float32)
        return numpy_helper.from_array(array, name)

    n = helper.make_node
    nodes = [
        n("ReduceMean", ["images"], ["gray"], axes=[1], keepdims=1),
        n("Greater", ["gray", "half"], ["on"]),
        n("Cast", ["on"], ["mask"], to=TensorProto.FLOAT),
        n("ReduceMax", ["mask"], ["cols"], axes=[1, 2], keepdims=0),  # [N, W]
        n("ReduceMax", ["mask"], ["rows"], axes=[1, 3], keepdims=0),  # [N, H]
        n("Shape", ["images"], ["shape"]),
        n("Gather", ["shape", "i2"], ["h_i"], axis=0),
        n("Gather", ["shape", "i3"], ["w_i"], axis=0),
        n("Cast", ["h_i"], ["h_f"], to=TensorProto.FLOAT),
        n("Cast", ["w_i"], ["w_f"], to=TensorProto.FLOAT),
        n("Range", ["zero", "w_f", "one"], ["xs"]),
        n("Range", ["zero", "h_f", "one"], ["ys"]),
        n("ReduceMax", ["mask"], ["score"], axes=[1, 2, 3], keepdims=0),
    ]
    for axis, profile, coords in (("x", "cols", "xs"), ("y", "rows", "ys")):
        nodes += [
            n("Add", [coords, "one"], [f"{axis}_end"]),
            n("Mul", [profile, f"{axis}_end"], [f"{axis}_ends"]),
            n("ReduceMax", [f"{axis}_ends"], [f"{axis}2"], axes=[1], keepdims=0),
            n("Mul", [profile, coords], [f"{axis}_on"]),
            n("Sub", ["one", profile], [f"{axis}_off"]),
            n("Mul", [f"{axis}_off", "big"], [f"{axis}_far"]),
            n("Add", [f"{axis}_on", f"{axis}_far"], [f"{axis}_starts"]),
            n("ReduceMin", [f"{axis}_starts"], [f"{axis}1"], axes=[1], keepdims=0),
            n("Add", [f"{axis}1", f"{axis}2"], [f"{axis}_sum"]),
            n("Mul", [f"{axis}_sum", "half"], [f"c{axis}"]),
            n("Sub", [f"{axis}2", f"{axis}1"], [f"{axis}_size"]),
        ]
    nodes += [
        *(n("Unsqueeze", [v, "ax1"], [f"{v}_u"]) for v in ("cx", "cy", "x_size", "y_size", "score")),
        n("Concat", ["cx_u", "cy_u", "x_size_u", "y_size_u", "score_u"], ["rows5"], axis=1),
        n("Unsqueeze", ["rows5", "ax2"], ["output0"]),
    ]
    dims: list[int | str] = ["N", 3, static or "height", static or "width"]
    graph = helper.make_graph(
        nodes,
        "bright_box",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 5, 1])],
        [
            const("half", 0.5),
            const("zero", 0.0),
            const("one", 1.0),
            const("big", BIG),
            const("i2", [2]),
            const("i3", [3]),
            const("ax1", [1]),
            const("ax2", [2]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    path.with_suffix(".labels.txt").write_text("bright\n")
    return path


def sidecar(model: Path, **preprocess: object) -> None:
    data = {"preprocess": {"color": "rgb", "scaling": "unit", **preprocess}, "decoder": {"type": "yolov8"}}
    model.with_suffix(".streamprep.json").write_text(json.dumps(data))


def clip(path: Path, width: int, height: int, box: tuple[int, int, int, int], frames: int = 4) -> Path:
    """A short H.264 clip: a white rectangle (x1, y1, x2, y2) on a dark background."""
    image = np.full((height, width, 3), 30, np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "10"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path
