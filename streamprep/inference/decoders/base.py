"""The decoder seam: raw model outputs for one batch item → what the model found, in source pixels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from streamprep.preprocess.geometry import Geometry
from streamprep.values.errors import ModelError
from streamprep.values.frames import Classification, Detection, Tensor


@dataclass(frozen=True)
class Decoded:
    """One frame's share of the model's answer; exactly one field is set."""

    detections: tuple[Detection, ...] | None = None
    classifications: tuple[Classification, ...] | None = None
    outputs: dict[str, Any] | None = None


@dataclass(frozen=True)
class DecoderOptions:
    score_threshold: float = 0.5
    iou_threshold: float = 0.45
    max_detections: int = 100
    top_k: int = 5
    raw_values: bool = False
    raw_max_elements: int = 65536
    labels: tuple[str, ...] = field(default=())

    def label(self, class_id: int) -> str:
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else f"class_{class_id}"


class Decoder(Protocol):
    kind: str

    def decode(self, outputs: list[Tensor], index: int, geometry: Geometry) -> Decoded:
        """Decode batch item ``index`` of ``outputs``; boxes go through ``geometry`` to source pixels."""
        ...


def read_labels(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ModelError(f"labels file {path}: {exc.strerror or exc}") from None
    return tuple(line.strip() for line in lines if line.strip())


def check_labels(options: DecoderOptions, classes: int, what: str) -> None:
    if options.labels and len(options.labels) != classes:
        raise ModelError(f"{what} has {classes} classes but the labels list has {len(options.labels)} entries")
