"""Raw outputs for any model: a summary of each tensor, and its values when asked and small enough."""

from __future__ import annotations

from typing import Any

import numpy as np

from streamprep.inference.decoders.base import Decoded, DecoderOptions
from streamprep.inference.onnx import ModelInfo
from streamprep.preprocess.geometry import Geometry
from streamprep.values.frames import Tensor


class RawDecoder:
    kind = "raw"

    def __init__(self, info: ModelInfo, options: DecoderOptions) -> None:
        self.options = options
        self._names = [o.name for o in info.outputs]

    def decode(self, outputs: list[Tensor], index: int, geometry: Geometry) -> Decoded:
        summary: dict[str, Any] = {}
        for name, tensor in zip(self._names, outputs, strict=True):
            item = tensor[index] if tensor.ndim > 0 and tensor.shape[0] > index else tensor
            entry: dict[str, Any] = {"shape": list(item.shape), "dtype": str(item.dtype)}
            if item.size:
                as_float = item.astype(np.float64)
                entry.update(
                    min=round(float(as_float.min()), 6),
                    max=round(float(as_float.max()), 6),
                    mean=round(float(as_float.mean()), 6),
                )
            if self.options.raw_values:
                if item.size <= self.options.raw_max_elements:
                    entry["values"] = item.tolist()
                else:
                    entry["values_omitted"] = f"{item.size} elements > raw_max_elements"
            summary[name] = entry
        return Decoded(outputs=summary)
