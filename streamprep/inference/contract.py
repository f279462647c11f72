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
from typing import TYPE_CHECKING, Any

from streamprep.preprocess.spec import PreprocessSpec, Provenance, Scaling

if TYPE_CHECKING:
    from streamprep.inference.model import LoadedModel

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


def review(key: str, model: LoadedModel, strict: bool) -> tuple[list[str], list[str]]:
    """What ``streamprep check`` says about one loaded model's contract: ``(lines to print, problems)``.

    Problems (assumed fields) are returned only with ``strict``; without it they are just listed.
    """
    lines: list[str] = []
    problems: list[str] = []
    fields = model.assumed
    if fields:
        lines.append(f"model {key}: assumed, not declared: {', '.join(fields)}")
        if strict:
            problems.append(
                f"model {key}: preprocessing assumed, not declared: {', '.join(fields)} "
                "(declare them in the sidecar or [model.preprocess])"
            )
    if not model.labels and model.decoder.kind in ("detection", "classification"):
        lines.append(f"model {key}: no labels (classes reported as class_N)")
    return lines, problems


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)
