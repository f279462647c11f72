"""YOLO detection heads in their two common export layouts.

- ``yolov5``: ``[N, boxes, 5 + C]`` rows of (cx, cy, w, h, objectness, class scores…), as YOLOv5, YOLOv7
  and YOLOX export with decoding in the graph; score = objectness × class score.
- ``yolov8``: ``[N, 4 + C, boxes]`` columns of (cx, cy, w, h, class scores…), as YOLOv8 and YOLO11 export;
  score = class score.

Boxes are in model-input pixels (centre and size), mapped back to source pixels through the geometry.
"""

from __future__ import annotations

import numpy as np

from streamprep.inference.decoders.base import Decoded, DecoderOptions, check_labels
from streamprep.inference.decoders.nms import detections
from streamprep.inference.onnx import ModelInfo
from streamprep.preprocess.geometry import Geometry
from streamprep.values.errors import ModelError
from streamprep.values.frames import Tensor


class YoloDecoder:
    kind = "detection"

    def __init__(self, info: ModelInfo, options: DecoderOptions, layout: str) -> None:
        if layout not in ("yolov5", "yolov8"):
            raise ValueError(layout)
        expected = "[N, boxes, 5+classes]" if layout == "yolov5" else "[N, 4+classes, boxes]"
        if len(info.outputs) < 1 or len(info.outputs[0].shape) != 3:
            raise ModelError(
                f"the {layout} decoder expects a first output of shape {expected}; "
                f"model {info.name} outputs {[o.describe() for o in info.outputs]}"
            )
        shape = info.outputs[0].shape
        width = shape[2] if layout == "yolov5" else shape[1]
        extra = 5 if layout == "yolov5" else 4
        if isinstance(width, int):
            if width <= extra:
                raise ModelError(
                    f"the {layout} decoder expects output {info.outputs[0].name!r} of shape {expected}, "
                    f"got {info.outputs[0].describe()}"
                )
            check_labels(options, width - extra, f"model {info.name}")
        self.layout = layout
        self.options = options

    def decode(self, outputs: list[Tensor], index: int, geometry: Geometry) -> Decoded:
        rows = outputs[0][index]
        if self.layout == "yolov8":
            rows = rows.T
            scores_all = rows[:, 4:]
        else:
            scores_all = rows[:, 5:] * rows[:, 4:5]
        class_ids = scores_all.argmax(axis=1)
        scores = scores_all[np.arange(len(rows)), class_ids]
        hit = np.flatnonzero(scores >= self.options.score_threshold)
        cxcywh = rows[hit, :4].astype(np.float64)
        boxes = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
        return Decoded(detections=detections(boxes, scores[hit], class_ids[hit], geometry, self.options))
