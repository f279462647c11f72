"""Decoders, chosen by name or recognised from the model's output shapes."""

from __future__ import annotations

from typing import Any

from streamprep.config.schema import DECODERS
from streamprep.inference.decoders.base import Decoded, Decoder, DecoderOptions, read_labels
from streamprep.inference.decoders.classify import ClassifyDecoder
from streamprep.inference.decoders.grid import GridDecoder
from streamprep.inference.decoders.raw import RawDecoder
from streamprep.inference.decoders.ssd import SsdDecoder
from streamprep.inference.decoders.yolo import YoloDecoder
from streamprep.inference.decoders.yunet import YunetDecoder, yunet_strides
from streamprep.inference.onnx import ModelInfo
from streamprep.preprocess.spec import PreprocessSpec
from streamprep.values.errors import ModelError

__all__ = [
    "DECODERS",
    "Decoded",
    "Decoder",
    "DecoderOptions",
    "build_decoder",
    "read_labels",
    "recognise",
    "resolve",
]


def recognise(info: ModelInfo, classes: int | None = None) -> str:
    """The decoder an output layout calls for; ``raw`` when it is not recognised.

    ``classes`` (the number of labels, when known) separates the YOLO layouts exactly; without it a
    ``[N, small, large]`` output is read as YOLOv8 and ``[N, large, small]`` as YOLOv5.
    """
    if yunet_strides(info):
        return "yunet"
    shapes = [o.shape for o in info.outputs]
    if len(shapes) == 3 and sum(len(s) == 3 and s[-1] == 4 for s in shapes) == 2:
        return "ssd"
    if shapes and len(shapes[0]) == 3 and all(isinstance(d, int) for d in shapes[0][1:]):
        a, b = int(shapes[0][1]), int(shapes[0][2])  # type: ignore[arg-type]
        if classes is not None and b == 5 + classes:
            return "yolov5"
        if classes is not None and a == 4 + classes:
            return "yolov8"
        if classes is None and min(a, b) > 5:
            return "yolov8" if a < b else "yolov5"
    if len(shapes) == 1 and len(shapes[0]) == 4 and isinstance(shapes[0][1], int) and shapes[0][1] > 5:
        return "grid"
    if len(shapes) == 1 and len(shapes[0]) == 2 and isinstance(shapes[0][1], int) and shapes[0][1] > 1:
        return "classification"
    return "raw"


def resolve(name: str, info: ModelInfo, options: DecoderOptions) -> str:
    """The decoder name ``auto`` stands for: the sidecar's, else the one the output shapes call for."""
    if name != "auto":
        return name
    sidecar: dict[str, Any] = info.sidecar.get("decoder", {}) if isinstance(info.sidecar, dict) else {}
    return str(sidecar.get("type", "")) or recognise(info, len(options.labels) or None)


def build_decoder(name: str, info: ModelInfo, options: DecoderOptions, spec: PreprocessSpec) -> Decoder:
    """The decoder ``name`` (or the one the sidecar or output shapes call for, for ``auto``)."""
    sidecar: dict[str, Any] = info.sidecar.get("decoder", {}) if isinstance(info.sidecar, dict) else {}
    name = resolve(name, info, options)
    if name == "ssd":
        return SsdDecoder(info, options, sidecar.get("outputs"))
    if name in ("yolov5", "yolov8"):
        return YoloDecoder(info, options, name)
    if name == "grid":
        return GridDecoder(info, options)
    if name == "classification":
        return ClassifyDecoder(info, options)
    if name == "raw":
        return RawDecoder(info, options)
    if name == "yunet":
        return YunetDecoder(info, options)
    raise ModelError(f"unknown decoder {name!r}; choose one of {', '.join(DECODERS)}")
