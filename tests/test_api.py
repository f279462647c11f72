"""The Python API on the bundled recordings and live test sources: stream, open, tensors, the seams."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import RECORDINGS, SSD, photo

import streamprep
from streamprep.inference.model import load_model
from streamprep.values.errors import ConfigError, ModelError
from streamprep.values.frames import SourceState

DEMO = RECORDINGS / "demo_720p.mp4"
LIVE = "lavfi:testsrc2=size=1280x720:rate=30,realtime"


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status", encoding="ascii") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) / 1024


def test_stream_gives_every_sampled_frame_in_order_with_boxes_in_source_pixels() -> None:
    results = list(streamprep.stream(DEMO, fps=2))
    assert [r.seq for r in results] == list(range(24))
    assert [r.pts for r in results] == pytest.approx([i / 2 for i in range(24)])
    labels = [{d.label for d in r.detections or ()} for r in results]
    assert "person" in labels[0] and "cat" in labels[10] and "cup" in labels[20]
    for r in results:
        for d in r.detections or ():
            assert 0 <= d.box.x1 < d.box.x2 <= 1280 and 0 <= d.box.y1 < d.box.y2 <= 720


def test_stream_can_give_each_result_its_frame() -> None:
    results = list(streamprep.stream(DEMO, fps=1, frames=True))
    assert len(results) == 12
    first = results[0].frame
    assert first is not None and first.index == results[0].frame_index
    image = first.to_bgr()
    assert image.shape == (720, 1280, 3) and image.dtype == np.uint8
    assert all(r.frame is None for r in streamprep.stream(DEMO, fps=1)), "frames only when asked for"


def test_leaving_the_loop_stops_the_run() -> None:
    started = time.monotonic()
    for n, result in enumerate(streamprep.stream(LIVE, fps=5), 1):
        assert result.source.startswith("lavfi")
        if n == 3:
            break
    assert time.monotonic() - started < 30


def test_errors_that_stop_the_run_are_raised_where_you_iterate(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such file"):
        list(streamprep.stream(DEMO, model=tmp_path / "missing.onnx"))
    with pytest.raises(ConfigError, match="colour: not an option"):
        streamprep.stream(DEMO, colour="rgb")


async def test_open_iterates_asynchronously_with_a_snapshot_and_stops_on_leaving() -> None:
    async with streamprep.open([DEMO, LIVE], fps=5, batch=2, realtime=True) as run:
        seen: dict[str, int] = {}
        async for result in run:
            seen[result.source] = seen.get(result.source, 0) + 1
            if sum(seen.values()) >= 20:
                snapshot = run.snapshot()
                break
    assert set(seen) == {"demo_720p", "lavfi_testsrc2_size_1280x720_rate_30_realtime"}
    assert {s.source for s in snapshot.sources} == set(seen)
    assert run.report is not None and run.report.stopped
    for s in run.report.snapshot.sources:
        assert s.state == SourceState.STOPPED.value
        assert s.sampled == s.processed + s.dropped


async def test_a_slow_consumer_of_a_live_source_drops_results_and_keeps_memory_flat() -> None:
    async with streamprep.open(LIVE, fps=30, frames=True) as run:
        start: float | None = None
        taken = 0
        deadline = time.monotonic() + 8
        async for _ in run:
            taken += 1
            if taken == 5:
                start = rss_mb()
            await asyncio.sleep(0.2)  # a consumer that takes 5 results a second of the 30 coming
            if time.monotonic() > deadline:
                break
        grown = rss_mb() - (start or rss_mb())
        snap = run.snapshot()
    cam = snap.sources[0]
    assert cam.sink_dropped > 60, "live results the consumer could not take are dropped, counted"
    assert grown < 60, f"memory grew by {grown:.0f} MB while the consumer was slow"
    assert taken < 60


def test_tensors_are_what_the_model_gets_with_the_way_back_to_source_pixels() -> None:
    batches = list(streamprep.tensors(DEMO, SSD, fps=1, batch=4, frames=True))
    assert [len(b.slots) for b in batches] == [4, 4, 4]
    assert [s.seq for b in batches for s in b.slots] == list(range(12))
    pre = load_model(streamprep.ModelConfig(path=SSD)).preprocessor
    for batch in batches:
        assert batch.tensor.shape == (4, 256, 256, 3) and batch.tensor.dtype == np.uint8
        for slot in batch.slots:
            assert slot.frame is not None
            alone = pre.new_batch(1)
            pre.into(slot.frame.image, alone[0], slot.frame.pixel_format, None, slot.frame.color_matrix)
            assert np.array_equal(batch.tensor[slot.index], alone[0]), "the same tensor as preprocessing alone"
            corners = slot.to_source([[0, 0, 256, 256]])
            assert corners[0] == pytest.approx([0, 0, 1280, 720]), "the model input's corners are the frame's"


def test_tensors_from_a_spec_without_a_model() -> None:
    spec = streamprep.PreprocessSpec(width=320, height=320, resize="letterbox", layout="nchw", dtype="float32")
    batch = next(iter(streamprep.tensors(DEMO, spec, fps=1, batch=2)))
    assert batch.tensor.shape == (2, 3, 320, 320) and batch.tensor.dtype == np.float32
    slot = batch.slots[0]
    assert slot.geometry.pad_y == (320 - 180) // 2, "letterboxed 1280x720 into 320x320"
    assert slot.to_source([[0, 70, 320, 250]])[0] == pytest.approx([0, 0, 1280, 720])


def test_a_generator_source_and_a_callback_sink() -> None:
    images = [photo("astronaut"), photo("chelsea"), photo("coffee")]
    called: list[str] = []

    def remember(result: streamprep.Result) -> None:
        called.append(",".join(sorted({d.label for d in result.detections or ()})))

    source = streamprep.FrameSource(((image, i * 0.5) for i, image in enumerate(images)), id="photos")
    results = list(streamprep.stream(source, sinks=[streamprep.CallbackSink(remember)]))
    assert [r.source for r in results] == ["photos"] * 3
    assert [r.pts for r in results] == [0.0, 0.5, 1.0]
    assert "person" in called[0] and "cat" in called[1] and "cup" in called[2]


def test_a_generator_source_that_gives_something_else_fails_alone() -> None:
    def frames():  # type: ignore[no-untyped-def]
        yield photo("chelsea")
        yield np.zeros((10, 10), dtype=np.float32)

    source = streamprep.FrameSource(frames(), id="bad")
    results = list(streamprep.stream([source, DEMO], fps=1))
    assert len([r for r in results if r.source == "bad"]) == 1
    assert len([r for r in results if r.source == "demo_720p"]) == 12


def test_a_snapshot_taken_after_the_run_needs_no_event_loop() -> None:
    async def replay() -> streamprep.Run:
        async with streamprep.open(DEMO, fps=1) as run:
            async for _ in run:
                pass
        return run

    run = asyncio.run(replay())
    snap = run.snapshot()  # no event loop runs here any more
    assert [(s.source, s.sampled, s.processed) for s in snap.sources] == [("demo_720p", 12, 12)]
    assert snap.drain_left_s == 0.0
