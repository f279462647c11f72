"""Classification: top-k classes with labels from an ``[N, C]`` output (probabilities or logits)."""

from __future__ import annotations

import numpy as np

from streamprep.inference.decoders.base import Decoded, DecoderOptions, check_labels
from streamprep.inference.onnx import ModelInfo
from streamprep.preprocess.geometry import Geometry
from streamprep.values.errors import ModelError
from streamprep.values.frames import Classification, Tensor


class ClassifyDecoder:
    """Logits (recognised by any value outside [0, 1]) go through a softmax first; probabilities, which a
    quantised model may round so that they no longer sum to 1, are reported as they are."""

    kind = "classification"

    def __init__(self, info: ModelInfo, options: DecoderOptions) -> None:
        if len(info.outputs) != 1 or len(info.outputs[0].shape) != 2:
            raise ModelError(
                f"the classification decoder expects one output of shape [N, classes]; "
                f"model {info.name} outputs {[o.describe() for o in info.outputs]}"
            )
        classes = info.outputs[0].shape[1]
        if isinstance(classes, int):
            check_labels(options, classes, f"model {info.name}")
        self.options = options

    def decode(self, outputs: list[Tensor], index: int, geometry: Geometry) -> Decoded:
        row = outputs[0][index].astype(np.float64)
        if row.min() < 0 or row.max() > 1:
            e = np.exp(row - row.max())
            row = e / e.sum()
        top = np.argsort(-row, kind="stable")[: self.options.top_k]
        return Decoded(
            classifications=tuple(
                Classification(label=self.options.label(int(i)), class_id=int(i), score=round(float(row[i]), 4))
                for i in top
            )
        )
