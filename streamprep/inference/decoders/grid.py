"""FastestDet-style grid detector: one ``[N, 5+C, H, W]`` map, a box per cell."""

from __future__ import annotations

import numpy as np

from streamprep.inference.decoders.base import Decoded, DecoderOptions, check_labels
from streamprep.inference.decoders.nms import detections
from streamprep.inference.onnx import ModelInfo
from streamprep.preprocess.geometry import Geometry
from streamprep.values.errors import ModelError
from streamprep.values.frames import Tensor


class GridDecoder:
    """Per cell (gy, gx): channel 0 objectness, 1..4 box terms, 5.. class scores (all activated).

    score = obj^0.6 · max(cls)^0.4; centre = ((gx + tanh(t1)) / W, (gy + tanh(t2)) / H);
    size = (sigmoid(t3), sigmoid(t4)), all normalised to the model input (whose size is the geometry's, so a
    model with dynamic input sizes decodes the same way).
    """

    kind = "detection"

    def __init__(self, info: ModelInfo, options: DecoderOptions) -> None:
        if len(info.outputs) != 1 or len(info.outputs[0].shape) != 4:
            raise ModelError(
                f"the grid decoder expects one output of shape [N, 5+classes, H, W]; "
                f"model {info.name} outputs {[o.describe() for o in info.outputs]}"
            )
        channels = info.outputs[0].shape[1]
        if not isinstance(channels, int) or channels <= 5:
            raise ModelError(
                f"the grid decoder expects output {info.outputs[0].name!r} to have 5+classes channels, "
                f"got {info.outputs[0].describe()}"
            )
        check_labels(options, channels - 5, f"model {info.name}")
        self.options = options

    def decode(self, outputs: list[Tensor], index: int, geometry: Geometry) -> Decoded:
        grid = outputs[0][index].astype(np.float64)
        _, gh, gw = grid.shape
        cls = grid[5:]
        class_ids = cls.argmax(axis=0)
        best_cls = np.take_along_axis(cls, class_ids[None], axis=0)[0]
        score = np.power(np.clip(grid[0], 0, None), 0.6) * np.power(np.clip(best_cls, 0, None), 0.4)
        gy, gx = np.nonzero(score >= self.options.score_threshold)
        t = grid[1:5, gy, gx]
        cx = (gx + np.tanh(t[0])) / gw
        cy = (gy + np.tanh(t[1])) / gh
        w = 1.0 / (1.0 + np.exp(-t[2]))
        h = 1.0 / (1.0 + np.exp(-t[3]))
        size = np.array([geometry.out_width, geometry.out_height] * 2, dtype=np.float64)
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1) * size
        return Decoded(detections=detections(boxes, score[gy, gx], class_ids[gy, gx], geometry, self.options))
