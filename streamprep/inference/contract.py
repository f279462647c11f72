"""No silent guesses: which parts of a model's preprocessing contract streamprep assumed, and how to say them.

A spec field is *declared* when the model input, its metadata, a sidecar or the config states it, and
*assumed* when it comes from streamprep's defaults (provenance ``default``, see
:func:`streamprep.preprocess.spec.derive`). Only assumptions that change the numbers the model sees matter
here: colour order, value scaling, mean/std (with ``mean_std`` scaling) and the resize mode. A model trained
otherwise still runs, silently worse, so each one is named once when the model is loaded, listed by
``streamprep check`` (an error with ``--strict``) and marked by ``streamprep inspect``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streamprep.preprocess.spec import PreprocessSpec, Provenance, Scaling

# Fields whose assumed value changes the tensor, in the order they are reported.
NUMERIC_FIELDS = ("color", "scaling", "mean", "std", "resize")
ASSUMED = "default"


def assumed_fields(spec: PreprocessSpec, provenance: Provenance) -> tuple[str, ...]:
    """The fields of :data:`NUMERIC_FIELDS` nobody declared (mean/std only where they are used)."""
    out = []
    for key in NUMERIC_FIELDS:
        if key in ("mean", "std") and spec.scaling is not Scaling.MEAN_STD:
            continue
        if provenance.get(key, ASSUMED) == ASSUMED:
            out.append(key)
    return tuple(out)


def _value(spec: PreprocessSpec, key: str) -> Any:
    return spec.to_json()[key]


def declaration(spec: PreprocessSpec, fields: tuple[str, ...]) -> dict[str, Any]:
    """The sidecar ``preprocess`` entries that declare ``fields`` with their current values."""
    return {key: _value(spec, key) for key in fields}


def assumption_warning(name: str, path: Path, spec: PreprocessSpec, fields: tuple[str, ...]) -> str:
    """One line naming the assumed fields, their values, and where to declare them."""
    shown = ", ".join(f"{key} = {_show(_value(spec, key))}" for key in fields)
    sidecar = path.with_suffix(".streamprep.json").name
    body = json.dumps({"preprocess": declaration(spec, fields)}, separators=(", ", ": "))
    return (
        f"model {name}: preprocessing assumed, not declared by the model: {shown}; a model trained otherwise "
        f"runs without an error but sees wrong tensors. Declare them in {sidecar} beside the model ({body}) "
        f"or in [model.preprocess] of the config; `streamprep probe {path}` finds them from photos of known content"
    )


def labels_warning(name: str, path: Path) -> str:
    """One line for a detector or classifier without class names."""
    labels = path.with_suffix(".labels.txt").name
    return (
        f"model {name}: no labels, so classes are reported as class_0, class_1, ...; put {labels} (one name per "
        "line) beside the model, set labels = FILE in [model], or add a names entry to the model's metadata"
    )


def remote_labels_warning(name: str, location: str) -> str:
    """One line for a model on an inference server that gives no class names, and no local copy beside them."""
    return (
        f"model {name}: no labels, so classes are reported as class_0, class_1, ...: the server ({location}) "
        "gives none (no labels or names parameter in its model configuration or metadata) and [model] has no "
        "path; set labels = FILE (one name per line) in [model], or give the labels to the server as a labels "
        "parameter of the model"
    )


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)
