"""A model ready to serve: its session, the preprocessing derived for it, and its decoder."""

from __future__ import annotations

import ast
import difflib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamprep.inference import contract
from streamprep.inference.decoders import Decoder, DecoderOptions, build_decoder, read_labels, resolve
from streamprep.inference.onnx import Engine, LoadableEngine, OnnxEngine
from streamprep.inference.settings import BUNDLED_MODELS, ModelConfig, ThenConfig
from streamprep.inference.tta import VIEW_THRESHOLD, Views, views_for
from streamprep.preprocess.kernels import Preprocessor
from streamprep.preprocess.spec import PreprocessSpec, Provenance, derive, parse_overrides
from streamprep.values.errors import ConfigError, ModelError, StreamprepError

if TYPE_CHECKING:
    from streamprep.inference.remote import KServeEngine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    name: str
    engine: Engine
    spec: PreprocessSpec
    provenance: Provenance
    preprocessor: Preprocessor
    decoder: Decoder
    max_batch: int
    in_graph: bool = False
    labels: tuple[str, ...] = ()
    views: Views = field(default_factory=Views)  # test-time augmentation: slots per frame, and their fusion
    in_flight: int = 1  # batches the engine may have on their way at once (a remote server: several)
    retry_cap_s: float = 10.0  # a remote server away: batches of file frames are retried, backoff up to this
    warnings: tuple[str, ...] = ()  # what is assumed or missing (preprocessing, labels): each one line
    then: tuple[LoadedThen, ...] = ()  # second models, run on crops of this model's detections ([[model.then]])

    def new_batch(self) -> Any:
        """A batch tensor for the pipeline: ``max_batch`` frames, each with its views (a fixed batch: all)."""
        return self.preprocessor.new_batch(self.spec.batch or self.max_batch * self.views.count)

    @property
    def assumed(self) -> tuple[str, ...]:
        """Preprocessing fields that change the numbers and that nobody declared (see :mod:`contract`)."""
        return contract.assumed_fields(self.spec, self.provenance)

    def describe(self) -> dict[str, Any]:
        """What ``streamprep inspect`` prints: inputs, outputs, the spec and where each field came from."""
        info = self.engine.info
        return {
            "model": str(info.path),
            "providers": list(info.providers),
            "inputs": [i.describe() for i in info.inputs],
            "outputs": [o.describe() for o in info.outputs],
            "metadata": info.metadata,
            "decoder": type(self.decoder).__name__.removesuffix("Decoder").lower(),
            "max_batch": self.max_batch,
            "in_graph": self.in_graph,
            "labels": len(self.labels),
            "assumed": list(self.assumed),
            "preprocess": {
                k: {"value": v, "from": self.provenance[k], "assumed": k in self.assumed}
                for k, v in self.spec.to_json().items()
            },
            "then": [t.describe() for t in self.then],
        }


@dataclass(frozen=True)
class BundledModel:
    """A model shipped with streamprep (``streamprep inspect --list``): what ``--model NAME`` takes."""

    name: str
    task: str  # from streamprep/models/README.md
    input: str  # the ONNX file's own input: name, shape, type
    labels: int
    licence: str  # its licence, and the file with the text

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "input": self.input,
            "labels": self.labels,
            "licence": self.licence,
        }


def _catalogue() -> dict[str, tuple[str, str]]:
    """``{file name: (task, licence)}`` from the table in the bundled models' README."""
    out: dict[str, tuple[str, str]] = {}
    try:
        text = (BUNDLED_MODELS / "README.md").read_text(encoding="utf-8")
    except OSError:
        return out
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`") and ".onnx`" in cells[0]:
            file = cells[0].split("`")[1]
            out[file] = (cells[1].split(";")[0].replace("`", "").strip(), cells[2].replace("`", ""))
    return out


def bundled_models() -> list[BundledModel]:
    """The models in :data:`~streamprep.inference.settings.BUNDLED_MODELS`, by name, each with its task, input, labels
    and licence."""
    import onnx  # reads the graph's inputs without making a session

    catalogue = _catalogue()
    out = []
    for path in sorted(BUNDLED_MODELS.glob("*.onnx")):
        task, licence = catalogue.get(path.name, ("", "see streamprep/models/README.md"))
        graph = onnx.load(str(path), load_external_data=False).graph
        weights = {i.name for i in graph.initializer}
        first = next(i for i in graph.input if i.name not in weights)
        tensor = first.type.tensor_type
        shape = ",".join(str(d.dim_value) if d.dim_value else "N" for d in tensor.shape.dim)
        kind = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        beside = path.with_suffix(".labels.txt")
        labels = len(read_labels(beside)) if beside.is_file() else 0
        out.append(BundledModel(path.stem, task, f"{first.name} [{shape}] {kind}", labels, licence))
    return out


def bundled_names() -> list[str]:
    return sorted(p.stem for p in BUNDLED_MODELS.glob("*.onnx"))


def nearest_models(name: str) -> list[str]:
    """Bundled models' names close to ``name``: those it begins (``fastestdet`` → ``fastestdet_352``),
    then the most similar (difflib)."""
    stem = Path(name).name.removesuffix(".onnx").lower()
    names = bundled_names()
    found = [n for n in names if stem and n.lower().startswith(stem)]
    found += [n for n in difflib.get_close_matches(stem, names, n=3, cutoff=0.5) if n not in found]
    return found[:3]


def missing_model(path: Path) -> ModelError:
    """The error for a model file that is not there: with the bundled names nearest to it."""
    near = nearest_models(str(path))
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    return ModelError(
        f"model {path}: no such file, nor a bundled model's name{hint} (`streamprep inspect --list` lists them)"
    )


@dataclass(frozen=True)
class LoadedThen:
    """A second model (``[[model.then]]``) and which of the first model's detections it looks at."""

    model: LoadedModel
    on_labels: frozenset[str] | None  # None: every label
    min_score: float
    margin: float  # context around a box, as a fraction of its width and height
    max_wait: float  # seconds a batch of crops waits to fill

    def describe(self) -> dict[str, Any]:
        """What ``streamprep inspect`` prints about a second model: which crops it gets, and the model itself."""
        on = sorted(self.on_labels) if self.on_labels is not None else None
        choice = {"on_labels": on, "min_score": self.min_score, "margin": self.margin}
        model = self.model.describe()
        spec = self.model.spec
        summary = (
            f"{self.model.name}: {model['decoder']} decoder (max batch {self.model.max_batch}), {spec.width}x"
            f"{spec.height}, on {', '.join(on) if on else 'every label'} scoring {self.min_score:g}+, margin "
            f"{self.margin:g}"
        )
        return {"name": self.model.name, "summary": summary, **choice, **model}

    def wants(self, label: str, score: float) -> bool:
        """Whether a detection with this label and score gets a crop for this model."""
        return score >= self.min_score and (self.on_labels is None or label in self.on_labels)


def _load_then(i: int, cfg: ThenConfig, warn: bool) -> LoadedThen:
    """A second model, loaded as the first one is; an error names the ``then`` entry it comes from."""
    try:
        model = load_model(cfg, warn=warn)
    except StreamprepError as exc:
        exc.args = (f"model.then.{i}: {exc}", *exc.args[1:])
        raise
    return LoadedThen(
        model=model,
        on_labels=frozenset(cfg.on_labels) if cfg.on_labels is not None else None,
        min_score=cfg.min_score,
        margin=cfg.margin,
        max_wait=cfg.max_wait_ms / 1000.0,
    )


def _labels(cfg: ModelConfig, engine: Engine) -> tuple[str, ...]:
    """From the config, else ``<model>.labels.txt`` beside the model, else the model's ``names`` metadata."""
    if cfg.labels is not None:
        return read_labels(cfg.labels)
    files = cfg.local_files
    beside = files.with_suffix(".labels.txt") if files is not None else None
    if beside is not None and beside.is_file():
        return read_labels(beside)
    return labels_from_metadata(engine.info.metadata)


def labels_from_metadata(metadata: dict[str, str]) -> tuple[str, ...]:
    """Exporters' ``names``: a dict literal ``{0: 'person', ...}`` (Ultralytics) or a JSON list; or ``labels``
    (an inference server's model parameter): a JSON list, or one name per line."""
    labels = metadata.get("labels", "").strip()
    if labels and not labels.startswith("["):
        return tuple(line.strip() for line in labels.splitlines() if line.strip())
    text = labels or metadata.get("names")
    if not text:
        return ()
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return ()
    if isinstance(names, dict) and all(isinstance(k, int) for k in names):
        return tuple(str(names.get(i, f"class_{i}")) for i in range(max(names) + 1))
    if isinstance(names, list):
        return tuple(str(n) for n in names)
    return ()


def _engine(cfg: ModelConfig, model_bytes: bytes | None = None) -> OnnxEngine:
    return OnnxEngine(
        cfg.path,
        providers=cfg.providers,
        intra_op_threads=cfg.threads,
        model_bytes=model_bytes,
        inter_op_threads=cfg.inter_op_threads,
        optimization=cfg.optimization,
        spinning=cfg.spinning,
        nice=cfg.nice,
    )


def load_model(cfg: ModelConfig, *, warn: bool = True) -> LoadedModel:
    """Load and check everything about a model before any frame flows; errors name what is wrong. A model
    with ``backend = "kserve"`` is described by its server instead (:mod:`streamprep.inference.remote`).

    What is assumed or missing (preprocessing nobody declared, labels) is in ``warnings``, and logged here
    unless ``warn`` is false (:func:`streamprep.config.validate.preflight` reports them itself: once)."""
    remote: KServeEngine | None = None
    engine: LoadableEngine
    if cfg.backend == "kserve":
        from streamprep.inference.remote import connect  # imports tritonclient: only for this backend

        engine = remote = connect(cfg)
        where = remote.location
    else:
        if not cfg.path.exists():
            raise missing_model(cfg.path)
        engine = _engine(cfg)
        where = str(cfg.path)
    info = engine.info
    if len(info.inputs) > 1:
        names = ", ".join(i.name for i in info.inputs)
        raise ModelError(
            f"model {where}: it has {len(info.inputs)} inputs ({names}); streamprep feeds a model one image "
            "tensor, so the others would be missing"
        )
    overrides = cfg.preprocess.values()
    facts = info.input_facts(overrides.get("input_name"))
    sidecar_pre = info.sidecar.get("preprocess", {})
    try:
        sidecar = parse_overrides(sidecar_pre, f"sidecar of {info.name}").values() if sidecar_pre else {}
        spec, provenance = derive(facts, info.metadata, sidecar, overrides)
    except ConfigError as exc:
        raise ConfigError(f"model {cfg.path.name if remote is None else where}: {exc}") from None
    in_graph = bool(cfg.preprocess.in_graph)
    preprocessor = Preprocessor(spec)
    if in_graph:
        from streamprep.preprocess import ingraph  # imports onnx: only for this option

        try:
            wrapped = ingraph.wrap(cfg.path, spec)
        except ConfigError as exc:
            raise ConfigError(f"model {cfg.path.name}: {exc}") from None
        engine = _engine(cfg, wrapped)
        preprocessor = Preprocessor(ingraph.frames_spec(spec))
    else:
        engine.select_input(spec.input_name)
    labels = _labels(cfg, engine)
    if not labels and resolve(cfg.decoder, info, DecoderOptions()) == "yunet":
        labels = ("face",)  # a face detector's one class
    options = DecoderOptions(
        score_threshold=cfg.score_threshold,
        iou_threshold=cfg.iou_threshold,
        max_detections=cfg.max_detections,
        top_k=cfg.top_k,
        raw_values=cfg.raw_values,
        labels=labels,
    )
    decoder = build_decoder(cfg.decoder, info, options, spec)
    name = cfg.name or info.name
    assumed = contract.assumed_fields(spec, provenance)
    warnings: list[str] = []
    if assumed:
        warnings.append(contract.assumption_warning(name, cfg.local_files or info.path, spec, assumed))
    if not labels and decoder.kind in ("detection", "classification"):
        if remote is not None and cfg.local_files is None:
            warnings.append(contract.remote_labels_warning(name, remote.location))
        else:
            warnings.append(contract.labels_warning(name, cfg.local_files or info.path))
    for line in warnings if warn else ():
        log.warning("%s", line)
    low = None
    if cfg.tta and decoder.kind == "detection":
        lenient = replace(options, score_threshold=min(VIEW_THRESHOLD, cfg.score_threshold))
        low = build_decoder(cfg.decoder, info, lenient, spec)
    views = views_for(cfg.tta, cfg.tta_fusion, decoder, options, low)
    max_batch = spec.batch // views.count if spec.batch is not None else cfg.batch
    if spec.batch is not None and max_batch < 1:
        raise ConfigError(
            f"model.tta: {views.count} views per frame need a batch of {views.count}; model {info.name} has a "
            f"fixed batch of {spec.batch}"
        )
    if remote is not None and spec.batch is None:
        max_batch = _server_batch(cfg, remote.max_batch_size, views.count, max_batch)
    if max_batch < 1:
        raise ModelError(f"model {info.name}: batch size {max_batch} is invalid")
    log.info(
        "model %s runs on %s%s", info.name, ", ".join(engine.info.providers), " (preprocessing in graph)" * in_graph
    )
    engine.warm_up(preprocessor.new_batch(spec.batch or max_batch * views.count))
    if cfg.then and decoder.kind != "detection":
        raise ConfigError(
            f"model.then: model {name} gives no boxes to crop ({decoder.kind} decoder); second models need a detector"
        )
    then = tuple(_load_then(i, t, warn) for i, t in enumerate(cfg.then))
    return LoadedModel(
        name=name,
        engine=engine,
        spec=spec,
        provenance=provenance,
        preprocessor=preprocessor,
        decoder=decoder,
        max_batch=max_batch,
        in_graph=in_graph,
        labels=labels,
        views=views,
        in_flight=remote.max_in_flight if remote is not None else 1,
        retry_cap_s=remote.cfg.backoff_cap_s if remote is not None else 10.0,
        warnings=tuple(warnings),
        then=then,
    )


def _server_batch(cfg: ModelConfig, server_max: int | None, views: int, configured: int) -> int:
    """A remote model's batch: ``model.batch`` when set, else the server's ``max_batch_size``; never more
    than the server takes (each frame's views count against it)."""
    if server_max is None:
        return configured
    fits = server_max // views
    if fits < 1:
        raise ConfigError(
            f"model.tta: {views} views per frame need a batch of {views}; the server takes at most {server_max}"
        )
    if "batch" not in cfg.model_fields_set:
        return fits
    if configured > fits:
        log.warning(
            "model.batch = %d is more than the server takes (max_batch_size %d%s): batches of at most %d",
            configured,
            server_max,
            f", {views} views per frame" if views > 1 else "",
            fits,
        )
        return fits
    return configured
