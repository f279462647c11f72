"""Everything checked before a run starts: one function for ``run`` and ``check``, so they always agree.

:func:`preflight` goes through the config as ``run`` will use it: the source budget, every model (loaded,
as the run would load it), every source's credentials, files, devices and region of interest, the outputs
(the file's directory, MQTT credentials and TLS files, the spool directory) and the metrics address. It
returns every problem found, each a :class:`~streamprep.values.errors.StreamprepError` with its exit code, and the
warnings (assumed preprocessing, labels missing). Every file is opened once (bounded in time: a FIFO nobody
writes to or a hung network mount is reported, not waited for); with ``probe_sources`` every camera and
stream too, all at once within :data:`PROBE_TIMEOUT_S`: one that answers that it is not there (no such
device, connection refused, 404, credentials refused) is a problem, one that does not answer a warning.

``run`` refuses to start on a problem that would stop the whole run; a problem with one source (a missing
file, say) is left to that source, which fails alone. ``check`` refuses on any problem.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from streamprep.config import budget
from streamprep.config.resolve import ResolvedSource, resolve_each
from streamprep.config.schema import Config
from streamprep.inference.model import LoadedModel, load_model
from streamprep.sources.live import OPEN_MARGIN_S, WAIT_HINT, LiveOptions, SourceKind, cannot_open, classify, open_input
from streamprep.sources.opening import OpenTimeout, failure_of, open_all
from streamprep.values.errors import ConfigError, SinkError, SourceOpenError, StreamprepError
from streamprep.values.frames import RegionMode
from streamprep.values.redact import redact_url

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0  # check: how long every camera and stream together get to answer


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

    def enforce(self, logger: logging.Logger) -> None:
        """What ``run`` does with it: log each warning, and refuse to start on the first fatal problem (the
        others logged as errors)."""
        for warning in self.warnings:
            logger.warning("%s", warning)
        if self.fatal:
            for later in self.fatal[1:]:
                logger.error("%s", later)
            raise self.fatal[0]


def preflight(
    cfg: Config,
    *,
    load: Callable[..., LoadedModel] = load_model,
    probe_sources: bool = False,
    checkpoint: Callable[[], None] = lambda: None,
    given: Mapping[str, LoadedModel] | None = None,
    custom: frozenset[str] = frozenset(),
) -> Preflight:
    """Check ``cfg`` as ``run`` would use it (see the module docstring). ``checkpoint`` is called between
    slow steps (``run`` stops there when a stop signal came). ``given``: models already loaded, by model key
    (used as they are); ``custom``: the ids of sources the caller made itself (a library's own ``Source``:
    nothing to open or probe for them)."""
    found = Preflight(cfg)
    if not cfg.sources:
        found.problem(ConfigError("no sources: give SOURCE arguments or a [[sources]] table in the config"))
    each = resolve_each(cfg)
    resolved = [s for s in each if isinstance(s, ResolvedSource)]
    # over limits.max_sources: refused anyway, without opening them all first
    ours = [s for s in resolved if s.id not in custom]  # the caller's own sources: not counted, not opened
    probes = budget.probe_files(ours) if len(cfg.sources) <= cfg.limits.max_sources else {}
    try:
        costs = budget.check(cfg, probes, ours)
        if costs:
            total = budget.total_mb(costs, cfg.limits.open_files)
            found.notes.append(f"budget: {len(costs)} source(s), about {total:.0f} MB at most")
    except ConfigError as exc:
        found.problem(exc)
        costs = []
    sizes = {c.source: (c.width, c.height) for c in costs if c.size_known}
    _models(found, load, checkpoint, given or {})
    answers = _probe(ours) if probe_sources else {}
    for spec in each:
        if isinstance(spec, ConfigError):  # its credentials cannot be read
            found.problem(spec)
            continue
        sid = spec.id
        if sid in custom:
            continue
        _regions(found, spec)
        answer = answers.get(sid)
        try:
            _source(found, spec, sizes.get(sid), probes.get(sid), answer)
        finally:
            if isinstance(answer, tuple):
                answer[0].close()  # the container the probe opened
    _outputs(found)
    _credentials(found)
    return found


def _credential(name: str) -> Path | None:
    """``$CREDENTIALS_DIRECTORY/name`` (systemd's LoadCredential=, or ``check --credentials DIR``) if it exists."""
    where = os.environ.get("CREDENTIALS_DIRECTORY")
    path = Path(where.split(":")[0]) / name if where else None
    return path if path is not None and path.is_file() else None


def _empty(path: Path) -> bool:
    try:
        return path.is_file() and not path.read_bytes().strip()
    except OSError:
        return False  # unreadable: reported where it is read


def _credentials(found: Preflight) -> None:
    """Empty password and token files (``scripts/install-service.sh`` creates them empty, to be filled in).

    A file the config names (``password_file``, ``password_credential``), or one that goes with a user name,
    is an error: the empty password would be sent and refused. An empty ``$CREDENTIALS_DIRECTORY`` file
    that is only there because the unit loads it (an MQTT broker or inference server without passwords) is
    a warning: it is read as no password (an error with ``check --strict``). ``run`` is not refused: a
    camera with a wrong password fails alone, a broker or server refuses it with its own error."""
    from streamprep.inference.remote import PASSWORD_CREDENTIAL, TOKEN_CREDENTIAL
    from streamprep.sinks.mqtt import CREDENTIAL_NAME

    cfg = found.cfg
    fill = "put the password in it, e.g. systemd-ask-password | sudo tee FILE"
    for spec, sid in zip(cfg.sources, cfg.source_ids(), strict=True):
        if spec.password_credential is not None:
            path, key = _credential(spec.password_credential), "password_credential"
        elif spec.password_env is None:
            path, key = spec.password_file, "password_file"
        else:
            continue
        if path is not None and _empty(path):
            found.problem(SourceOpenError(sid, f"{key}: {path} is empty ({fill.replace('FILE', str(path))})"), False)
    checks: list[tuple[str, Path | None, bool]] = []  # (key, file, whether empty is a mistake)
    mqtt = cfg.output.mqtt
    if mqtt is not None and not urlsplit(mqtt.url).password and mqtt.password_env is None:
        named = mqtt.password_file is not None
        path = mqtt.password_file if named else _credential(CREDENTIAL_NAME)
        checks.append(("output.mqtt.password", path, named or mqtt.username is not None))
    for key in cfg.used_models():
        k = cfg.model_for(key).kserve
        if k is None:
            continue
        where = f"model {key}: kserve"
        if k.username is not None and k.password_env is None:
            checks.append((f"{where}.password", k.password_file or _credential(PASSWORD_CREDENTIAL), True))
        if k.token_env is None and k.username is None:
            token = k.token_file or _credential(TOKEN_CREDENTIAL)
            checks.append((f"{where}.token", token, k.token_file is not None))
    for key, path, mistake in checks:
        if path is None or not _empty(path):
            continue
        if mistake:
            found.problem(ConfigError(f"{key}: {path} is empty ({fill.replace('FILE', str(path))})"), fatal=False)
        else:
            found.warnings.append(f"{key}: {path} is empty: read as no password (fill it in if one is needed)")


def _models(
    found: Preflight, load: Callable[..., LoadedModel], checkpoint: Callable[[], None], given: Mapping[str, LoadedModel]
) -> None:
    cfg = found.cfg
    for key in cfg.used_models():
        checkpoint()
        try:
            # its warnings are reported from here, once
            model = given[key] if key in given else load(cfg.model_for(key), warn=False)
        except StreamprepError as exc:
            found.problem(exc)
            continue
        found.models[key] = model
        for name, each in ((key, model), *((f"{key}.then.{i}", t.model) for i, t in enumerate(model.then))):
            spec = each.spec
            found.notes.append(
                f"model {name}: {each.name} ok ({spec.width}x{spec.height} {spec.layout.value} {spec.dtype.value}, "
                f"{type(each.decoder).__name__.removesuffix('Decoder').lower()} decoder)"
            )
            found.warnings.extend(w for w in each.warnings if w not in found.warnings)


def regions_problem(spec: ResolvedSource, model: LoadedModel) -> ConfigError | None:
    """Tiles and motion regions are for detectors (their boxes are merged across regions)."""
    mode = spec.regions.mode
    if mode is RegionMode.FULL or model.decoder.kind == "detection":
        return None
    kind = model.decoder.kind
    return ConfigError(
        f"source {spec.id}: regions = {mode.value!r} needs a detector; {model.name} makes {kind} results"
    )


def _regions(found: Preflight, spec: ResolvedSource) -> None:
    model = found.models.get(spec.model)
    if model is not None and (problem := regions_problem(spec, model)) is not None:
        found.problem(problem)


def _source(
    found: Preflight,
    spec: ResolvedSource,
    size: tuple[int, int] | None,
    probe: budget.FileProbe | None,
    answer: Any,
) -> None:
    """``probe``: what opening it found (files); ``answer``: what opening it with ``probe_sources`` gave
    (an open container and stream, closed by the caller, or what it raised; None: not probed)."""
    sid, kind, shown = spec.id, spec.kind, spec.safe_url
    target = classify(spec.url)[2]
    if kind is SourceKind.FILE:
        if probe is not None and probe.problem is not None:
            found.problem(probe.problem, fatal=False)
            return
        if probe is not None and probe.size is None:
            found.warnings.append(
                f"source {sid}: {spec.url} not opened (opening the files took over {budget.PROBE_BUDGET_S:g} s)"
            )
    elif kind is SourceKind.WEBCAM:
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
    if isinstance(answer, BaseException):
        failure = failure_of(answer)
        what = cannot_open(shown, answer)
        if failure.definite and not spec.options.wait_for_source:
            found.problem(SourceOpenError(sid, f"{what} ({WAIT_HINT})"), fatal=False)  # run's words
            return
        found.warnings.append(f"source {sid}: {shown} does not answer: {what.partition(': ')[2]}")
    elif answer is not None:
        stream = answer[1]
        found.notes.append(f"source {sid}: answers, {stream.codec_context.name} {stream.width}x{stream.height}")
    found.notes.append(f"source {sid}: {kind} {shown}")


def _probe(sources: list[ResolvedSource]) -> dict[str, Any]:
    """Open every camera and stream of ``sources`` once, all at once, each within :data:`PROBE_TIMEOUT_S`
    (or its ``open_timeout_s`` when shorter): the container and stream by source id, or what it raised."""
    calls: dict[str, Callable[[], tuple[Any, Any]]] = {}
    bound = 0.0
    for spec in sources:
        if spec.kind is SourceKind.FILE:
            continue
        options = dataclasses.replace(spec.options, open_timeout=min(spec.options.open_timeout, PROBE_TIMEOUT_S))
        bound = max(bound, options.open_timeout + OPEN_MARGIN_S)
        calls[spec.id] = functools.partial(_open_in_time, spec.id, spec.url, options)
    return dict(open_all(calls, bound, lambda opened: opened[0].close())) if calls else {}


def _open_in_time(sid: str, url: str, options: LiveOptions) -> tuple[Any, Any]:
    """:func:`open_input`; an open that fails at its timeout without a definite answer is said to have had
    no answer (FFmpeg's RTSP client calls a server that accepts and never answers "invalid data")."""
    started = time.monotonic()
    try:
        return open_input(sid, url, options)
    except Exception as exc:
        if not failure_of(exc).definite and time.monotonic() - started >= options.open_timeout:
            raise OpenTimeout(options.open_timeout) from None
        raise


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
        from streamprep.config.schema import parse_listen

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
