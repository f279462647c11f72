"""Resolving a config once: every source's effective values, for the layers below the config.

:func:`resolve_sources` turns a :class:`~streamprep.config.schema.Config` into one frozen
:class:`ResolvedSource` per source: its id (:meth:`~streamprep.config.schema.Config.source_ids`), its URL
with the credentials put in, whether it is live, and its own setting or else the top level's for every
fallback (fps, queue size, drop policy, sampling, frame skipping, hardware decoding). The run, the budget and
the checks read these values; none of them works a fallback out again. A reload resolves the new config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from streamprep.config.schema import DEFAULT_MODEL_KEY, Config, SourceConfig
from streamprep.events.settings import LineConfig, ZoneConfig
from streamprep.flow.backoff import BackoffPolicy
from streamprep.flow.queues import DropPolicy
from streamprep.regions.source import RegionSettings
from streamprep.sources.live import LIVE_BACKOFF, LiveOptions, SourceKind, classify
from streamprep.sources.skipping import DecodeOptions, SampleMode
from streamprep.sources.spec import SourceSpec
from streamprep.values.errors import ConfigError
from streamprep.values.redact import redact_url


@dataclass(frozen=True, slots=True)
class ResolvedSource(SourceSpec):
    """A :class:`~streamprep.sources.spec.SourceSpec` with the source's zones and lines (``[events]``)."""

    zones: tuple[ZoneConfig, ...] = ()
    lines: tuple[LineConfig, ...] = ()
    regions: RegionSettings = field(default_factory=RegionSettings)  # which pixels the model looks at


def resolve_source(cfg: Config, spec: SourceConfig, source_id: str, live: bool | None = None) -> ResolvedSource:
    """Source ``spec`` of ``cfg``, known as ``source_id``; ``live``: what a ready-made source (the library's
    own :class:`~streamprep.sources.base.Source`) says it is, None to work it out from the config. Raises
    ConfigError naming the key when its credentials cannot be read."""
    kind = classify(spec.url)[0]
    if live is None:
        live = kind is not SourceKind.FILE or bool(spec.realtime if spec.realtime is not None else cfg.realtime)
    if live:
        queue_size, policy = spec.queue_size or cfg.live_queue_size, spec.policy or DropPolicy.DROP_OLDEST
    else:
        queue_size, policy = spec.queue_size or cfg.queue_size, spec.policy or DropPolicy.BLOCK
    decoding = DecodeOptions(
        sample=SampleMode(spec.sample or cfg.sample),
        skip=spec.skip_frames if spec.skip_frames is not None else cfg.skip_frames,
    )
    options = LiveOptions(
        transport=spec.transport,
        open_timeout=spec.open_timeout_s,
        stall_timeout=spec.stall_timeout_s,
        backoff=BackoffPolicy(
            first_s=LIVE_BACKOFF.first_s,
            cap_s=spec.backoff_cap_s,
            jitter=LIVE_BACKOFF.jitter,
            per_minute=spec.max_restarts_per_minute,
        ),
        realtime=kind is SourceKind.FILE,
        input_format=spec.format,
        input_options=dict(spec.options),
        policy=policy,
        decoding=decoding,
        low_delay=spec.low_delay,
        wait_for_source=spec.wait_for_source,
    )
    return ResolvedSource(
        id=source_id,
        url=spec.resolved_url(),
        safe_url=redact_url(spec.url),
        kind=kind,
        live=live,
        fps=spec.fps if spec.fps is not None else cfg.fps,
        queue_size=queue_size,
        policy=policy,
        options=options,
        hwaccel=spec.hwaccel or cfg.hwaccel,
        resume_seq=spec.resume_seq,
        roi=spec.roi,
        model=spec.model or DEFAULT_MODEL_KEY,
        zones=spec.zones,
        lines=spec.lines,
        regions=cfg.regions_of(spec),
    )


def resolve_each(cfg: Config, live: Mapping[str, bool] | None = None) -> list[ResolvedSource | ConfigError]:
    """Every source of ``cfg`` in the config's order, resolved, or the error that refused it (``check``
    reports each one). ``live``: by source id, whether a ready-made source is live (it says so itself)."""
    found: list[ResolvedSource | ConfigError] = []
    live = live or {}
    for spec, sid in zip(cfg.sources, cfg.source_ids(), strict=True):
        try:
            found.append(resolve_source(cfg, spec, sid, live.get(sid)))
        except ConfigError as exc:
            found.append(exc)
    return found


def resolve_sources(cfg: Config, live: Mapping[str, bool] | None = None) -> tuple[ResolvedSource, ...]:
    """Every source of ``cfg``, resolved (see the module docstring), in the config's order (``live``: as
    for :func:`resolve_each`). Raises the ConfigError of the first that cannot be."""
    found = resolve_each(cfg, live)
    for item in found:
        if isinstance(item, ConfigError):
            raise item
    return tuple(s for s in found if isinstance(s, ResolvedSource))
