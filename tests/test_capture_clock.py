"""Frame age from the camera's own clock, checked against the time a test camera burnt into each frame."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

import av
import pytest
from conftest import RECORDINGS, ListSink, RtspServer
from servers.groundtruth import ClockReadingEngine, Reading

from streamprep.config.schema import parse
from streamprep.inference.model import load_model
from streamprep.run.pipeline import Pipeline
from streamprep.sources.clock import CameraCheck, Capture, CaptureClocks
from streamprep.values.frames import Result


async def run_camera(
    url: str, until: Callable[[list[Result]], bool], timeout: float = 40.0
) -> tuple[list[Result], ClockReadingEngine]:
    """Run the bundled SSD on one RTSP camera until ``until(results)``; results and the ground truth."""
    cfg = parse({"sources": [{"url": url, "id": "cam"}]})
    loaded = await asyncio.to_thread(load_model, cfg.model)
    engine = ClockReadingEngine(loaded.engine, layout=loaded.spec.layout)
    model = dataclasses.replace(loaded, engine=engine)
    sink = ListSink()
    stop = asyncio.Event()
    task = asyncio.create_task(Pipeline(cfg, model, [sink], drain_timeout=5).run(stop))
    try:
        await sink.wait_for(lambda: until(sink.of("cam")), timeout, "enough results from the camera")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    results = sink.of("cam")
    assert len(engine.readings) == len(results), "one reading per image the model ran on"
    return results, engine


def paired(results: list[Result], engine: ClockReadingEngine, clock: str) -> list[tuple[Result, Reading]]:
    """Each result whose age counts from ``clock``, with the ground truth read from its tensor."""
    out = []
    for result, reading in zip(results, engine.readings, strict=True):
        assert reading.code is not None, f"time code unreadable in the tensor of frame {result.frame_index}"
        if result.capture_clock == clock:
            out.append((result, reading))
    return out


def error_ms(result: Result, reading: Reading) -> float:
    """Reported age minus true age."""
    assert reading.age_ms is not None
    return result.timings.age_ms - reading.age_ms


async def test_camera_clock_age_matches_ground_truth(clock_server: Callable[..., RtspServer]) -> None:
    server = clock_server()
    results, engine = await run_camera(server.url(), lambda rs: sum(r.capture_clock == "camera" for r in rs) >= 40)
    # until the first sender report, and while the camera's clock is checked, ages count from arrival
    assert results[0].capture_clock == "arrival"
    camera = paired(results, engine, "camera")
    assert len(camera) >= 40
    # The two ages are stamped a few lines apart (the pipeline's, then the engine's): on a loaded machine a
    # thread can be pre-empted in between, so a rare frame may differ by more; nearly all must not.
    errors = sorted(abs(error_ms(result, reading)) for result, reading in camera)
    assert errors[len(errors) // 2] <= 5.0 and errors[int(len(errors) * 0.95)] <= 20.0, (
        f"|reported - true| ms: {errors}"
    )
    captured = [(result.captured_at - (reading.code or 0.0)) * 1000.0 for result, reading in camera]
    assert max(abs(c) for c in captured) <= 20.0, f"captured_at - time code, ms: {captured}"
    assert all(0 < (reading.age_ms or 0.0) < 1000 for _, reading in camera)


async def test_without_sender_reports_ages_count_from_arrival(clock_server: Callable[..., RtspServer]) -> None:
    server = clock_server("--no-rtcp")
    results, engine = await run_camera(server.url(), lambda rs: len(rs) >= 60)
    arrival = paired(results, engine, "arrival")
    assert len(arrival) == len(results), {r.capture_clock for r in results}
    # a frame arrives after it was captured: an age from arrival is never more than the true age
    assert all(error_ms(result, reading) <= 2.0 for result, reading in arrival)
    assert all(result.timings.age_ms >= 0 for result, _ in arrival)


async def test_camera_clock_not_synchronised_is_ignored(
    clock_server: Callable[..., RtspServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = clock_server("--camera-clock", "running-time")  # its sender reports say it is 1900
    caplog.set_level(logging.WARNING, logger="streamprep.sources.clock")

    def warned(results: list[Result]) -> bool:
        return len(results) >= 10 and any("camera clock ignored" in r.getMessage() for r in caplog.records)

    results, engine = await run_camera(server.url(), warned)
    assert {r.capture_clock for r in results} == {"arrival"}
    warning = next(r.getMessage() for r in caplog.records if "camera clock ignored" in r.getMessage())
    assert "before the frames arrived" in warning and "source cam" in warning
    assert all(error_ms(result, reading) <= 2.0 for result, reading in paired(results, engine, "arrival"))


@pytest.mark.parametrize("realtime", [False, True], ids=["replay", "paced"])
async def test_files_age_from_decoding(realtime: bool) -> None:
    cfg = parse({"sources": [{"url": str(RECORDINGS / "vfr_720p.mp4"), "realtime": realtime}], "fps": 2})
    model = await asyncio.to_thread(load_model, cfg.model)
    sink = ListSink()
    stop = asyncio.Event()
    started = time.time()
    task = asyncio.create_task(Pipeline(cfg, model, [sink], drain_timeout=5).run(stop))
    try:
        await sink.wait_for(lambda: len(sink.results) >= 4, 60, "results from the file")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert {r.capture_clock for r in sink.results} == {"decode"}
    assert all(started <= r.captured_at <= time.time() for r in sink.results)


def settle(check: CameraCheck, transit: float) -> list[bool]:
    return [check.observe(transit) for _ in range(30)]


def test_camera_clock_believed_once_it_agrees_with_arrival(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="streamprep.sources.clock")
    check = CameraCheck("door")
    verdicts = settle(check, 0.004)
    assert verdicts == [False] * 29 + [True], "believed only after the first 30 frames agree"
    assert check.observe(0.020) and check.observe(-0.030), "network jitter, or a clock a little ahead: fine"
    assert "door" in caplog.text and "4.0 ms after capture" in caplog.text


@pytest.mark.parametrize(
    ("transit", "where"),
    [(-0.2, "0.200 s after the frames arrived"), (3.5, "3.500 s before the frames arrived")],
    ids=["ahead", "behind"],
)
def test_camera_clock_off_is_rejected(transit: float, where: str, caplog: pytest.LogCaptureFixture) -> None:
    check = CameraCheck("door")
    assert not any(settle(check, transit))
    assert check.rejected is not None and where in check.rejected
    assert not check.observe(0.004), "rejected until reconnect"
    assert "camera clock ignored" in caplog.text


def test_camera_clock_that_jumps_is_dropped() -> None:
    check = CameraCheck("door")
    settle(check, 0.004)
    assert check.observe(0.005)
    assert not check.observe(-0.5), "the camera's clock stepped forward: captured after arrival"
    assert not check.observe(0.005)
    again = CameraCheck("door")
    settle(again, 0.004)
    assert not again.observe(120.0), "stepped back by two minutes"


def test_arrival_stamps_from_a_real_demuxer() -> None:
    """Every decoded frame of a file finds the arrival of its packet; no camera clock in a file."""
    container = av.open(str(RECORDINGS / "demo_720p.mp4"))
    stream = container.streams.video[0]
    clocks = CaptureClocks("file", container, stream)
    captures = []
    try:
        for packet in clocks.stamped().demux(stream):
            for frame in packet.decode():
                decoded = time.time()
                captures.append((clocks.capture(frame.pts, decoded), decoded))
                if len(captures) >= 60:
                    break
            if len(captures) >= 60:
                break
    finally:
        container.close()
    assert {c.clock for c, _ in captures} == {"arrival"}
    assert all(c.at <= decoded for c, decoded in captures)
    assert clocks.capture(None, 5.0) == Capture(5.0, "decode")
    assert clocks.capture(10**9, 5.0) == Capture(5.0, "decode"), "a pts never seen: no arrival"
