"""Video sources. :func:`make_source` picks the kind from the URL."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from pathlib import Path

from streamprep.config.schema import Config, SourceConfig
from streamprep.flow.queues import DropPolicy
from streamprep.sources import hwdecode
from streamprep.sources.base import Source, SourceCounts, StatusCallback
from streamprep.sources.file import FileSource
from streamprep.sources.live import LiveOptions, LiveSource, classify
from streamprep.sources.skipping import DecodeOptions, SampleMode

__all__ = ["FileSource", "LiveSource", "Source", "SourceCounts", "is_live", "make_source"]


def is_live(cfg: SourceConfig, realtime: bool) -> bool:
    """Live semantics (latest frame wins) for cameras and streams, and for files paced in real time."""
    kind = classify(cfg.url)[0]
    return kind != "file" or bool(cfg.realtime if cfg.realtime is not None else realtime)


def decode_options(cfg: SourceConfig, defaults: Config | None = None) -> DecodeOptions:
    """The source's sampling mode, frame skipping and hardware decoder, falling back to the top level's."""
    top = defaults or Config()
    return DecodeOptions(
        sample=SampleMode(cfg.sample or top.sample),
        skip=cfg.skip_frames if cfg.skip_frames is not None else top.skip_frames,
        hwaccel=hwdecode.probe(cfg.hwaccel or top.hwaccel).device,
    )


def make_source(
    cfg: SourceConfig,
    source_id: str,
    fps: float | None,
    realtime: bool,
    on_status: StatusCallback,
    *,
    first_seq: int = 0,
    executor: Executor | None = None,
    decode_threads: int | None = None,
    defaults: Config | None = None,
    file_slots: asyncio.Semaphore | None = None,
    came_up: bool = False,
) -> Source:
    """The source ``cfg`` describes. File sources decode in ``executor`` with at most ``decode_threads``
    FFmpeg threads each (None: FFmpeg's choice); live sources decode in a thread of their own. ``defaults``
    (the whole config) gives the top-level sampling, skipping and hardware decoding settings. ``came_up``:
    the source has been online before (a live source then keeps retrying whatever answer it gets)."""
    decoding = decode_options(cfg, defaults)
    if not is_live(cfg, realtime):
        return FileSource(
            source_id,
            Path(cfg.url),
            fps,
            on_status=on_status,
            first_seq=first_seq,
            resume_seq=cfg.resume_seq,
            executor=executor,
            decode_threads=decode_threads,
            decoding=decoding,
            slots=file_slots,
            open_timeout=cfg.open_timeout_s,
        )
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
        decoding=decoding,
        low_delay=cfg.low_delay,
        wait_for_source=cfg.wait_for_source or came_up,
    )
    return LiveSource(source_id, cfg.resolved_url(), fps, options, on_status=on_status, first_seq=first_seq)
