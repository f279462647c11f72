"""Video sources. :func:`make_source` picks the kind from a resolved :class:`~streamprep.sources.spec.SourceSpec`."""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import Executor
from pathlib import Path

from streamprep.sources import hwdecode
from streamprep.sources.base import Source, SourceCounts, StatusCallback
from streamprep.sources.file import FileSource
from streamprep.sources.live import LiveSource
from streamprep.sources.skipping import DecodeOptions
from streamprep.sources.spec import SourceSpec

__all__ = ["FileSource", "LiveSource", "Source", "SourceCounts", "SourceSpec", "decode_options", "make_source"]


def decode_options(spec: SourceSpec) -> DecodeOptions:
    """The source's sampling mode and frame skipping, and the hardware decoder its ``hwaccel`` setting finds
    (probed once per process)."""
    return dataclasses.replace(spec.options.decoding, hwaccel=hwdecode.probe(spec.hwaccel).device)


def make_source(
    spec: SourceSpec,
    on_status: StatusCallback,
    *,
    first_seq: int = 0,
    executor: Executor | None = None,
    decode_threads: int | None = None,
    file_slots: asyncio.Semaphore | None = None,
    came_up: bool = False,
) -> Source:
    """The source ``spec`` describes. File sources decode in ``executor`` with at most ``decode_threads``
    FFmpeg threads each (None: FFmpeg's choice); live sources decode in a thread of their own. The hardware
    decoder of ``spec.hwaccel`` is probed here (once per process). ``came_up``: the source has been online
    before (a live source then keeps retrying whatever answer it gets)."""
    decoding = decode_options(spec)
    if not spec.live:
        return FileSource(
            spec.id,
            Path(spec.url),
            spec.fps,
            on_status=on_status,
            first_seq=first_seq,
            resume_seq=spec.resume_seq,
            executor=executor,
            decode_threads=decode_threads,
            decoding=decoding,
            slots=file_slots,
            open_timeout=spec.options.open_timeout,
        )
    options = dataclasses.replace(
        spec.options, decoding=decoding, wait_for_source=spec.options.wait_for_source or came_up
    )
    return LiveSource(spec.id, spec.url, spec.fps, options, on_status=on_status, first_seq=first_seq)
