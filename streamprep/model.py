"""A model ready to serve: its session, the preprocessing derived for it, and its decoder."""

from __future__ import annotations

import ast
import logging
from dataclasses import dataclass
from typing import Any

from streamprep.config import ModelConfig
from streamprep.decoders import Decoder, DecoderOptions, build_decoder, read_labels
from streamprep.errors import ConfigError, ModelError
from streamprep.inference import OnnxEngine
from streamprep.preprocess import ingraph
from streamprep.preprocess.kernels import Preprocessor
from streamprep.preprocess.spec import PreprocessSpec, Provenance, derive, parse_overrides

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    name: str
    engine: OnnxEngine
    spec: PreprocessSpec
    provenance: Provenance
    preprocessor: Preprocessor
    decoder: Decoder
    max_batch: int
    in_graph: bool = False

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
            "preprocess": {k: {"value": v, "from": self.provenance[k]} for k, v in self.spec.to_json().items()},
        }


def _labels(cfg: ModelConfig, engine: OnnxEngine) -> tuple[str, ...]:
    """From the config, else ``<model>.labels.txt`` beside the model, else the model's ``names`` metadata."""
    if cfg.labels is not None:
        return read_labels(cfg.labels)
    beside = cfg.path.with_suffix(".labels.txt")
    if beside.is_file():
        return read_labels(beside)
    return labels_from_metadata(engine.info.metadata)


def labels_from_metadata(metadata: dict[str, str]) -> tuple[str, ...]:
    """Exporters' ``names``: a dict literal ``{0: 'person', ...}`` (Ultralytics) or a JSON list."""
    text = metadata.get("names")
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


def load_model(cfg: ModelConfig) -> LoadedModel:
    """Load and check everything about a model before any frame flows; errors name what is wrong."""
    engine = _engine(cfg)
    info = engine.info
    overrides = cfg.preprocess.values()
    facts = info.input_facts(overrides.get("input_name"))
    sidecar_pre = info.sidecar.get("preprocess", {})
    try:
        sidecar = parse_overrides(sidecar_pre, f"sidecar of {info.name}").values() if sidecar_pre else {}
        spec, provenance = derive(facts, info.metadata, sidecar, overrides)
    except ConfigError as exc:
        raise ConfigError(f"model {cfg.path.name}: {exc}") from None
    in_graph = bool(cfg.preprocess.in_graph)
    preprocessor = Preprocessor(spec)
    if in_graph:
        try:
            wrapped = ingraph.wrap(cfg.path, spec)
        except ConfigError as exc:
            raise ConfigError(f"model {cfg.path.name}: {exc}") from None
        engine = _engine(cfg, wrapped)
        preprocessor = Preprocessor(ingraph.frames_spec(spec))
    else:
        engine.select_input(spec.input_name)
    options = DecoderOptions(
        score_threshold=cfg.score_threshold,
        iou_threshold=cfg.iou_threshold,
        max_detections=cfg.max_detections,
        top_k=cfg.top_k,
        raw_values=cfg.raw_values,
        labels=_labels(cfg, engine),
    )
    decoder = build_decoder(cfg.decoder, info, options, spec)
    max_batch = spec.batch if spec.batch is not None else cfg.batch
    if spec.batch is not None and cfg.batch > spec.batch:
        max_batch = spec.batch
    if max_batch < 1:
        raise ModelError(f"model {info.name}: batch size {max_batch} is invalid")
    log.info(
        "model %s runs on %s%s", info.name, ", ".join(engine.info.providers), " (preprocessing in graph)" * in_graph
    )
    engine.warm_up(preprocessor.new_batch(max_batch if spec.batch is None else spec.batch))
    return LoadedModel(
        name=cfg.name or info.name,
        engine=engine,
        spec=spec,
        provenance=provenance,
        preprocessor=preprocessor,
        decoder=decoder,
        max_batch=max_batch,
        in_graph=in_graph,
    )
