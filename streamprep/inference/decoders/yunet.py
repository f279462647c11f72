"""YuNet face detector (libfacedetection.train's ONNX export, read as OpenCV's ``FaceDetectorYN`` reads it).

Outputs per stride S (8, 16, 32): ``cls_S`` and ``obj_S`` ``[N, cells, 1]``, ``bbox_S`` ``[N, cells, 4]`` and
``kps_S`` ``[N, cells, 10]`` (five landmarks, not reported), one cell per S×S block of the input, row-major.
score = sqrt(clip(cls, 0, 1) · clip(obj, 0, 1)); centre = ((col + b0)·S, (row + b1)·S); size =
(exp(b2)·S, exp(b3)·S), in input pixels. The one class is ``face``.
"""

from __future__ import annotations

import math
import re

import numpy as np

from streamprep.inference.decoders.base import Decoded, DecoderOptions
from streamprep.inference.decoders.nms import detections
from streamprep.inference.onnx import ModelInfo
from streamprep.preprocess.geometry import Geometry
from streamprep.values.errors import ModelError
from streamprep.values.frames import Tensor

_CLS = re.compile(r"^cls_(\d+)$")


def yunet_strides(info: ModelInfo) -> tuple[int, ...]:
    """The strides whose cls/obj/bbox outputs the model has (empty when it is not YuNet-shaped)."""
    names = {o.name for o in info.outputs}
    strides = sorted(int(m.group(1)) for n in names if (m := _CLS.match(n)))
    return tuple(s for s in strides if f"obj_{s}" in names and f"bbox_{s}" in names)


class YunetDecoder:
    kind = "detection"

    def __init__(self, info: ModelInfo, options: DecoderOptions) -> None:
        self.strides = yunet_strides(info)
        if not self.strides:
            raise ModelError(
                f"the yunet decoder expects outputs cls_S, obj_S and bbox_S per stride S; model {info.name} outputs "
                f"{[o.name for o in info.outputs]}"
            )
        index = {o.name: i for i, o in enumerate(info.outputs)}
        self._outputs = [(s, index[f"cls_{s}"], index[f"obj_{s}"], index[f"bbox_{s}"]) for s in self.strides]
        self.options = options

    def decode(self, outputs: list[Tensor], index: int, geometry: Geometry) -> Decoded:
        boxes, scores = [], []
        for stride, cls_i, obj_i, bbox_i in self._outputs:
            cls = np.clip(outputs[cls_i][index].reshape(-1).astype(np.float64), 0, 1)
            obj = np.clip(outputs[obj_i][index].reshape(-1).astype(np.float64), 0, 1)
            score = np.sqrt(cls * obj)
            hit = np.flatnonzero(score >= self.options.score_threshold)
            if not len(hit):
                continue
            cols = math.ceil(geometry.out_width / stride)
            b = outputs[bbox_i][index].reshape(-1, 4)[hit].astype(np.float64)
            cx, cy = (hit % cols + b[:, 0]) * stride, (hit // cols + b[:, 1]) * stride
            w, h = np.exp(b[:, 2]) * stride, np.exp(b[:, 3]) * stride
            boxes.append(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1))
            scores.append(score[hit])
        if not boxes:
            return Decoded(detections=())
        score_all = np.concatenate(scores)
        classes = np.zeros(len(score_all), np.int64)
        return Decoded(detections=detections(np.concatenate(boxes), score_all, classes, geometry, self.options))
