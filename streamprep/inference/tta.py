"""Test-time augmentation: extra views of each frame in the same inference batch, fused into one answer.

``tta = ["hflip", "scale:0.83", "hflip+scale:0.83"]`` per model adds one view per entry to the frame itself:
``hflip`` mirrors it left to right; ``scale:S`` shows it at S times its usual size in the same input
(smaller: centred with the pad value around it; larger: its centre). A frame's views take consecutive
slots of the batch tensor, so ``batch`` frames run as ``batch × views`` inputs in one inference.

Fusion: classifier probabilities are averaged over the views (logits go through a softmax first). Detector
views are decoded with a low score threshold (:data:`VIEW_THRESHOLD`, so that a view that sees a box weakly
still counts), their boxes mapped back to source pixels through each view's own geometry (mirrored back for
flipped views) and fused, by weighted box fusion (``wbf``, the default: boxes of a class overlapping by the
model's ``iou_threshold`` become their score-weighted average, scored by the mean score times the share of
views that found it, i.e. the views' scores averaged, a view that missed it counting 0) or by class-aware
NMS (``nms``: the best box of each overlapping group, its score unchanged). Fused detections below the
model's ``score_threshold`` are dropped.

The pipeline's seam is :class:`Views`: :meth:`Views.batch_for`, :meth:`Views.prepare` per frame and
:meth:`Views.decode` per frame; with no augmentation they are exactly ``Preprocessor.batch_for``,
``Preprocessor.into`` and ``Decoder.decode``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from streamprep.inference.decoders.base import Decoded, Decoder, DecoderOptions
from streamprep.preprocess.geometry import Geometry, Region
from streamprep.preprocess.kernels import Preprocessor
from streamprep.preprocess.spec import Layout
from streamprep.values.errors import ConfigError
from streamprep.values.frames import Box, Detection, Image

Array = npt.NDArray[Any]
Fusion = Literal["wbf", "nms"]
VIEW_THRESHOLD = 0.05  # detections each view contributes to the fusion (at most the model's threshold)
_ENTRY = re.compile(r"^(?:(hflip)|(?:(hflip)\+)?scale:([0-9]*\.?[0-9]+))$")


@dataclass(frozen=True)
class View:
    """One view of a frame: mirrored or not, at ``scale`` times its usual size."""

    hflip: bool = False
    scale: float = 1.0

    @property
    def name(self) -> str:
        parts = (["hflip"] if self.hflip else []) + ([f"scale:{self.scale:g}"] if self.scale != 1.0 else [])
        return "+".join(parts) or "identity"


def parse_views(entries: Sequence[str]) -> tuple[View, ...]:
    """``tta`` entries as views (the identity view not included); ValueError names a bad entry."""
    views = []
    for entry in entries:
        m = _ENTRY.match(entry.strip())
        if m is None:
            raise ValueError(f'unknown view {entry!r}; use "hflip", "scale:S" or "hflip+scale:S"')
        if m.group(1):
            views.append(View(hflip=True))
            continue
        scale = float(m.group(3))
        if not 0.1 <= scale <= 4.0:
            raise ValueError(f"view {entry!r}: scale must be between 0.1 and 4")
        views.append(View(hflip=bool(m.group(2)), scale=scale))
    if len(set(views)) != len(views) or View() in views:
        raise ValueError("views must be distinct and differ from the frame itself")
    return tuple(views)


def scaled(geo: Geometry, scale: float) -> Geometry:
    """``geo`` with the resized crop ``scale`` times as large, centred where it was centred."""
    if scale == 1.0:
        return geo
    rw, rh = max(1, round(geo.resized_width * scale)), max(1, round(geo.resized_height * scale))
    cx, cy = geo.pad_x + geo.resized_width / 2, geo.pad_y + geo.resized_height / 2
    return replace(geo, resized_width=rw, resized_height=rh, pad_x=round(cx - rw / 2), pad_y=round(cy - rh / 2))


def mirrored(geo: Geometry) -> Geometry:
    """The geometry of the mirrored input, seen as the geometry of the mirrored source: decoding a flipped
    view with it gives boxes in mirrored source pixels."""
    return replace(
        geo,
        crop_x=geo.src_width - geo.crop_x - geo.crop_width,
        pad_x=geo.out_width - geo.resized_width - geo.pad_x,
    )


def _unmirror(detections: Sequence[Detection], width: int) -> list[Detection]:
    return [replace(d, box=Box(width - d.box.x2, d.box.y1, width - d.box.x1, d.box.y2)) for d in detections]


def _iou(a: Array, b: Array) -> Array:
    """IoU of box ``a`` [4] with boxes ``b`` [N, 4]."""
    w = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_box_fusion(
    detections: Sequence[Detection], views: int, iou: float, threshold: float, limit: int
) -> tuple[Detection, ...]:
    """Weighted box fusion (Solovyev et al., 2021) of detections from ``views`` views, per class."""
    ordered = sorted(detections, key=lambda d: -d.score)
    clusters: list[list[Detection]] = []
    fused: list[Array] = []  # the running fused box of each cluster
    for d in ordered:
        box = np.array([d.box.x1, d.box.y1, d.box.x2, d.box.y2], dtype=np.float64)
        same = [i for i, c in enumerate(clusters) if c[0].class_id == d.class_id]
        best = -1
        if same:
            overlaps = _iou(box, np.stack([fused[i] for i in same]))
            if overlaps.max() > iou:
                best = same[int(overlaps.argmax())]
        if best < 0:
            clusters.append([d])
            fused.append(box)
            continue
        clusters[best].append(d)
        scores = np.array([m.score for m in clusters[best]])
        boxes = np.array([[m.box.x1, m.box.y1, m.box.x2, m.box.y2] for m in clusters[best]])
        fused[best] = (scores[:, None] * boxes).sum(axis=0) / scores.sum()
    out = []
    for members, box in zip(clusters, fused, strict=True):
        score = float(np.mean([m.score for m in members])) * min(len(members), views) / views
        if score >= threshold:
            out.append(replace(members[0], score=round(score, 4), box=Box(*(round(float(v), 1) for v in box))))
    out.sort(key=lambda d: -d.score)
    return tuple(out[:limit])


def nms_fusion(detections: Sequence[Detection], iou: float, threshold: float, limit: int) -> tuple[Detection, ...]:
    """Class-aware NMS over the detections of every view."""
    if not detections:
        return ()
    xywh = [[d.box.x1, d.box.y1, d.box.x2 - d.box.x1, d.box.y2 - d.box.y1] for d in detections]
    scores = [d.score for d in detections]
    kept = cv2.dnn.NMSBoxesBatched(xywh, scores, [d.class_id for d in detections], threshold, iou)
    keep = sorted(np.asarray(kept, dtype=np.int64).reshape(-1).tolist(), key=lambda k: -scores[k])
    return tuple(detections[k] for k in keep[:limit])


def _probabilities(row: Array) -> Array:
    """As the classification decoder reads a row: logits (values outside [0, 1]) through a softmax."""
    row = row.astype(np.float64)
    if row.min() < 0 or row.max() > 1:
        e = np.exp(row - row.max())
        return np.asarray(e / e.sum())
    return row


@dataclass(frozen=True)
class Views:
    """The views each frame runs as, and how their answers become one. ``Views()`` is the frame alone."""

    extra: tuple[View, ...] = ()
    fusion: Fusion = "wbf"
    options: DecoderOptions = field(default_factory=DecoderOptions)
    view_decoder: Decoder | None = None  # the model's decoder with VIEW_THRESHOLD, for detector views

    @property
    def count(self) -> int:
        """Input slots per frame."""
        return 1 + len(self.extra)

    def batch_for(self, pre: Preprocessor, tensor: Array, frames: Sequence[tuple[int, int, Region | None]]) -> Array:
        """The tensor a batch of frames is written into (see :meth:`Preprocessor.batch_for`), with a slot
        for every view of every frame."""
        return pre.batch_for(tensor, [f for f in frames for _ in range(self.count)])

    def prepare(
        self,
        pre: Preprocessor,
        tensor: Array,
        index: int,
        image: Image,
        pixel_format: str = "bgr24",
        region: Region | None = None,
        color_matrix: str = "bt601",
        color_range: str = "limited",
    ) -> tuple[Geometry, ...]:
        """Write frame ``index``'s views into its slots of ``tensor``; their geometries, identity first."""
        first = index * self.count
        geo = pre.into(image, tensor[first], pixel_format, region, color_matrix, color_range)
        geometries = [geo]
        width_axis = 2 if pre.spec.layout is Layout.NCHW else 1
        for k, view in enumerate(self.extra, start=first + 1):
            if view.scale == 1.0:
                source, g = tensor[first], geo
            else:
                g = scaled(geo, view.scale)
                pre.into(image, tensor[k], pixel_format, region, color_matrix, color_range, geometry=g)
                source = tensor[k]
            if view.hflip:
                np.copyto(tensor[k], np.flip(source, axis=width_axis))
                g = mirrored(g)
            geometries.append(g)
        return tuple(geometries)

    def decode(self, decoder: Decoder, outputs: list[Array], index: int, geometries: Sequence[Geometry]) -> Decoded:
        """Frame ``index``'s answer: its only view's, or its views' fused."""
        first = index * self.count
        if not self.extra:
            return decoder.decode(outputs, first, geometries[0])
        if decoder.kind == "classification":
            mean = np.mean([_probabilities(outputs[0][first + k]) for k in range(self.count)], axis=0)
            return decoder.decode([mean[None]], 0, geometries[0])
        found: list[Detection] = []
        each = self.view_decoder or decoder
        for k, (view, geo) in enumerate(zip((View(), *self.extra), geometries, strict=True)):
            detections = each.decode(outputs, first + k, geo).detections or ()
            found += _unmirror(detections, geo.src_width) if view.hflip else list(detections)
        o = self.options
        if self.fusion == "nms":
            fused = nms_fusion(found, o.iou_threshold, o.score_threshold, o.max_detections)
        else:
            fused = weighted_box_fusion(found, self.count, o.iou_threshold, o.score_threshold, o.max_detections)
        return Decoded(detections=fused)


def views_for(
    entries: Sequence[str], fusion: Fusion, decoder: Decoder, options: DecoderOptions, low: Decoder | None
) -> Views:
    """The views a model's ``tta`` and ``tta_fusion`` ask for; ConfigError when its decoder cannot fuse.
    ``low`` is the model's decoder with ``score_threshold`` :data:`VIEW_THRESHOLD`, for detectors."""
    try:
        extra = parse_views(entries)
    except ValueError as exc:
        raise ConfigError(f"model.tta: {exc}") from None
    if extra and decoder.kind not in ("detection", "classification"):
        raise ConfigError(f"model.tta: views are fused for detectors and classifiers, not for {decoder.kind} outputs")
    return Views(extra, fusion, options, low if extra and decoder.kind == "detection" else None)
