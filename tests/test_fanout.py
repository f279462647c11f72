"""The fan-out: a sink that is behind never holds up live sources, and never loses a file's results."""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from pathlib import Path

import pytest
from conftest import RECORDINGS, ListSink

from streamprep.config.schema import parse
from streamprep.inference.model import load_model
from streamprep.run.pipeline import Pipeline
from streamprep.sinks.jsonl import JsonLinesSink

LIVE = "lavfi:testsrc2=size=640x360:rate=30,realtime"


def blocked_output(tmp_path: Path) -> tuple[Path, int]:
    """A FIFO with a reader that never reads, its buffer as small as Linux allows: writes block at once."""
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    fcntl.fcntl(reader, fcntl.F_SETPIPE_SZ, 4096)
    return fifo, reader


@pytest.mark.slow
async def test_a_blocked_output_drops_live_results_instead_of_falling_behind(tmp_path: Path) -> None:
    fifo, reader = blocked_output(tmp_path)
    try:
        cfg = parse({"fps": 10, "drain_timeout_s": 2, "sources": [{"url": LIVE, "id": "cam"}]})
        blocked, memory = JsonLinesSink(str(fifo), "test"), ListSink()
        await blocked.open()
        pipeline = Pipeline(cfg, load_model(cfg.model), [blocked, memory])
        stop = asyncio.Event()
        task = asyncio.create_task(pipeline.run(stop))
        await memory.wait_for(lambda: len(memory.of("cam")) >= 80, 60, "8 s of live results")
        stop.set()
        t0 = time.monotonic()
        report = await asyncio.wait_for(task, 30)
        assert time.monotonic() - t0 < 2 + 3 + 1, "the stop took the drain deadline plus the sink's release"
    finally:
        os.close(reader)
    late = memory.of("cam")[40:]
    assert max(r.timings.age_ms for r in late) < 500, "the live source kept up with real time"
    counters = report.metrics.sources["cam"]
    assert counters.sink_dropped > 0, "the blocked sink dropped live results, counted per source"
    assert counters.sampled == counters.processed + counters.dropped
    stats = {s.name: s for s in report.snapshot.sinks}
    assert stats[str(fifo)].dropped == counters.sink_dropped
    assert stats["memory"].dropped == 0 and stats["memory"].sent == counters.processed


async def test_a_slow_output_holds_a_file_back_without_losing_anything(tmp_path: Path) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    cfg = parse({"fps": 5, "sources": [str(RECORDINGS / "demo_720p.mp4")]})
    slow, memory = JsonLinesSink(str(fifo), "test"), ListSink()
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    fcntl.fcntl(reader, fcntl.F_SETPIPE_SZ, 4096)
    await slow.open()
    received = bytearray()

    async def read_slowly() -> None:
        while True:
            try:
                chunk = os.read(reader, 1024)
            except BlockingIOError:
                chunk = b""
            received.extend(chunk)
            await asyncio.sleep(0.01)  # a reader that is slower than the pipeline

    consumer = asyncio.create_task(read_slowly())
    try:
        report = await asyncio.wait_for(Pipeline(cfg, load_model(cfg.model), [slow, memory]).run(), 120)
        deadline = time.monotonic() + 10
        while received.count(b"\n") < 60 and time.monotonic() < deadline:  # the pipe's last bytes
            await asyncio.sleep(0.01)
    finally:
        consumer.cancel()
        os.close(reader)
    assert received.count(b"\n") == 60, "every result of the file reached the slow output"
    assert len(memory.of("demo_720p")) == 60
    assert report.metrics.sources["demo_720p"].sink_dropped == 0
