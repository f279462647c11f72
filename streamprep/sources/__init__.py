"""Video sources. :func:`make_source` picks the kind from the URL."""

from __future__ import annotations

from pathlib import Path

from streamprep.config import SourceConfig
from streamprep.queues import DropPolicy
from streamprep.sources.base import Source, SourceState, SourceStatus, StatusCallback
from streamprep.sources.file import FileSource
from streamprep.sources.live import LiveOptions, LiveSource, classify

__all__ = ["FileSource", "LiveSource", "Source", "SourceState", "SourceStatus", "is_live", "make_source"]


def is_live(cfg: SourceConfig, realtime: bool) -> bool:
    """Live semantics (latest frame wins) for cameras and streams, and for files paced in real time."""
    kind = classify(cfg.url)[0]
    return kind != "file" or bool(cfg.realtime if cfg.realtime is not None else realtime)


def make_source(
    cfg: SourceConfig, source_id: str, fps: float | None, realtime: bool, on_status: StatusCallback
) -> Source:
    if not is_live(cfg, realtime):
        return FileSource(source_id, Path(cfg.url), fps, on_status=on_status)
    options = LiveOptions(
        transport=cfg.transport,
        open_timeout=cfg.open_timeout_s,
        stall_timeout=cfg.stall_timeout_s,
        backoff_cap=cfg.backoff_cap_s,
        max_restarts_per_minute=cfg.max_restarts_per_minute,
        realtime=classify(cfg.url)[0] == "file",
        input_format=cfg.format,
        input_options=dict(cfg.options),
        policy=cfg.policy or DropPolicy.DROP_OLDEST,
        low_delay=cfg.low_delay,
    )
    return LiveSource(source_id, cfg.resolved_url(), fps, options, on_status=on_status)
