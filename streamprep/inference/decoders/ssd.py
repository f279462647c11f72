"""SSD with anchors (the bundled SSD-MobileNetV2-FPNLite): class scores, box encodings, anchors."""

from __future__ import annotations

import numpy as np

from streamprep.inference.decoders.base import Decoded, DecoderOptions, check_labels
from streamprep.inference.decoders.nms import detections
from streamprep.inference.onnx import ModelInfo
from streamprep.preprocess.geometry import Geometry
from streamprep.values.errors import ModelError
from streamprep.values.frames import Tensor


class SsdDecoder:
    """Scores ``[N, A, 1+C]`` (column 0 background), encodings ``[N, A, 4]``, anchors ``[N, A, 4]``.

    Anchors are normalised (x1, y1, x2, y2); each corner is offset by its encoding times the anchor's
    width or height. Outputs are found by shape: the one with more than four columns holds the scores,
    the other two are the encodings then the anchors in the model's output order, unless named.
    """

    kind = "detection"

    def __init__(
        self,
        info: ModelInfo,
        options: DecoderOptions,
        names: dict[str, str] | None = None,
    ) -> None:
        self.options = options
        index = {o.name: i for i, o in enumerate(info.outputs)}
        names = names or {}
        if names:
            missing = [n for n in names.values() if n not in index]
            if missing:
                raise ModelError(f"model {info.name} has no output named {missing[0]!r}")
            self._scores, self._boxes, self._anchors = (index[names[k]] for k in ("scores", "boxes", "anchors"))
        else:
            if len(info.outputs) != 3:
                raise ModelError(
                    f"the ssd decoder expects 3 outputs (scores, box encodings, anchors); "
                    f"model {info.name} has {len(info.outputs)}"
                )
            wide = [i for i, o in enumerate(info.outputs) if len(o.shape) == 3 and _last(o.shape) > 4]
            if len(wide) != 1:
                raise ModelError(
                    f"the ssd decoder expects one scores output of shape [N, anchors, 1+classes]; "
                    f"model {info.name} outputs {[o.describe() for o in info.outputs]}"
                )
            self._scores = wide[0]
            self._boxes, self._anchors = (i for i in range(3) if i != wide[0])
        for i in (self._boxes, self._anchors):
            if len(info.outputs[i].shape) != 3 or _last(info.outputs[i].shape) != 4:
                raise ModelError(
                    f"the ssd decoder expects output {info.outputs[i].name!r} of shape [N, anchors, 4], "
                    f"got {info.outputs[i].describe()}"
                )
        classes = _last(info.outputs[self._scores].shape)
        check_labels(options, classes, f"model {info.name} (scores output with background column)")

    def decode(self, outputs: list[Tensor], index: int, geometry: Geometry) -> Decoded:
        scores = outputs[self._scores][index][:, 1:]
        class_ids = scores.argmax(axis=1)
        best = scores[np.arange(len(scores)), class_ids]
        hit = np.flatnonzero(best >= self.options.score_threshold)
        enc = outputs[self._boxes][index][hit].astype(np.float64)
        anchors = outputs[self._anchors][index][hit].astype(np.float64)
        wh = np.tile(anchors[:, 2:] - anchors[:, :2], 2)
        size = np.array([geometry.out_width, geometry.out_height] * 2, dtype=np.float64)  # the input's size
        boxes = (enc * wh + anchors) * size
        return Decoded(detections=detections(boxes, best[hit], class_ids[hit] + 1, geometry, self.options))


def _last(shape: tuple[int | str | None, ...]) -> int:
    dim = shape[-1]
    return dim if isinstance(dim, int) else -1
