"""Live sources against a real RTSP server (gst-rtsp-server) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import pytest
from conftest import RECORDINGS, ListSink, RtspServer, free_port

from streamprep.config.schema import parse
from streamprep.inference.model import load_model
from streamprep.run.pipeline import Pipeline
from streamprep.values.frames import SourceState


async def start_pipeline(cfg: dict[str, object]) -> tuple[ListSink, asyncio.Event, asyncio.Task[object]]:
    config = parse(cfg)
    sink = ListSink()
    stop = asyncio.Event()
    model = await asyncio.to_thread(load_model, config.model)
    task: asyncio.Task[object] = asyncio.create_task(Pipeline(config, model, [sink], drain_timeout=5).run(stop))
    return sink, stop, task


async def finish(stop: asyncio.Event, task: asyncio.Task[object]) -> None:
    stop.set()
    await asyncio.wait_for(task, 15)


async def test_rtsp_frames_flow_to_results(rtsp_server: Callable[..., RtspServer]) -> None:
    server = rtsp_server("--file", str(RECORDINGS / "demo_720p.mp4"))
    sink, stop, task = await start_pipeline({"sources": [{"url": server.url(), "id": "cam"}], "fps": 5})
    try:
        await sink.wait_for(lambda: len(sink.of("cam")) >= 10, 30, "10 results from the RTSP camera")
    finally:
        await finish(stop, task)
    results = sink.of("cam")
    assert [r.seq for r in results] == list(range(len(results)))
    assert all((r.width, r.height) == (1280, 720) for r in results)
    pts = [r.pts for r in results]
    assert all(b > a for a, b in itertools.pairwise(pts))
    labels = {d.label for r in results for d in r.detections or ()}
    assert labels & {"person", "cat", "cup"}, "real content is detected"
    assert sink.states("cam")[:2] == [SourceState.CONNECTING, SourceState.ONLINE]


async def test_server_killed_then_restarted(rtsp_server: Callable[..., RtspServer]) -> None:
    server = rtsp_server("--pattern", "--size", "320x240")
    stall, cap = 2.0, 1.0
    sink, stop, task = await start_pipeline(
        {
            "sources": [
                {"url": server.url(), "id": "cam", "stall_timeout_s": stall, "backoff_cap_s": cap},
                {"url": "lavfi:testsrc2=size=320x240:rate=10,realtime", "id": "other"},
            ],
            "fps": 5,
        }
    )
    try:
        await sink.wait_for(lambda: len(sink.of("cam")) >= 5, 30, "the camera to produce")
        server.kill()
        before_other = len(sink.of("other"))
        waited = await sink.wait_for(
            lambda: sink.states("cam")[-1] in (SourceState.STALLED, SourceState.OFFLINE),
            stall + 5,
            "the camera to be reported stalled or offline",
        )
        assert waited <= stall + 1.5
        await sink.wait_for(lambda: len(sink.of("other")) >= before_other + 5, 10, "the other source to go on")
        lost_at = len(sink.of("cam"))
        server.start()  # same port
        await sink.wait_for(lambda: sink.states("cam")[-1] is SourceState.ONLINE, cap + 10, "the camera back online")
        await sink.wait_for(lambda: len(sink.of("cam")) >= lost_at + 5, 20, "camera results to resume")
    finally:
        await finish(stop, task)
    cam = sink.of("cam")
    pts = [r.pts for r in cam]
    assert all(b > a for a, b in itertools.pairwise(pts)), "pts stay monotonic across the reconnect"
    captured = [r.captured_at for r in cam]
    assert captured == sorted(captured)
    assert [r.seq for r in cam] == list(range(len(cam)))
    assert SourceState.CONNECTING in sink.states("cam")[2:], "it reconnected"


def wrong_sources(guarded: RtspServer, **extra: object) -> list[dict[str, object]]:
    """A refused port, wrong credentials, a path the server does not have (404) and a webcam that is not
    there: each a definite answer; plus the right camera."""
    return [
        {"url": f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/stream", "id": "refused", **extra},
        {"url": guarded.url("admin:wrongpass@"), "id": "badauth", **extra},
        {"url": guarded.url("admin:letmein@").replace("/stream", "/nope"), "id": "badpath", **extra},
        {"url": "/dev/video7", "id": "nocam", **extra},
        {"url": guarded.url("admin:letmein@"), "id": "good"},
    ]


WRONG = ("refused", "badauth", "badpath", "nocam")


async def test_a_wrong_live_source_that_never_came_up_fails_alone(
    rtsp_server: Callable[..., RtspServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    guarded = rtsp_server("--pattern", "--size", "320x240", "--user", "admin", "--password", "letmein")
    sink, stop, task = await start_pipeline({"sources": wrong_sources(guarded), "fps": 5})
    try:
        await sink.wait_for(
            lambda: all(SourceState.FAILED in sink.states(s) for s in WRONG), 20, "the four wrong sources to fail"
        )
        await sink.wait_for(lambda: len(sink.of("good")) >= 5, 30, "the good camera to produce")
    finally:
        await finish(stop, task)
    report = task.result()
    failures = {f.source: f.reason for f in report.failures}  # type: ignore[attr-defined]
    assert set(failures) == set(WRONG), "each fails alone (run exits 3), the good camera runs on"
    assert "Connection refused" in failures["refused"] and "admin:***@" in failures["refused"]
    assert "401 Unauthorized" in failures["badauth"]
    assert "404 Not Found" in failures["badpath"]
    assert "/dev/video7: No such file or directory" in failures["nocam"]
    assert all("wait_for_source = true" in reason for reason in failures.values())
    for source in WRONG:
        # (the last state comes once more at the end, with the final counts)
        assert set(sink.states(source)) == {SourceState.CONNECTING, SourceState.FAILED}, "tried once, not retried"
        assert len([r for r in caplog.records if f"source {source}: failed" in r.getMessage()]) == 1
    everything = caplog.text + " ".join(s.reason for s in sink.statuses) + " ".join(failures.values())
    for secret in ("hunter2", "wrongpass", "letmein"):
        assert secret not in everything
    assert not any(sink.of(s) for s in WRONG)


async def test_a_source_waited_for_is_retried_with_one_line_per_try(
    rtsp_server: Callable[..., RtspServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    guarded = rtsp_server("--pattern", "--size", "320x240", "--user", "admin", "--password", "letmein")
    sources = wrong_sources(guarded, wait_for_source=True, backoff_cap_s=1)
    sink, stop, task = await start_pipeline({"sources": sources, "fps": 5})

    def tries(source: str) -> list[str]:
        return [s.reason for s in sink.statuses if s.source == source and s.state is SourceState.OFFLINE]

    try:
        await sink.wait_for(lambda: len(sink.of("good")) >= 5, 30, "the good camera to produce")
        await sink.wait_for(
            lambda: all(len(tries(s)) >= 3 for s in ("refused", "badpath", "nocam")) and tries("badauth"),
            20,
            "three tries of each",
        )
    finally:
        await finish(stop, task)
    report = task.result()
    assert not report.failures, "waited for: retried, not given up"  # type: ignore[attr-defined]
    assert "Connection refused" in tries("refused")[0]
    assert "401" in tries("badauth")[0]
    assert "refused the credentials" in tries("badauth")[0] and "next in 60.0 s" in tries("badauth")[0]
    assert "refused the credentials" not in tries("refused")[0], "a refused connection retries on its backoff"
    assert "404" in tries("badpath")[0]
    snapshot = {s.source: s for s in report.snapshot.sources}  # type: ignore[attr-defined]
    assert snapshot["badauth"].reconnects >= 1 and snapshot["refused"].reconnects >= 3, "failed attempts are counted"
    for source in ("refused", "badpath", "nocam"):
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"source {source}: ")]
        retries = [x for x in lines if ": offline (" in x]
        assert len(retries) >= 3 and len(retries) == len(tries(source))
        assert len([x for x in lines if x.endswith(": connecting")]) == 1, "one log line per try, not two"
    everything = caplog.text + " ".join(s.reason for s in sink.statuses)
    for secret in ("hunter2", "wrongpass", "letmein"):
        assert secret not in everything
    assert "admin:***@" in caplog.text
    assert not any(sink.of(s) for s in WRONG)


@pytest.mark.slow
def test_record_then_replay_gives_the_same_frames(rtsp_server: Callable[..., RtspServer], tmp_path: Path) -> None:
    server = rtsp_server("--file", str(RECORDINGS / "demo_720p.mp4"))
    out = tmp_path / "field.mp4"
    rec = subprocess.run(
        [sys.executable, "-m", "streamprep", "record", server.url(), str(out), "--seconds", "3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rec.returncode == 0, rec.stderr
    recorded = int(re.search(r"(\d+) frames", rec.stderr).group(1))  # type: ignore[union-attr]
    assert 60 <= recorded <= 95  # 3 s at 30 fps, starting at a keyframe
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and (stream.width, stream.height) == (1280, 720)
        assert stream.frames == recorded
    replay = subprocess.run(
        [sys.executable, "-m", "streamprep", "run", str(out)], capture_output=True, text=True, timeout=120
    )
    assert replay.returncode == 0, replay.stderr
    assert len(replay.stdout.splitlines()) == recorded


def test_record_of_an_unreachable_camera_fails_clearly(tmp_path: Path) -> None:
    url = f"rtsp://admin:topsecret@127.0.0.1:{free_port()}/stream"
    rec = subprocess.run(
        [sys.executable, "-m", "streamprep", "record", url, str(tmp_path / "x.mp4"), "--seconds", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rec.returncode == 3
    assert "Connection refused" in rec.stderr and "topsecret" not in rec.stderr
    assert "Traceback" not in rec.stderr


async def test_camera_password_from_the_environment(
    rtsp_server: Callable[..., RtspServer], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    guarded = rtsp_server("--pattern", "--size", "320x240", "--user", "admin", "--password", "s3cr3t-pw")
    monkeypatch.setenv("SP_TEST_CAM_PASSWORD", "s3cr3t-pw")
    source = {"url": guarded.url("admin@"), "id": "cam", "password_env": "SP_TEST_CAM_PASSWORD"}
    sink, stop, task = await start_pipeline({"sources": [source], "fps": 5})
    try:
        await sink.wait_for(lambda: len(sink.of("cam")) >= 3, 30, "results from the guarded camera")
    finally:
        await finish(stop, task)
    assert "s3cr3t-pw" not in caplog.text + " ".join(s.reason for s in sink.statuses)


@pytest.fixture
def hls_server(tmp_path: Path) -> Iterator[str]:
    """An HLS stream of a bundled recording (segmented by PyAV, no re-encoding) served over HTTP on 127.0.0.1."""
    import functools
    import http.server
    import threading

    with av.open(str(RECORDINGS / "demo_720p.mp4")) as src:
        stream = src.streams.video[0]
        options = {"hls_time": "2", "hls_list_size": "0", "hls_playlist_type": "vod"}
        with av.open(str(tmp_path / "stream.m3u8"), "w", format="hls", options=options) as out:
            target = out.add_stream_from_template(stream)
            for packet in src.demux(stream):
                if packet.dts is None:
                    continue
                packet.stream = target
                out.mux(packet)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/stream.m3u8"
    finally:
        server.shutdown()
        thread.join(timeout=5)


async def test_hls_over_http_flows_to_results(hls_server: str) -> None:
    sink, stop, task = await start_pipeline({"sources": [{"url": hls_server, "id": "hls"}], "fps": 2})
    try:
        await sink.wait_for(lambda: len(sink.of("hls")) >= 10, 60, "10 results from the HLS stream")
    finally:
        await finish(stop, task)
    results = sink.of("hls")
    assert (results[0].width, results[0].height) == (1280, 720)
    assert {d.label for r in results for d in r.detections or ()} & {"person", "cat"}
    assert SourceState.ONLINE in sink.states("hls")
