"""Everything checked before a run starts: one function for ``run`` and ``check``, so they always agree.

:func:`preflight` goes through the config as ``run`` will use it: the source budget, every model (loaded,
as the run would load it), every source's credentials, files, devices and region of interest, the outputs
(the file's directory, MQTT credentials and TLS files, the spool directory) and the metrics address. It
returns every problem found, each a :class:`~streamprep.values.errors.StreamprepError` with its exit code, and the
warnings (assumed preprocessing, labels missing, and with ``probe_sources`` cameras that do not answer).

``run`` refuses to start on a problem that would stop the whole run; a problem with one source (a missing
file, say) is left to that source, which fails alone. ``check`` refuses on any problem.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from streamprep.config import budget
from streamprep.config.schema import DEFAULT_MODEL_KEY, Config, SourceConfig
from streamprep.inference import contract
from streamprep.inference.model import LoadedModel, load_model
from streamprep.regions.values import RegionMode
from streamprep.sources.live import LiveOptions, classify, open_input
from streamprep.values.errors import ConfigError, SinkError, SourceOpenError, StreamprepError
from streamprep.values.redact import redact_url

log = logging.getLogger(__name__)


@dataclass
class Preflight:
    cfg: Config
    models: dict[str, LoadedModel] = field(default_factory=dict)
    problems: list[StreamprepError] = field(default_factory=list)  # each refuses `check`
    fatal: list[StreamprepError] = field(default_factory=list)  # each refuses `run` as well
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was checked and found fine

    def problem(self, error: StreamprepError, fatal: bool = True) -> None:
        self.problems.append(error)
        if fatal:
            self.fatal.append(error)


def preflight(
    cfg: Config,
    *,
    load: Callable[..., LoadedModel] = load_model,
    probe_sources: bool = False,
    checkpoint: Callable[[], None] = lambda: None,
) -> Preflight:
    """Check ``cfg`` as ``run`` would use it (see the module docstring). ``checkpoint`` is called between
    slow steps (``run`` stops there when a stop signal came)."""
    found = Preflight(cfg)
    if not cfg.sources:
        found.problem(ConfigError("no sources: give SOURCE arguments or a [[sources]] table in the config"))
    try:
        costs = budget.check(cfg)
        if costs:
            total = budget.total_mb(costs, cfg.limits.open_files)
            found.notes.append(f"budget: {len(costs)} source(s), about {total:.0f} MB at most")
    except ConfigError as exc:
        found.problem(exc)
        costs = []
    sizes = {c.source: (c.width, c.height) for c in costs if c.size_known}
    _models(found, load, checkpoint)
    for spec, sid in zip(cfg.sources, cfg.source_ids(), strict=True):
        _regions(found, spec, sid)
        _source(found, spec, sid, sizes.get(sid), probe_sources)
    _outputs(found)
    return found


def _models(found: Preflight, load: Callable[..., LoadedModel], checkpoint: Callable[[], None]) -> None:
    cfg = found.cfg
    for key in cfg.used_models():
        checkpoint()
        try:
            model = load(cfg.model_for(key))
        except StreamprepError as exc:
            found.problem(exc)
            continue
        found.models[key] = model
        spec = model.spec
        found.notes.append(
            f"model {key}: {model.name} ok ({spec.width}x{spec.height} {spec.layout.value} {spec.dtype.value}, "
            f"{type(model.decoder).__name__.removesuffix('Decoder').lower()} decoder)"
        )
        lines, _ = contract.review(key, model, strict=False)
        found.warnings.extend(lines)


def regions_problem(cfg: Config, spec: SourceConfig, sid: str, model: LoadedModel) -> ConfigError | None:
    """Tiles and motion regions are for detectors (their boxes are merged across regions)."""
    mode = cfg.regions_of(spec).mode
    if mode is RegionMode.FULL or model.decoder.kind == "detection":
        return None
    kind = model.decoder.kind
    return ConfigError(f"source {sid}: regions = {mode.value!r} needs a detector; {model.name} makes {kind} results")


def _regions(found: Preflight, spec: SourceConfig, sid: str) -> None:
    model = found.models.get(spec.model or DEFAULT_MODEL_KEY)
    if model is not None and (problem := regions_problem(found.cfg, spec, sid, model)) is not None:
        found.problem(problem)


def _source(found: Preflight, spec: SourceConfig, sid: str, size: tuple[int, int] | None, probe: bool) -> None:
    kind, _, target = classify(spec.url)
    try:
        url = spec.resolved_url()
    except ConfigError as exc:
        found.problem(exc)
        return
    shown = redact_url(spec.url)
    if kind == "file":
        path = Path(spec.url)
        if not path.exists():
            found.problem(SourceOpenError(sid, f"{path}: no such file"), fatal=False)
            return
        if not path.is_file() or not os.access(path, os.R_OK):
            found.problem(SourceOpenError(sid, f"{path}: not a readable file"), fatal=False)
            return
    elif kind == "webcam":
        try:
            mode = os.stat(target).st_mode
        except OSError as exc:
            found.problem(SourceOpenError(sid, f"{target}: {exc.strerror or exc} (is the camera plugged in?)"), False)
            return
        if not stat.S_ISCHR(mode):
            found.problem(SourceOpenError(sid, f"{target}: not a video device"), fatal=False)
            return
        if not os.access(target, os.R_OK | os.W_OK):
            found.problem(SourceOpenError(sid, f"{target}: permission denied (is the user in the video group?)"), False)
            return
    if spec.roi is not None and not all(v <= 1 for v in spec.roi) and size is not None:
        x, y, w, h = spec.roi
        if x + w > size[0] or y + h > size[1]:
            found.problem(
                SourceOpenError(
                    sid,
                    f"roi [{x:g}, {y:g}, {w:g}, {h:g}] (pixels) lies outside its {size[0]}x{size[1]} frames",
                ),
                fatal=False,
            )
            return
    if probe and kind != "file":
        _probe(found, spec, sid, url)
    found.notes.append(f"source {sid}: {kind} {shown}")


def _probe(found: Preflight, spec: SourceConfig, sid: str, url: str) -> None:
    options = LiveOptions(
        transport=spec.transport,
        open_timeout=spec.open_timeout_s,
        stall_timeout=spec.stall_timeout_s,
        input_format=spec.format,
        input_options=dict(spec.options),
    )
    try:
        container, stream = open_input(sid, url, options)
    except Exception as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        found.warnings.append(f"source {sid}: {redact_url(spec.url)} does not answer: {reason}")
        return
    try:
        found.notes.append(f"source {sid}: answers, {stream.codec_context.name} {stream.width}x{stream.height}")
    finally:
        container.close()


def _outputs(found: Preflight) -> None:
    cfg = found.cfg
    out = cfg.output
    if out.out is not None and out.out != "-":
        path = Path(out.out)
        parent = path.parent if str(path.parent) else Path(".")
        if path.exists() and not os.access(path, os.W_OK):
            found.problem(SinkError(f"output file {path}: not writable"))
        elif not path.exists() and not (parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):
            why = "no such directory" if not parent.is_dir() else "directory not writable"
            found.problem(SinkError(f"output file {path}: {parent}: {why}"))
    if out.annotate is not None and not out.annotate.parent.is_dir():
        found.problem(SinkError(f"annotated video {out.annotate}: {out.annotate.parent}: no such directory"))
    if out.mqtt is not None:
        from streamprep.sinks.mqtt import MqttSink

        try:
            MqttSink(out.mqtt, cfg.device, cfg.state_dir)  # reads the credentials and TLS files
            found.notes.append(f"mqtt: {redact_url(out.mqtt.url)}")
        except StreamprepError as exc:
            found.problem(exc)
        if cfg.state_dir is not None:
            _writable_dir(found, cfg.state_dir, "state_dir")
    if cfg.metrics.listen:
        from streamprep.ops.exporter import parse_listen

        try:
            parse_listen(cfg.metrics.listen)
        except ConfigError as exc:
            found.problem(exc)


def _writable_dir(found: Preflight, path: Path, key: str) -> None:
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        found.problem(ConfigError(f"{key}: {path}: cannot be created or written"))
