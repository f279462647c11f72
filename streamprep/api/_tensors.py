"""``streamprep.tensors()``: preprocessed batches, exactly as the model would get them, for your own inference."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamprep.api._run import BUFFER, Run, SourceLike, _iterate, configure
from streamprep.config.schema import parse
from streamprep.inference.decoders.base import Decoded
from streamprep.inference.model import LoadedModel, load_model
from streamprep.inference.onnx import ModelInfo
from streamprep.preprocess.geometry import Geometry
from streamprep.preprocess.kernels import Preprocessor
from streamprep.preprocess.spec import PreprocessSpec
from streamprep.values.errors import ConfigError
from streamprep.values.frames import Frame, Result, Tensor


@dataclass(frozen=True)
class Slot:
    """One frame's row of a :class:`TensorBatch`: where it came from, and the way back to its pixels."""

    index: int  # its row of the batch tensor (with test-time augmentation off: one row per frame)
    source: str
    seq: int
    pts: float | None
    frame_index: int
    width: int
    height: int
    geometry: Geometry
    frame: Frame | None = dataclasses.field(default=None, repr=False)

    def to_source(self, boxes: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Boxes ``[N, 4]`` (x1, y1, x2, y2) in the model input's pixels, in the source frame's pixels."""
        return np.asarray(self.geometry.boxes_to_source(np.asarray(boxes, dtype=np.float64)), dtype=np.float64)


@dataclass(frozen=True)
class TensorBatch:
    """A batch of preprocessed frames, exactly as the model would get it, and what each row is."""

    tensor: Tensor
    slots: tuple[Slot, ...]


class _Copy:
    """An engine that runs nothing: its one output is a copy of the batch tensor."""

    def __init__(self, info: ModelInfo) -> None:
        self.info = info

    def run(self, tensor: Tensor) -> list[Tensor]:
        return [np.array(tensor, copy=True)]


class _Rows:
    """A decoder that says which row of the copied tensor is this frame's, and how it was made."""

    kind = "raw"

    def decode(self, outputs: list[Tensor], index: int, geometry: Geometry) -> Decoded:
        return Decoded(outputs={"tensor": outputs[0], "row": index, "geometry": geometry})


def _tensor_model(model_or_spec: str | Path | PreprocessSpec | Mapping[str, Any], batch: int) -> LoadedModel:
    if isinstance(model_or_spec, PreprocessSpec):
        spec = model_or_spec
        if not (spec.width and spec.height):
            raise ConfigError("tensors: the spec needs width and height")
        info = ModelInfo(Path("spec"), "tensors", (), (), {}, {}, ())
        return LoadedModel("tensors", _Copy(info), spec, {}, Preprocessor(spec), _Rows(), spec.batch or batch)
    table: dict[str, Any] = (
        {"path": str(model_or_spec)} if isinstance(model_or_spec, str | Path) else dict(model_or_spec)
    )
    table.setdefault("batch", batch)
    loaded = load_model(parse({"model": table}).model)
    return dataclasses.replace(loaded, engine=_Copy(loaded.engine.info), decoder=_Rows())


def tensors(
    sources: SourceLike | Sequence[SourceLike],
    model_or_spec: str | Path | PreprocessSpec | Mapping[str, Any],
    *,
    fps: float | None = None,
    batch: int = 8,
    max_wait_ms: float = 50.0,
    frames: bool = False,
    buffer: int = BUFFER,
    **options: Any,
) -> Iterator[TensorBatch]:
    """``for batch in streamprep.tensors(sources, "model.onnx", batch=8): ...`` — preprocessed batches
    (from a model's contract, or a :class:`~streamprep.preprocess.spec.PreprocessSpec`) for inference you
    run yourself: PyTorch, TensorRT, a remote server. Every slot says its source, pts and geometry, with
    the inverse mapping to source pixels. Sampling, batching across sources and supervision as in a run.
    """
    loaded = _tensor_model(model_or_spec, batch)
    cfg, custom = configure(sources, None, fps, max_wait_ms=max_wait_ms, **options)
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"batch": loaded.max_batch})})
    rows = _iterate(
        lambda: Run(cfg, custom, frames=frames, buffer=buffer * max(1, loaded.max_batch), models={"default": loaded}),
        buffer * max(1, loaded.max_batch),
    )
    return _batches(rows)


def _batches(results: Iterable[Result]) -> Iterator[TensorBatch]:
    """Results of one batch come one after another and share the copied tensor: group them."""
    current: Tensor | None = None
    slots: list[Slot] = []
    for r in results:
        out = r.outputs or {}
        tensor = out["tensor"]
        if current is not None and tensor is not current:
            yield TensorBatch(current, tuple(slots))
            slots = []
        current = tensor
        slots.append(
            Slot(out["row"], r.source, r.seq, r.pts, r.frame_index, r.width, r.height, out["geometry"], r.frame)
        )
    if current is not None:
        yield TensorBatch(current, tuple(slots))
