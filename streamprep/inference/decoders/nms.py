"""Class-aware non-maximum suppression and the common tail of every detector decoder."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from streamprep.inference.decoders.base import DecoderOptions
from streamprep.preprocess.geometry import Geometry
from streamprep.values.frames import Box, Detection


def detections(
    boxes: npt.NDArray[np.floating],
    scores: npt.NDArray[np.floating],
    class_ids: npt.NDArray[np.integer],
    geometry: Geometry,
    options: DecoderOptions,
) -> tuple[Detection, ...]:
    """Boxes in model-input pixels (x1, y1, x2, y2) above threshold → NMS per class → source pixels.

    Sorted by descending score, at most ``options.max_detections``.
    """
    if len(scores) == 0:
        return ()
    xywh = np.empty((len(boxes), 4), dtype=np.float64)
    xywh[:, :2] = boxes[:, :2]
    xywh[:, 2:] = boxes[:, 2:] - boxes[:, :2]
    kept = cv2.dnn.NMSBoxesBatched(
        xywh.tolist(),
        scores.astype(np.float64).tolist(),
        class_ids.astype(np.int64).tolist(),
        options.score_threshold,
        options.iou_threshold,
    )
    keep = np.asarray(kept, dtype=np.int64).reshape(-1)
    keep = keep[np.argsort(-scores[keep], kind="stable")][: options.max_detections]
    source = geometry.boxes_to_source(boxes[keep])
    return tuple(
        Detection(
            label=options.label(int(class_ids[k])),
            class_id=int(class_ids[k]),
            score=round(float(scores[k]), 4),
            box=Box(*(round(float(v), 1) for v in source[j])),
        )
        for j, k in enumerate(keep)
    )
