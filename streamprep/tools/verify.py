"""``streamprep verify MODEL --image IMG --expect TENSOR.npy``: compare streamprep's tensor with the one a
training pipeline made for the same image, and when they differ, find out why.

Streamprep's tensor (the spec derived for the model, as ``streamprep preprocess`` writes it) is compared
with the user's. When they differ, hypotheses are tested by making the tensor again with one or more spec
fields changed (and, where the shapes allow, comparing the user's tensor transposed):

- channels swapped (``color``), a factor of 255 (``scaling`` none/unit), [-1, 1], ImageNet mean/std
  missing, applied where it should not be, or applied twice, Caffe-style mean subtraction;
- stretch vs letterbox (pad 114 or 0, centred or top-left) vs centre crop vs torchvision's
  Resize+CenterCrop (``shorter_crop``);
- interpolation (nearest, linear, area, cubic);
- NHWC vs NCHW (the user's tensor saved in the other layout).

Every combination is tried (a few hundred preprocessings of one image); the one closest to the user's
tensor names the cause: the fields that differ from streamprep's spec, with the max/mean difference before
and after, and the sidecar or config lines that make streamprep produce the user's tensor.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from streamprep.config import schema as config_mod
from streamprep.inference.model import load_model
from streamprep.preprocess.kernels import Preprocessor, affine_for
from streamprep.preprocess.spec import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Color,
    DType,
    Interpolation,
    Layout,
    PreprocessSpec,
    Resize,
    Scaling,
)
from streamprep.values.errors import ConfigError
from streamprep.values.frames import Image

Array = npt.NDArray[Any]

CAFFE_MEAN_BGR = (103.939 / 255.0, 116.779 / 255.0, 123.68 / 255.0)  # Keras "caffe" mode, in 0..1 units
NO_STD = (1.0 / 255.0,) * 3  # std of 1/255: mean subtraction in 0..255 units, no division


@dataclass(frozen=True)
class Values:
    """A way of scaling pixel values, as spec fields for a given colour order."""

    name: str
    scaling: Scaling
    mean: tuple[float, float, float] | None = None  # in RGB order; reordered for BGR
    std: tuple[float, float, float] | None = None

    def fields(self, color: Color) -> dict[str, Any]:
        out: dict[str, Any] = {"scaling": self.scaling}
        if self.mean is not None and self.std is not None:
            flip = color is Color.BGR
            out["mean"] = tuple(reversed(self.mean)) if flip else self.mean
            out["std"] = tuple(reversed(self.std)) if flip else self.std
        return out


def _twice(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[tuple[float, float, float], ...]:
    """mean/std applied twice, ``((x/255 - m)/s - m)/s``, as one mean/std: mean m·(1+s), std s²."""
    m = tuple(a * (1.0 + b) for a, b in zip(mean, std, strict=True))
    s = tuple(b * b for b in std)
    return m, s  # type: ignore[return-value]


VALUES = (
    Values("raw 0..255", Scaling.NONE),
    Values("/255 to [0, 1]", Scaling.UNIT),
    Values("[-1, 1]", Scaling.SYMMETRIC),
    Values("ImageNet mean/std", Scaling.MEAN_STD, IMAGENET_MEAN, IMAGENET_STD),
    Values("ImageNet mean/std applied twice", Scaling.MEAN_STD, *_twice(IMAGENET_MEAN, IMAGENET_STD)),
    Values("Caffe mean subtraction (0..255, BGR means)", Scaling.MEAN_STD, tuple(reversed(CAFFE_MEAN_BGR)), NO_STD),  # type: ignore[arg-type]
)

GEOMETRIES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("stretch", {"resize": Resize.STRETCH}),
    ("letterbox, pad 114, centred", {"resize": Resize.LETTERBOX, "pad_value": 114, "anchor": "center"}),
    ("letterbox, pad 0, centred", {"resize": Resize.LETTERBOX, "pad_value": 0, "anchor": "center"}),
    ("letterbox, pad 114, top-left", {"resize": Resize.LETTERBOX, "pad_value": 114, "anchor": "top_left"}),
    ("centre crop", {"resize": Resize.CENTER_CROP}),
    ("resize shorter side, centre crop 0.875", {"resize": Resize.SHORTER_CROP, "crop_fraction": 0.875}),
    ("rect (fit, pad to the stride)", {"resize": Resize.RECT}),
)


@dataclass(frozen=True)
class Outcome:
    """One hypothesis: the spec fields it sets, whether the user's tensor was transposed, and the result."""

    fields: dict[str, Any]
    transposed: bool
    max_diff: float
    mean_diff: float
    what: tuple[str, ...]  # human-readable, one per cause


def to_batch(tensor: Array) -> Array:
    """The user's tensor as a batch of one, 4-D."""
    if tensor.ndim == 3:
        return tensor[None]
    if tensor.ndim == 4 and tensor.shape[0] == 1:
        return tensor
    raise ConfigError(f"verify: expected a 3-D tensor or a batch of one image, got shape {list(tensor.shape)}")


def transposed(tensor: Array, layout: Layout) -> Array:
    """A 4-D tensor laid out the other way than ``layout``, brought to ``layout``."""
    return tensor.transpose(0, 3, 1, 2) if layout is Layout.NCHW else tensor.transpose(0, 2, 3, 1)


def make(spec: PreprocessSpec, image: Image) -> Array:
    pre = Preprocessor(spec)
    out = pre.batch_for(pre.new_batch(1), [(image.shape[1], image.shape[0], None)])
    pre.into(image, out[0])
    return out


def _differ(a: Array, b: Array) -> tuple[float, float]:
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return float(d.max()), float(d.mean())


def _show(value: Any) -> Any:
    if hasattr(value, "value"):
        return value.value
    if isinstance(value, tuple):
        return [round(v, 6) for v in value]
    return value


def _causes(spec: PreprocessSpec, fields: dict[str, Any], values: Values, geometry: str, flipped: bool) -> list[str]:
    """The differences a hypothesis stands for, in words."""
    causes = []
    if flipped:
        theirs = "NCHW" if spec.layout is Layout.NHWC else "NHWC"
        causes.append(f"layout: yours is {theirs}, the model takes {spec.layout.value.upper()} (transposed)")
    if "color" in fields:
        theirs = fields["color"].value.upper()
        causes.append(f"channels swapped: yours are {theirs}, streamprep's {spec.color.value.upper()}")
    if any(k in fields for k in ("scaling", "mean", "std")):
        causes.append(f"values: yours are {values.name}, streamprep's are {_describe_values(spec)}")
    if any(k in fields for k in ("resize", "pad_value", "anchor", "crop_fraction")):
        causes.append(f"geometry: yours is {geometry}, streamprep's is {_describe_geometry(spec)}")
    if "interpolation" in fields:
        theirs = fields["interpolation"].value
        causes.append(f"interpolation: yours is {theirs}, streamprep's {spec.interpolation.value}")
    return causes


def _describe_values(spec: PreprocessSpec) -> str:
    if spec.scaling is Scaling.MEAN_STD:
        return f"mean_std (mean {list(spec.mean)}, std {list(spec.std)})"
    return {Scaling.NONE: "raw 0..255", Scaling.UNIT: "/255 to [0, 1]", Scaling.SYMMETRIC: "[-1, 1]"}.get(
        spec.scaling, spec.scaling.value
    )


def _describe_geometry(spec: PreprocessSpec) -> str:
    if spec.resize is Resize.LETTERBOX:
        return f"letterbox, pad {spec.pad_value}, {'centred' if spec.anchor == 'center' else 'top-left'}"
    if spec.resize is Resize.SHORTER_CROP:
        return f"resize shorter side, centre crop {spec.crop_fraction}"
    return {Resize.STRETCH: "stretch", Resize.CENTER_CROP: "centre crop", Resize.RECT: "rect"}[spec.resize]


def hypotheses(spec: PreprocessSpec, image: Image, expected: Array) -> Iterator[Outcome]:
    """Every combination of colour order, values, geometry and interpolation (and layout where the shapes
    allow), compared with the user's tensor."""
    own_shape = make(spec, image).shape
    layouts = []
    if expected.shape == own_shape:
        layouts.append((False, expected))
    other = transposed(expected, spec.layout)
    if other.shape == own_shape and other.shape != expected.shape:
        layouts.append((True, other))
    if not layouts:
        raise ConfigError(
            f"verify: your tensor has shape {list(expected.shape)}, the model's input {spec.input_name!r} takes "
            f"{list(own_shape)} (in either layout): preprocess for the model's input size first"
        )
    swapped = Color.BGR if spec.color is Color.RGB else Color.RGB
    colors = [spec.color] if spec.color is Color.GRAY else [spec.color, swapped]
    dtype = spec.dtype
    if dtype in (DType.UINT8, DType.INT8) and expected.dtype.kind == "f":
        dtype = DType.FLOAT32  # the user's pipeline made floats for an integer model: compare values
    for color, values, (geometry, geo_fields), interpolation in itertools.product(
        colors, VALUES, GEOMETRIES, list(Interpolation)
    ):
        fields = {"color": color, **values.fields(color), **geo_fields, "interpolation": interpolation}
        candidate = make(spec.model_copy(update={**fields, "dtype": dtype}), image)
        changed = {k: v for k, v in fields.items() if getattr(spec, k) != v}
        # a fix states its whole family (scaling with its mean/std, resize with its parameters), so that
        # the lines it prints declare everything they depend on
        for family in (values.fields(color), geo_fields):
            if any(k in changed for k in family):
                changed.update(family)
        for flipped, theirs in layouts:
            if candidate.shape != theirs.shape:
                continue  # a rect input's size follows the geometry
            max_diff, mean_diff = _differ(candidate, theirs)
            what = tuple(_causes(spec, changed, values, geometry, flipped))
            yield Outcome(changed, flipped, max_diff, mean_diff, what)


@dataclass(frozen=True)
class Report:
    spec: PreprocessSpec
    shape: tuple[int, ...]  # of streamprep's tensor
    before: tuple[float, float]
    best: Outcome
    runners_up: tuple[Outcome, ...]
    level: float  # the size of one pixel level in the tensor's units, for judging differences
    matches: bool

    def sidecar(self) -> dict[str, Any]:
        return {"preprocess": {k: _show(v) for k, v in self.best.fields.items()}}

    def toml(self) -> list[str]:
        return ["[model.preprocess]", *(f"{k} = {json.dumps(_show(v))}" for k, v in self.best.fields.items())]


def verify(spec: PreprocessSpec, image: Image, expected: Array, keep: int = 3) -> Report:
    """Compare streamprep's tensor for ``image`` with ``expected``; explain a difference."""
    expected = to_batch(expected)
    own = make(spec, image)
    a, _ = affine_for(spec, None) if spec.scaling not in (Scaling.PER_IMAGE, Scaling.MINMAX) else (np.ones(1), None)
    level = float(np.min(np.abs(a))) or 1.0
    before = _differ(own, expected) if own.shape == expected.shape else (float("inf"), float("inf"))
    matches = before[0] <= level
    outcomes = sorted(hypotheses(spec, image, expected), key=lambda o: (o.mean_diff, o.max_diff, len(o.what)))
    best = outcomes[0]
    return Report(spec, own.shape, before, best, tuple(outcomes[1 : 1 + keep]), level, matches)


def lines(report: Report, model: str, sidecar: Path) -> list[str]:
    """What ``streamprep verify`` prints."""
    spec = report.spec
    out = [f"verify {model}: streamprep's tensor {list(report.shape)} {spec.dtype.value} against yours"]
    mx, mean = report.before
    if report.matches:
        out.append(f"match: max difference {mx:.3g}, mean {mean:.3g} (one pixel level is {report.level:.3g})")
        return out
    before = f"max {mx:.4g}, mean {mean:.4g}" if np.isfinite(mx) else "not comparable (different shape)"
    out.append(f"before: {before} (one pixel level is {report.level:.3g})")
    best = report.best
    if not best.what:
        out.append("no hypothesis explains the difference better than streamprep's own spec")
        return out
    out.append("likely cause" + ("s:" if len(best.what) > 1 else ":"))
    out += [f"  - {w}" for w in best.what]
    fixed = best.max_diff <= report.level
    out.append(
        f"after the fix: max {best.max_diff:.4g}, mean {best.mean_diff:.4g}"
        + (" (a match)" if fixed else " (closer, but not the same: something else differs too)")
    )
    if best.fields:
        out.append(f"fix, in {sidecar.name}: {json.dumps(report.sidecar())}")
        out.append("or in the config:")
        out += [f"  {line}" for line in report.toml()]
    if best.transposed:
        out.append("layout: nothing to change in streamprep; compare with your tensor transposed")
    if report.runners_up:
        out.append("next best:")
        for o in report.runners_up:
            out.append(f"  max {o.max_diff:.4g}, mean {o.mean_diff:.4g}: {'; '.join(o.what) or 'as derived'}")
    return out


def main(args: argparse.Namespace) -> int:
    """Exit 0 when the tensors match, 1 when they differ (the report says why)."""
    data: dict[str, Any] = config_mod.load(args.config) if args.config else {}
    data = config_mod.merge(data, {"model": {"path": args.model}})
    cfg = config_mod.parse(data, f"{args.config}: " if args.config else "").model
    model = load_model(cfg)
    image: Image | None = cv2.imread(str(args.image), cv2.IMREAD_COLOR)  # type: ignore[assignment]
    if image is None:
        reason = "no such file" if not args.image.exists() else "not an image OpenCV can read"
        raise ConfigError(f"verify: image {args.image}: {reason}")
    try:
        expected = np.load(args.expect, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"verify: --expect {args.expect}: not a .npy tensor: {exc}") from None
    report = verify(model.spec, image, np.asarray(expected))
    print("\n".join(lines(report, model.name, cfg.path.with_suffix(".streamprep.json"))))
    return 0 if report.matches else 1
