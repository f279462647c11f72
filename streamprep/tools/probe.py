"""``streamprep probe MODEL``: find a model's preprocessing contract from its answers on photos of known content.

A model that does not declare its colour order, scaling and resize mode still answers: run on a photo of a
cat with the right contract it finds the cat, with the wrong one it finds less or something else. The probe
runs the model under every candidate contract (colour RGB/BGR × scaling none, [0,1], [-1,1], ImageNet
mean/std × stretch/letterbox where the input is square; integer inputs take raw pixels only) on the probe
photos shipped with streamprep (``streamprep/probe_photos``: a person, a cat, a cup, a rocket, with what each
shows in ``manifest.json``), and scores each candidate with a signal that fits the decoder:

- detectors: per expected object, the best score among detections of its class whose box overlaps the
  expected box (IoU ≥ 0.3), averaged over the objects of the photos (face detectors: over the faces);
- classifiers: the probability given to the expected ImageNet classes, averaged over the photos.

Colour order and scaling are decided by the margin between the best candidate and the best one with
another colour or scaling: below :data:`MARGIN` the probe says it cannot tell and writes nothing. Resize
modes change a robust model's answers little (its confidence often rises with natural aspect ratios whatever
it was trained with), so a resize mode is chosen only by the same margin; otherwise ``stretch`` is kept, the
plain resize of models that carry no letterbox metadata, and the report says it could not tell.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from streamprep.config.schema import ModelConfig
from streamprep.inference.decoders import Decoded, DecoderOptions, build_decoder, resolve
from streamprep.inference.model import LoadedModel, load_model
from streamprep.inference.onnx import ModelInfo
from streamprep.preprocess.kernels import Preprocessor
from streamprep.preprocess.spec import IMAGENET_MEAN, IMAGENET_STD, Color, DType, PreprocessSpec, Resize, Scaling
from streamprep.values.errors import ConfigError, ModelError, SinkError
from streamprep.values.frames import Detection, Image

PHOTOS = Path(__file__).resolve().parent.parent / "probe_photos"
MARGIN = 0.05  # mean-score difference below which two candidates are too close to call
MIN_SCORE = 0.25  # a best candidate scoring less has not made the model find the photos' content
IOU = 0.3  # a detection counts for an expected object when its box overlaps the expected box this much
THRESHOLD = 0.05  # detections kept while probing: low, so that a weaker candidate still scores something

Box4 = tuple[float, float, float, float]


@dataclass(frozen=True)
class Expected:
    """An object a probe photo shows: its COCO class (name, index of 80, id of 91) and box (fractions)."""

    label: str
    coco80: int
    coco91: int
    box: Box4


@dataclass(frozen=True)
class ProbePhoto:
    name: str
    image: Image = field(repr=False)
    objects: tuple[Expected, ...] = ()
    imagenet: tuple[int, ...] = ()
    faces: tuple[Box4, ...] = ()


def load_photos(directory: Path = PHOTOS) -> tuple[ProbePhoto, ...]:
    """The photos listed in ``directory/manifest.json``, read as BGR."""
    manifest = directory / "manifest.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        entries = data["photos"]
    except FileNotFoundError:
        raise ConfigError(f"probe --images {directory}: no manifest.json (see streamprep/probe_photos)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"probe: {manifest}: not a probe manifest: {exc}") from None
    photos = []
    for entry in entries:
        path = directory / str(entry.get("file", ""))
        image: Image | None = cv2.imread(str(path), cv2.IMREAD_COLOR)  # type: ignore[assignment]
        if image is None:
            raise ConfigError(f"probe: {path}: no such image or not one OpenCV can read")
        try:
            objects = tuple(
                Expected(str(o["label"]), int(o["coco80"]), int(o["coco91"]), tuple(map(float, o["box"])))  # type: ignore[arg-type]
                for o in entry.get("objects", [])
            )
            imagenet = tuple(int(i) for i in entry.get("imagenet", []))
            faces = tuple(tuple(map(float, f)) for f in entry.get("faces", []))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"probe: {manifest}: entry {path.name}: {exc!r}") from None
        photos.append(ProbePhoto(path.stem, image, objects, imagenet, faces))  # type: ignore[arg-type]
    if not photos:
        raise ConfigError(f"probe: {manifest} lists no photos")
    return tuple(photos)


@dataclass(frozen=True)
class Candidate:
    color: Color
    scaling: Scaling
    resize: Resize

    @property
    def values(self) -> dict[str, Any]:
        """The spec fields this candidate sets (ImageNet mean/std with ``mean_std``)."""
        out: dict[str, Any] = {"color": self.color, "scaling": self.scaling, "resize": self.resize}
        if self.scaling is Scaling.MEAN_STD:
            out.update(mean=IMAGENET_MEAN, std=IMAGENET_STD)
        return out

    def declaration(self) -> dict[str, Any]:
        """The sidecar's ``preprocess`` entries for this candidate."""
        out: dict[str, Any] = {"color": self.color.value, "scaling": self.scaling.value, "resize": self.resize.value}
        if self.scaling is Scaling.MEAN_STD:
            out.update(mean="imagenet", std="imagenet")
        return out

    @property
    def numbers(self) -> tuple[Color, Scaling]:
        """What the model's answers decide with confidence: colour order and scaling."""
        return self.color, self.scaling


def candidates(spec: PreprocessSpec) -> list[Candidate]:
    """Every contract worth trying for the model's input."""
    colors = [spec.color] if spec.color is Color.GRAY else [Color.RGB, Color.BGR]
    integer = spec.dtype in (DType.UINT8, DType.INT8)
    scalings = [Scaling.NONE] if integer else [Scaling.NONE, Scaling.UNIT, Scaling.SYMMETRIC, Scaling.MEAN_STD]
    resizes = [Resize.STRETCH, Resize.LETTERBOX] if spec.width == spec.height else [Resize.STRETCH]
    return [Candidate(c, s, r) for c in colors for s in scalings for r in resizes]


Signal = Callable[[Decoded, ProbePhoto], "float | None"]


def _iou(a: Box4, b: Box4) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _classes(info: ModelInfo, decoder: str) -> int | None:
    """How many classes a detector's outputs have (without an SSD's background column)."""
    shapes = [o.shape for o in info.outputs]
    dims: list[int] = []
    if decoder == "ssd":
        dims = [s[-1] - 1 for s in shapes if len(s) == 3 and isinstance(s[-1], int) and s[-1] > 4]
    elif decoder == "grid" and isinstance(shapes[0][1], int):
        dims = [shapes[0][1] - 5]
    elif decoder == "yolov5" and isinstance(shapes[0][-1], int):
        dims = [shapes[0][-1] - 5]
    elif decoder == "yolov8" and isinstance(shapes[0][1], int):
        dims = [shapes[0][1] - 4]
    return dims[0] if dims else None


def detection_signal(model: LoadedModel, decoder: str) -> tuple[Signal, str]:
    """Score of the expected class at the expected place, and how classes are matched."""
    if decoder == "yunet":
        return face_signal()
    classes = _classes(model.engine.info, decoder)
    match: Callable[[Detection, Expected], bool]
    if model.labels:
        how = f"by label name ({len(model.labels)} labels)"

        def match(d: Detection, e: Expected) -> bool:
            return d.label.replace(" ", "").lower() == e.label.replace(" ", "").lower()

    elif classes == 80:
        offset = 1 if decoder == "ssd" else 0
        how = "by COCO index: no labels, 80 classes read as COCO's 80 in order"

        def match(d: Detection, e: Expected) -> bool:
            return d.class_id == e.coco80 + offset

    elif classes in (90, 91):
        how = f"by COCO id: no labels, {classes} classes read as COCO's original ids"

        def match(d: Detection, e: Expected) -> bool:
            return d.class_id == e.coco91

    else:
        how = f"by place only: no labels and {classes or 'an unknown number of'} classes, so any class counts"

        def match(d: Detection, e: Expected) -> bool:
            return True

    def signal(decoded: Decoded, photo: ProbePhoto) -> float | None:
        if not photo.objects or decoded.detections is None:
            return None
        h, w = photo.image.shape[:2]
        scores = []
        for e in photo.objects:
            best = 0.0
            for d in decoded.detections:
                box = (d.box.x1 / w, d.box.y1 / h, d.box.x2 / w, d.box.y2 / h)
                if match(d, e) and _iou(box, e.box) >= IOU:
                    best = max(best, d.score)
            scores.append(best)
        return float(np.mean(scores))

    return signal, how


def face_signal() -> tuple[Signal, str]:
    """A face detector: the best score of a box on each expected face."""

    def signal(decoded: Decoded, photo: ProbePhoto) -> float | None:
        if not photo.faces or decoded.detections is None:
            return None
        h, w = photo.image.shape[:2]
        boxes = [(d.score, (d.box.x1 / w, d.box.y1 / h, d.box.x2 / w, d.box.y2 / h)) for d in decoded.detections]
        return float(np.mean([max((s for s, b in boxes if _iou(b, face) >= IOU), default=0.0) for face in photo.faces]))

    return signal, "as faces (one class)"


def classification_signal(model: LoadedModel) -> tuple[Signal, str]:
    """Probability of the expected ImageNet classes."""
    classes = model.engine.info.outputs[0].shape[1]
    if classes not in (1000, 1001):
        raise ModelError(
            f"probe: model {model.name} classifies into {classes} classes; the probe photos are labelled with "
            "ImageNet's 1000 (or 1001 with background), so it cannot score this classifier"
        )
    offset = 1 if classes == 1001 else 0

    def signal(decoded: Decoded, photo: ProbePhoto) -> float | None:
        if not photo.imagenet or decoded.classifications is None:
            return None
        wanted = {i + offset for i in photo.imagenet}
        return float(sum(c.score for c in decoded.classifications if c.class_id in wanted))

    return signal, f"by ImageNet index ({classes} classes)"


@dataclass(frozen=True)
class Ranked:
    candidate: Candidate
    score: float
    per_photo: tuple[float | None, ...]


@dataclass(frozen=True)
class Verdict:
    """The ranked candidates and what the probe concludes from them."""

    model: str
    decoder: str
    matching: str
    photos: tuple[str, ...]
    ranked: tuple[Ranked, ...]
    rival: Ranked | None  # the best candidate with another colour order or scaling
    decided: bool
    reason: str
    chosen: Candidate
    resize_note: str
    notes: tuple[str, ...] = ()  # what is clear when the whole contract is not

    @property
    def margin(self) -> float:
        return self.ranked[0].score - self.rival.score if self.rival is not None else float("inf")

    def sidecar(self) -> dict[str, Any]:
        return {"preprocess": self.chosen.declaration(), "decoder": {"type": self.decoder}}


def evaluate(model: LoadedModel, decoder_name: str, photos: Sequence[ProbePhoto], signal: Signal) -> list[Ranked]:
    """Run the model under every candidate contract; ranked best first."""
    options = DecoderOptions(
        score_threshold=THRESHOLD,
        iou_threshold=0.45,
        max_detections=100,
        top_k=10_000,
        labels=model.labels,
    )
    decoder = build_decoder(decoder_name, model.engine.info, options, model.spec)
    ranked = []
    for cand in candidates(model.spec):
        spec = model.spec.model_copy(update=cand.values)
        pre = Preprocessor(spec)
        size = spec.batch or len(photos)
        tensor = pre.new_batch(size)
        per_photo: list[float | None] = []
        for start in range(0, len(photos), size):
            chunk = photos[start : start + size]
            geometries = [pre.into(p.image, tensor[i]) for i, p in enumerate(chunk)]
            outputs = model.engine.run(tensor if spec.batch else tensor[: len(chunk)])
            for i, (photo, geo) in enumerate(zip(chunk, geometries, strict=True)):
                per_photo.append(signal(decoder.decode(outputs, i, geo), photo))
        used = [s for s in per_photo if s is not None]
        ranked.append(Ranked(cand, float(np.mean(used)) if used else 0.0, tuple(per_photo)))
    return sorted(ranked, key=lambda r: -r.score)


def decide(model: str, decoder: str, matching: str, photos: tuple[str, ...], ranked: Sequence[Ranked]) -> Verdict:
    """Colour and scaling by the margin over the best rival; resize by the margin, else stretch."""
    best = ranked[0]
    rival = next((r for r in ranked if r.candidate.numbers != best.candidate.numbers), None)
    margin = best.score - rival.score if rival is not None else float("inf")
    decided, reason = True, ""
    if best.score < MIN_SCORE:
        decided = False
        reason = (
            f"the best candidate scores {best.score:.3f} (< {MIN_SCORE}): under no candidate does the model find "
            "what the probe photos show (a different decoder, labels or kind of content?)"
        )
    elif margin < MARGIN:
        assert rival is not None
        decided = False
        reason = (
            f"too close to call: {_short(best.candidate)} {best.score:.3f} and {_short(rival.candidate)} "
            f"{rival.score:.3f} differ by {margin:.3f} (< {MARGIN})"
        )
    same = {r.candidate.resize: r.score for r in ranked if r.candidate.numbers == best.candidate.numbers}
    chosen_resize, note = best.candidate.resize, ""
    if len(same) > 1:
        stretch, letterbox = same[Resize.STRETCH], same[Resize.LETTERBOX]
        if abs(stretch - letterbox) < MARGIN:
            chosen_resize = Resize.STRETCH
            note = (
                f"stretch {stretch:.3f} and letterbox {letterbox:.3f} are within {MARGIN}: the answers cannot tell "
                "them apart, so stretch (the plain resize of models without letterbox metadata) is kept; "
                "check the resize your training used"
            )
        else:
            chosen_resize = Resize.STRETCH if stretch > letterbox else Resize.LETTERBOX
            note = (
                f"{chosen_resize.value} by {abs(stretch - letterbox):.3f} "
                f"(stretch {stretch:.3f}, letterbox {letterbox:.3f})"
            )
    chosen = Candidate(best.candidate.color, best.candidate.scaling, chosen_resize)
    notes: list[str] = []
    if not decided and best.score >= MIN_SCORE:
        for field_name, value in (("scaling", best.candidate.scaling), ("color", best.candidate.color)):
            other = next((r for r in ranked if getattr(r.candidate, field_name) != value), None)
            if other is None:
                continue
            gap = best.score - other.score
            verdict = "clear" if gap >= MARGIN else "the model's answers hardly depend on it"
            theirs = getattr(other.candidate, field_name).value
            notes.append(
                f"{field_name}: {value.value} {best.score:.3f}, best other {theirs} {other.score:.3f} "
                f"(margin {gap:.3f}): {verdict}"
            )
    return Verdict(model, decoder, matching, photos, tuple(ranked), rival, decided, reason, chosen, note, tuple(notes))


def _short(c: Candidate) -> str:
    return f"{c.color.value}/{c.scaling.value}/{c.resize.value}"


def probe(path: Path, images: Path | None = None) -> Verdict:
    """Probe the model at ``path`` on the bundled photos (or those in ``images``)."""
    photos = load_photos(images or PHOTOS)
    model = load_model(ModelConfig(path=path))
    info = model.engine.info
    decoder = resolve("auto", info, DecoderOptions(labels=model.labels))
    kind = model.decoder.kind
    if kind == "detection":
        signal, matching = detection_signal(model, decoder)
    elif kind == "classification":
        signal, matching = classification_signal(model)
    else:
        raise ModelError(
            f"probe: model {model.name}'s outputs are read by the {decoder} decoder; the probe scores detectors "
            "and classifiers (set decoder in the sidecar if the outputs were not recognised)"
        )
    if not any(signal(_empty(kind), p) is not None for p in photos):
        raise ConfigError(f"probe: none of the probe photos says what a {kind} model should find in it")
    ranked = evaluate(model, decoder, photos, signal)
    return decide(model.name, decoder, matching, tuple(p.name for p in photos), ranked)


def _empty(kind: str) -> Decoded:
    return Decoded(detections=()) if kind == "detection" else Decoded(classifications=())


def report(verdict: Verdict, top: int = 10) -> list[str]:
    """The ranked table and the conclusion, as printed."""
    lines = [
        f"probe {verdict.model}: {verdict.decoder} decoder; classes matched {verdict.matching}",
        "",
        f"{'rank':<5}{'color':<7}{'scaling':<11}{'resize':<11}{'score':>7}  "
        + "  ".join(f"{n[:9]:>9}" for n in verdict.photos),
    ]
    for i, r in enumerate(verdict.ranked[:top], 1):
        cells = "  ".join(f"{'-' if s is None else f'{s:.3f}':>9}" for s in r.per_photo)
        c = r.candidate
        lines.append(f"{i:<5}{c.color.value:<7}{c.scaling.value:<11}{c.resize.value:<11}{r.score:>7.3f}  {cells}")
    if len(verdict.ranked) > top:
        lines.append(f"... {len(verdict.ranked) - top} more")
    lines.append("")
    if verdict.rival is not None:
        lines.append(
            f"margin: {verdict.margin:.3f} over {_short(verdict.rival.candidate)}, the best with another colour "
            f"order or scaling (needed: {MARGIN})"
        )
    if verdict.decided:
        c = verdict.chosen
        lines.append(f"contract: color {c.color.value}, scaling {c.scaling.value}, resize {c.resize.value}")
        if verdict.resize_note:
            lines.append(f"resize: {verdict.resize_note}")
        lines.append(f"sidecar: {json.dumps(verdict.sidecar())}")
    else:
        lines.append(f"undecided: {verdict.reason}")
        lines += [f"  {n}" for n in verdict.notes]
    return lines


def write_sidecar(model: Path, verdict: Verdict) -> Path:
    """Write (or update) ``<model>.streamprep.json`` with the verdict's contract; other keys are kept."""
    path = model.with_suffix(".streamprep.json")
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SinkError(f"probe: {path}: cannot update it: {exc}") from None
        data = loaded if isinstance(loaded, dict) else {}
    new = verdict.sidecar()
    data["preprocess"] = {**data.get("preprocess", {}), **new["preprocess"]}
    data.setdefault("decoder", new["decoder"])
    try:
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise SinkError(f"probe: cannot write {path}: {exc.strerror or exc}") from None
    return path


def main(args: argparse.Namespace) -> int:
    verdict = probe(args.model, args.images)
    print("\n".join(report(verdict)))
    if not args.write:
        return 0
    if not verdict.decided:
        raise ModelError(f"probe: nothing written to {args.model.with_suffix('.streamprep.json')}: {verdict.reason}")
    print(f"wrote {write_sidecar(args.model, verdict)}")
    return 0
