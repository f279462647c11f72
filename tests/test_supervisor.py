"""Supervision: one source's trouble stays its own, whatever the trouble is."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import RECORDINGS, ListSink, RtspServer, make_clip

from streamprep.config.schema import Config, parse
from streamprep.inference.model import load_model
from streamprep.run.pipeline import Pipeline, RunReport
from streamprep.values.frames import SourceState

DEMO = RECORDINGS / "demo_720p.mp4"


def streamprep(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamprep", *args], capture_output=True, text=True, timeout=timeout)


def run(cfg: Config) -> tuple[ListSink, RunReport]:
    sink = ListSink()
    report = asyncio.run(asyncio.wait_for(Pipeline(cfg, load_model(cfg.model), [sink]).run(), 120))
    return sink, report


def summary_counts(stderr: str, source: str) -> dict[str, int]:
    """The counts of the end-of-run summary line for ``source``."""
    line = next(x for x in stderr.splitlines() if f"source {source}: " in x and " sampled, " in x)
    counts = {}
    for part in line.split(": ", 2)[2].split(", ")[1:]:
        number, _, what = part.partition(" ")
        if number.isdigit():
            counts[what.split(" ")[0]] = int(number)
    return counts


def test_a_region_outside_the_frame_fails_its_source_alone(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'fps = 2\n[[sources]]\nurl = "{DEMO}"\nid = "good"\n'
        f'[[sources]]\nurl = "{DEMO}"\nid = "bad"\nroi = [1000, 100, 600, 400]\n'
    )
    proc = streamprep("run", "--config", str(cfg))
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["seq"] for r in rows if r["source"] == "good"] == list(range(24)), "the healthy source ran to the end"
    assert not [r for r in rows if r["source"] == "bad"]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("streamprep: error:")]
    assert errors == [
        "streamprep: error: source bad: region of interest [1000, 100, 600, 400] (x, y, width, height in pixels) "
        "lies outside the 1280x720 frame"
    ]
    bad = summary_counts(proc.stderr, "bad")
    assert bad["sampled"] == bad["processed"] + bad["dropped"] and bad["processed"] == 0
    good = summary_counts(proc.stderr, "good")
    assert (good["sampled"], good["processed"], good["dropped"]) == (24, 24, 0)


def test_a_frame_size_change_mid_stream_keeps_running(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "two.ts", [("chelsea", (1280, 720), 10), ("chelsea", (640, 360), 10)])
    sink, report = run(parse({"sources": [str(clip)]}))
    assert not report.failures
    results = sink.of("two")
    assert [(r.width, r.height) for r in results] == [(1280, 720)] * 10 + [(640, 360)] * 10
    for r in results:
        assert r.detections, "the cat is found at both sizes"
        for d in r.detections:
            assert 0 <= d.box.x1 < d.box.x2 <= r.width and 0 <= d.box.y1 < d.box.y2 <= r.height
    cats = [next(d for d in r.detections or () if d.label == "cat") for r in (results[9], results[10])]
    assert cats[1].box.x2 == pytest.approx(cats[0].box.x2 / 2, rel=0.1), "the box follows the new size"


def test_a_pixel_region_is_checked_again_when_the_size_changes(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "shrinks.ts", [("chelsea", (1280, 720), 10), ("chelsea", (640, 360), 10)])
    sink, report = run(parse({"sources": [{"url": str(clip), "id": "cam", "roi": [0, 0, 1000, 300]}]}))
    assert len(sink.of("cam")) == 10, "the frames of the first size were processed"
    assert [f.reason for f in report.failures] == [
        "region of interest [0, 0, 1000, 300] (x, y, width, height in pixels) lies outside the 640x360 frame"
    ]
    counters = report.metrics.sources["cam"]
    assert counters.sampled == counters.processed + counters.dropped == 20
    assert sink.states("cam")[-1] is SourceState.FAILED


def test_timestamps_that_jump_back_are_rebased(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clip = make_clip(tmp_path / "joined.ts", [("coffee", (640, 360), 10), ("astronaut", (640, 360), 10)])
    sink, _report = run(parse({"sources": [str(clip)]}))
    pts = [r.pts for r in sink.of("joined")]
    assert len(pts) == 20
    assert pts == sorted(pts) and len(set(pts)) == 20, "monotonic across the join"
    assert pts[10] == pytest.approx(pts[9] + 0.1), "continues one frame interval after the last frame"
    assert any("timestamps jumped back" in r.getMessage() for r in caplog.records)
    assert [d.label for d in sink.of("joined")[10].detections or ()][:1] == ["person"]


async def test_a_live_source_that_fails_is_restarted() -> None:
    graph = "lavfi:testsrc2=size=320x240:rate=30,realtime"
    cfg = parse({"fps": 5, "sources": [{"url": graph, "id": "cam", "roi": [400, 0, 100, 100]}]})
    sink = ListSink()
    pipeline = Pipeline(cfg, load_model(cfg.model), [sink])
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))

    def restarted() -> bool:
        states = sink.states("cam")
        failed = [i for i, s in enumerate(states) if s is SourceState.FAILED]
        return len(failed) >= 2 and SourceState.ONLINE in states[failed[0] :]

    await sink.wait_for(restarted, 30, "a failure, a restart, and a second failure")
    reasons = [s.reason for s in sink.statuses if s.source == "cam" and s.state is SourceState.FAILED]
    assert "lies outside the 320x240 frame" in reasons[0] and "restarting in" in reasons[0]
    stop.set()
    report = await asyncio.wait_for(task, 30)
    assert not report.failures, "a live source is restarted, not given up"
    counters = report.metrics.sources["cam"]
    assert counters.reconnects >= 1
    assert counters.sampled == counters.processed + counters.dropped


def test_many_files_are_decoded_a_few_at_a_time() -> None:
    cfg = parse({"fps": 1, "sources": [str(DEMO)] * 12, "limits": {"open_files": 3}})
    sink, report = run(cfg)
    assert not report.failures
    assert len(sink.results) == 12 * 12
    waited = {s.source for s in sink.statuses if "waiting for its turn" in s.reason}
    assert len(waited) >= 12 - 3, "the others waited until a file was done"
    for sid, counters in report.metrics.sources.items():
        assert (counters.sampled, counters.processed, counters.dropped) == (12, 12, 0), sid
        assert [r.seq for r in sink.of(sid)] == list(range(12))


def test_a_source_that_never_opens_fails_alone_in_bounded_time(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe.mp4"
    os.mkfifo(pipe)  # nobody ever writes to it: opening it blocks in open(2), where no FFmpeg timeout reaches
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'fps = 1\n[[sources]]\nurl = "{pipe}"\nid = "pipe"\nopen_timeout_s = 2\n')
    started = time.monotonic()
    alone = streamprep("run", "--config", str(cfg), "--out", str(tmp_path / "alone.jsonl"), timeout=60)
    took = time.monotonic() - started
    assert alone.returncode == 3, alone.stderr
    errors = [line for line in alone.stderr.splitlines() if line.startswith("streamprep: error:")]
    assert errors == [
        f"streamprep: error: source pipe: {pipe}: did not open within 2 s "
        "(a FIFO nobody writes to, or a network mount that does not answer?)"
    ]
    assert took < 30, f"{took:.1f} s"
    assert "Traceback" not in alone.stderr

    cfg.write_text(cfg.read_text() + f'[[sources]]\nurl = "{DEMO}"\nid = "demo"\n')
    both = streamprep("run", "--config", str(cfg), timeout=60)
    assert both.returncode == 3, both.stderr
    rows = [json.loads(line) for line in both.stdout.splitlines()]
    assert [r["seq"] for r in rows if r["source"] == "demo"] == list(range(12)), "the recording ran to its end"
    assert [line for line in both.stderr.splitlines() if line.startswith("streamprep: error:")] == errors


async def test_a_live_source_that_came_up_is_retried_after_a_restart_whatever_it_answers(
    rtsp_server: Callable[..., RtspServer],
) -> None:
    server = rtsp_server("--pattern", "--size", "320x240")
    source = {"url": server.url(), "id": "cam", "roi": [400, 0, 100, 100], "backoff_cap_s": 1}
    cfg = parse({"fps": 5, "sources": [source]})
    sink = ListSink()
    stop = asyncio.Event()
    task = asyncio.create_task(Pipeline(cfg, load_model(cfg.model), [sink]).run(stop))
    try:
        # its first frame fails (the region lies outside it): the supervisor restarts it in 0.5 to 1 s
        await sink.wait_for(lambda: SourceState.FAILED in sink.states("cam"), 30, "the first frame to fail")
        server.kill()  # the restarted source finds the port closed: a definite answer, but it came up before
        await sink.wait_for(
            lambda: sum(s is SourceState.OFFLINE for s in sink.states("cam")) >= 2, 20, "two failed tries"
        )
    finally:
        stop.set()
        report = await asyncio.wait_for(task, 30)
    assert not report.failures, "a source that came up is retried, not given up"
    offline = [s.reason for s in sink.statuses if s.source == "cam" and s.state is SourceState.OFFLINE]
    assert "Connection refused" in offline[0]
