"""The declarative preprocessing spec, and its derivation from a model.

A spec says everything that turns a decoded frame into the tensor a model expects. It is derived in
layers, each of which may set any field, later layers winning:

1. ``default``   – what most models of the input's dtype expect: *assumed*, not declared (see
   :mod:`streamprep.inference.contract`);
2. ``model input`` – what the ONNX input itself says (name, size, batch, layout, dtype, channels);
3. ``metadata``  – a ``streamprep.preprocess`` JSON entry in the model's metadata props, or common
   exporters' keys (Ultralytics' ``imgsz``/``names``);
4. ``sidecar``   – ``<model>.streamprep.json`` beside the model file (``{"preprocess": {...}}``);
5. ``config``    – the user's overrides.

Values: pixels are scaled by ``scaling`` first; ``mean``/``std`` apply to ``mean_std`` only, in units of
the [0, 1] range (the torchvision convention): ``y = (x / 255 - mean) / std``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from streamprep.values.errors import ConfigError


class Resize(enum.StrEnum):
    STRETCH = "stretch"  # resize to the input size, ignoring aspect ratio
    LETTERBOX = "letterbox"  # keep aspect, pad the rest with pad_value
    CENTER_CROP = "center_crop"  # crop the largest centred region of the input's aspect, then resize
    SHORTER_CROP = "shorter_crop"  # torchvision: Resize(size / crop_fraction), then CenterCrop(size)
    RECT = "rect"  # dynamic-size models: keep aspect, longer side to size, pad to a multiple of stride


class Interpolation(enum.StrEnum):
    NEAREST = "nearest"
    LINEAR = "linear"
    AREA = "area"
    CUBIC = "cubic"


class Color(enum.StrEnum):
    RGB = "rgb"
    BGR = "bgr"
    GRAY = "gray"


class Scaling(enum.StrEnum):
    NONE = "none"  # raw 0..255
    UNIT = "unit"  # [0, 1]
    SYMMETRIC = "symmetric"  # [-1, 1]
    MEAN_STD = "mean_std"  # (x / 255 - mean) / std, per channel
    PER_IMAGE = "per_image"  # tf.image.per_image_standardization
    MINMAX = "minmax"  # (x - min) / (max - min) per image


class Layout(enum.StrEnum):
    NCHW = "nchw"
    NHWC = "nhwc"


class DType(enum.StrEnum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    UINT8 = "uint8"
    INT8 = "int8"


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PreprocessSpec(BaseModel):
    """Everything between a decoded frame and the model's input tensor."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    input_name: str = ""
    width: int = Field(0, ge=0)
    height: int = Field(0, ge=0)
    batch: int | None = Field(None, ge=1, description="fixed batch size, or None when the model's is dynamic")
    resize: Resize = Resize.STRETCH
    interpolation: Interpolation = Interpolation.LINEAR
    pad_value: int = Field(114, ge=0, le=255)
    anchor: Literal["center", "top_left"] = "center"
    crop_fraction: float = Field(0.875, gt=0, le=1)
    stride: int = Field(32, ge=1, le=1024, description="rect: the input's sides are multiples of this")
    color: Color = Color.RGB
    scaling: Scaling = Scaling.UNIT
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    layout: Layout = Layout.NCHW
    dtype: DType = DType.FLOAT32
    quant_scale: float | None = Field(None, gt=0)
    quant_zero_point: int | None = None
    color_conversion: Literal["exact", "fast"] = Field(
        "exact",
        description="video frames in YUV: exact = FFmpeg's own conversion at full size, then resize; "
        "fast = resize the Y, U and V planes to model size, then convert there (see the README for the difference)",
    )

    @field_validator("std")
    @classmethod
    def _std_nonzero(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s == 0 for s in v):
            raise ValueError("std must not contain zero")
        return v

    @property
    def channels(self) -> int:
        return 1 if self.color is Color.GRAY else 3

    def tensor_shape(self, batch: int) -> tuple[int, int, int, int]:
        if self.layout is Layout.NCHW:
            return (batch, self.channels, self.height, self.width)
        return (batch, self.height, self.width, self.channels)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


SPEC_FIELDS = tuple(PreprocessSpec.model_fields)
Provenance = dict[str, str]


class SpecOverrides(BaseModel):
    """A partial spec: whatever the user sets in config (``[model.preprocess]``) or a sidecar says."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_name: str | None = None
    width: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)
    batch: int | None = Field(None, ge=1)
    resize: Resize | None = None
    interpolation: Interpolation | None = None
    pad_value: int | None = Field(None, ge=0, le=255)
    anchor: Literal["center", "top_left"] | None = None
    crop_fraction: float | None = Field(None, gt=0, le=1)
    stride: int | None = Field(None, ge=1, le=1024)
    color: Color | None = None
    scaling: Scaling | None = None
    mean: tuple[float, float, float] | Literal["imagenet"] | None = None
    std: tuple[float, float, float] | Literal["imagenet"] | None = None
    layout: Layout | None = None
    dtype: DType | None = None
    quant_scale: float | None = Field(None, gt=0)
    quant_zero_point: int | None = None
    color_conversion: Literal["exact", "fast"] | None = None
    in_graph: bool | None = None

    def values(self) -> dict[str, Any]:
        out = {k: v for k, v in self.model_dump(exclude_none=True).items() if k != "in_graph"}
        if out.get("mean") == "imagenet":
            out["mean"] = IMAGENET_MEAN
        if out.get("std") == "imagenet":
            out["std"] = IMAGENET_STD
        return out


def parse_overrides(data: dict[str, Any], where: str) -> SpecOverrides:
    """Validate a partial spec; errors name ``where`` and the key."""
    try:
        return SpecOverrides.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{where}.{key}: {err['msg']}") from None


@dataclasses.dataclass(frozen=True)
class InputFacts:
    """What an ONNX input says about itself."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str  # numpy name: float32, float16, uint8, int8, ...

    def static(self, axis: int) -> int | None:
        dim = self.shape[axis]
        return dim if isinstance(dim, int) and dim > 0 else None


_ONNX_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(double)": "float64",
}


def onnx_dtype(type_str: str) -> str:
    return _ONNX_DTYPES.get(type_str, type_str)


def facts_from_input(facts: InputFacts) -> tuple[dict[str, Any], list[str]]:
    """Fields the ONNX input determines, and the problems that keep it from being an image input."""
    found: dict[str, Any] = {"input_name": facts.name}
    problems: list[str] = []
    if len(facts.shape) != 4:
        problems.append(f"input {facts.name!r} has rank {len(facts.shape)}, an image input has rank 4")
        return found, problems
    c1, c3 = facts.static(1), facts.static(3)
    if c1 in (1, 3) and c3 not in (1, 3):
        found["layout"], h_axis, channels = Layout.NCHW, 2, c1
    elif c3 in (1, 3):
        found["layout"], h_axis, channels = Layout.NHWC, 1, c3
    else:
        problems.append(f"input {facts.name!r} of shape {list(facts.shape)} has no axis of 1 or 3 channels")
        return found, problems
    if channels == 1:
        found["color"] = Color.GRAY
    if (h := facts.static(h_axis)) is not None:
        found["height"] = h
    if (w := facts.static(h_axis + 1)) is not None:
        found["width"] = w
    found["batch"] = facts.static(0)
    try:
        found["dtype"] = DType(facts.dtype)
    except ValueError:
        problems.append(f"input {facts.name!r} has dtype {facts.dtype}; supported: float32, float16, uint8, int8")
    return found, problems


def facts_from_metadata(props: dict[str, str]) -> dict[str, Any]:
    """Fields stated by model metadata: ``streamprep.preprocess`` JSON, or Ultralytics' keys."""
    if "streamprep.preprocess" in props:
        try:
            data = json.loads(props["streamprep.preprocess"])
        except json.JSONDecodeError as exc:
            raise ConfigError(f"model metadata streamprep.preprocess is not JSON: {exc}") from None
        return parse_overrides(data, "model metadata streamprep.preprocess").values()
    if "imgsz" in props and "stride" in props:
        try:
            size = json.loads(props["imgsz"])
        except json.JSONDecodeError:
            return {}
        found: dict[str, Any] = {
            "resize": Resize.LETTERBOX,
            "color": Color.RGB,
            "scaling": Scaling.UNIT,
            "pad_value": 114,
        }
        if isinstance(size, list) and len(size) == 2:
            found["height"], found["width"] = int(size[0]), int(size[1])
        with contextlib.suppress(ValueError):
            found["stride"] = int(float(props["stride"]))
        return found
    return {}


def derive(
    facts: InputFacts,
    metadata: dict[str, str],
    sidecar: dict[str, Any],
    overrides: dict[str, Any],
) -> tuple[PreprocessSpec, Provenance]:
    """Layer defaults, the model input, metadata, sidecar and config into one checked spec.

    Raises ConfigError when the result contradicts the model (size, channels, layout, dtype, batch).
    """
    from_input, problems = facts_from_input(facts)
    if problems:
        raise ConfigError("; ".join(problems))
    dtype = from_input.get("dtype", DType.FLOAT32)
    defaults: dict[str, Any] = {
        "scaling": Scaling.NONE if dtype is DType.INT8 else Scaling.UNIT,
        "color": Color.RGB,
    }
    if dtype is DType.UINT8:
        from_input["scaling"] = Scaling.NONE  # a uint8 input holds raw pixels unless quantisation says otherwise
    layers = [
        ("default", defaults),
        ("model input", from_input),
        ("metadata", facts_from_metadata(metadata)),
        ("sidecar", sidecar),
        ("config", overrides),
    ]
    dynamic = "width" not in from_input and "height" not in from_input
    if dynamic and layers[2][1].get("resize") is Resize.LETTERBOX and "imgsz" in metadata:
        # an Ultralytics export with dynamic sizes: its own predictor pads to the stride, not to imgsz
        layers[2][1]["resize"] = Resize.RECT
    values: dict[str, Any] = {}
    provenance: Provenance = {name: "default" for name in SPEC_FIELDS}
    for origin, layer in layers:
        for key, value in layer.items():
            values[key] = value
            provenance[key] = origin
    for key in ("width", "height"):
        if not values.get(key):
            raise ConfigError(
                f"model input {facts.name!r} has a dynamic {key}: set model.preprocess.width and height (the "
                'input size, or with resize = "rect" the longest side) in the config or the sidecar, or '
                "give the model a size in its metadata (streamprep.preprocess, or Ultralytics' imgsz)"
            )
    if values.get("resize") is Resize.RECT and not dynamic:
        raise ConfigError(
            f"resize = rect makes the input's size follow each frame's aspect, but model input {facts.name!r} "
            f"has a fixed size {from_input.get('width')}x{from_input.get('height')}: use letterbox"
        )
    spec = PreprocessSpec.model_validate(values)
    check_against_model(spec, from_input, overrides)
    return spec, provenance


def check_against_model(spec: PreprocessSpec, from_input: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Refuse a spec whose fixed facts differ from what the model input says."""
    for key in ("width", "height", "layout", "dtype", "batch", "input_name"):
        model_value = from_input.get(key)
        if model_value is None or getattr(spec, key) == model_value:
            continue
        origin = "model.preprocess" if key in overrides else "the model's metadata"
        raise ConfigError(
            f"{origin}.{key} = {_show(getattr(spec, key))} contradicts the model, whose input "
            f"{from_input['input_name']!r} has {key} {_show(model_value)}"
        )
    model_gray = from_input.get("color") is Color.GRAY
    if model_gray != (spec.color is Color.GRAY):
        raise ConfigError(
            f"model.preprocess.color = {spec.color.value} contradicts the model, whose input has "
            f"{1 if model_gray else 3} channel(s)"
        )
    if spec.dtype in (DType.UINT8, DType.INT8) and spec.scaling not in (Scaling.NONE,) and spec.quant_scale is None:
        raise ConfigError(
            f"model.preprocess.scaling = {spec.scaling.value} needs quant_scale for a {spec.dtype.value} input"
        )


def _show(value: Any) -> str:
    return str(value.value) if isinstance(value, enum.Enum) else str(value)
