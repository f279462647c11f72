"""The whole replay pipeline in-process, on the bundled recordings."""

from __future__ import annotations

import asyncio
import itertools
import json
from fractions import Fraction
from pathlib import Path

import av
import pytest
from conftest import FASTESTDET, RECORDINGS, SSD, ListSink, replay, stable

from streamprep.config.schema import Config, parse
from streamprep.inference.model import load_model
from streamprep.run.pipeline import Pipeline, RunReport
from streamprep.values.frames import Result

GOLDEN = Path(__file__).resolve().parent / "golden"


def test_30fps_10s_clip_at_5fps_gives_50_results_0_2s_apart() -> None:
    results, report = replay(parse({"sources": [str(RECORDINGS / "pan_1080p.mp4")], "fps": 5}))
    assert not report.failures
    assert len(results) == 50
    assert [r.pts for r in results] == pytest.approx([i * 0.2 for i in range(50)], abs=1e-9)
    assert [r.frame_index for r in results] == [i * 6 for i in range(50)]
    assert [r.seq for r in results] == list(range(50))
    counters = report.metrics.sources["pan_1080p"]
    # 140 of the 300 frames are neither selected nor referenced by a selected one: left undecoded
    assert (counters.decoded, counters.sampled, counters.processed, counters.dropped) == (160, 50, 50, 0)


def test_variable_frame_rate_clip_is_sampled_as_evenly_as_it_allows() -> None:
    clip = RECORDINGS / "vfr_720p.mp4"
    with av.open(str(clip)) as c:
        s = c.streams.video[0]
        all_pts = [Fraction(p.pts) * s.time_base for p in c.demux(s) if p.pts is not None]
    all_pts.sort()
    gaps = {b - a for a, b in itertools.pairwise(all_pts)}
    assert len(gaps) > 3, "the clip really has a variable frame rate"
    results, _ = replay(parse({"sources": [str(clip)], "fps": 5}))
    kept = [Fraction(r.pts).limit_denominator(90000) for r in results]
    origin = all_pts[0]
    for p in kept:
        slot_start = origin + Fraction(int((p - origin) * 5), 5)
        # nothing in the source lies between the slot boundary and the frame chosen for it
        assert not [q for q in all_pts if slot_start <= q < p - Fraction(1, 90000)]
    slots = [int((p - origin) * 5) for p in kept]
    assert slots == sorted(set(slots))
    assert set(slots) == {int((p - origin) * 5) for p in all_pts}, "every slot with a frame is served"


def test_replay_is_deterministic_with_batching_and_two_sources() -> None:
    cfg = parse(
        {
            "sources": [str(RECORDINGS / "demo_720p.mp4"), str(RECORDINGS / "vfr_720p.mp4")],
            "fps": 3,
            "model": {"batch": 4, "max_wait_ms": 5},
        }
    )
    first, _ = replay(cfg)
    second, _ = replay(cfg)
    key = lambda r: (r["source"], r["seq"])  # noqa: E731
    assert sorted(stable(first), key=key) == sorted(stable(second), key=key)
    assert max(r.batch_size for r in first) > 1, "frames really were batched"
    for source in ("demo_720p", "vfr_720p"):
        seqs = [r.seq for r in first if r.source == source]
        assert seqs == list(range(len(seqs))), "in order per source"


def golden_cases() -> list[tuple[str, Path, float]]:
    return [
        ("demo_720p.ssd", SSD, 2.0),
        ("demo_720p.fastestdet", FASTESTDET, 2.0),
        ("pan_1080p.ssd", SSD, 2.0),
        ("vfr_720p.ssd", SSD, 2.0),
    ]


@pytest.mark.parametrize(("name", "model", "fps"), golden_cases(), ids=[c[0] for c in golden_cases()])
def test_results_match_golden(name: str, model: Path, fps: float) -> None:
    clip = RECORDINGS / f"{name.split('.')[0]}.mp4"
    results, _ = replay(parse({"sources": [str(clip)], "fps": fps, "model": {"path": str(model)}}))
    got = stable(results)
    golden = [json.loads(line) for line in (GOLDEN / f"{name}.jsonl").read_text().splitlines()]
    assert len(got) == len(golden)
    for g, e in zip(got, golden, strict=True):
        assert (g["seq"], g["frame_index"], g["pts"]) == (e["seq"], e["frame_index"], e["pts"])
        assert [d["label"] for d in g["detections"]] == [d["label"] for d in e["detections"]], g["pts"]
        for dg, de in zip(g["detections"], e["detections"], strict=True):
            assert dg["score"] == pytest.approx(de["score"], abs=0.02)
            assert dg["box"] == pytest.approx(de["box"], abs=3.0)


def run_models(cfg: Config) -> tuple[list[Result], RunReport]:
    sink = ListSink()
    models = {key: load_model(cfg.model_for(key)) for key in cfg.used_models()}
    report = asyncio.run(asyncio.wait_for(Pipeline(cfg, models, [sink]).run(), 120))
    return list(sink.results), report


def test_batches_fill_across_sources_and_results_go_back_to_their_frames() -> None:
    clips = [str(RECORDINGS / "demo_720p.mp4")] * 3 + [str(RECORDINGS / "vfr_720p.mp4")]
    batched, _ = replay(parse({"sources": clips, "fps": 2, "model": {"batch": 4, "max_wait_ms": 200}}))
    sizes = [r.batch_size for r in batched]
    assert max(sizes) == 4 and sizes.count(4) >= len(sizes) // 2, "batches fill to their max"
    alone, _ = replay(parse({"sources": [clips[0], clips[3]], "fps": 2}))
    by_frame = {(r.source.split("-")[0], r.seq): r for r in alone}
    for r in batched:
        twin = by_frame[(r.source.split("-")[0], r.seq)]
        assert r.frame_index == twin.frame_index and r.pts == twin.pts
        assert [(d.label, d.box) for d in r.detections or ()] == [(d.label, d.box) for d in twin.detections or ()]


def test_a_fixed_batch_1_model_receives_single_frames() -> None:
    clips = [str(RECORDINGS / "demo_720p.mp4")] * 2
    results, _ = replay(parse({"sources": clips, "fps": 1, "model": {"path": str(FASTESTDET), "batch": 8}}))
    assert len(results) == 24
    assert {r.batch_size for r in results} == {1}


def test_two_models_in_one_run_each_with_its_own_sources() -> None:
    cfg = parse(
        {
            "fps": 1,
            "sources": [
                {"url": str(RECORDINGS / "demo_720p.mp4"), "id": "a"},
                {"url": str(RECORDINGS / "demo_720p.mp4"), "id": "b", "model": "fast"},
            ],
            "models": {"fast": {"path": str(FASTESTDET), "name": "fastestdet"}},
        }
    )
    results, report = run_models(cfg)
    assert not report.failures
    assert {r.model for r in results if r.source == "a"} == {SSD.stem}
    assert {r.model for r in results if r.source == "b"} == {"fastestdet"}
    assert len([r for r in results if r.source == "a"]) == len([r for r in results if r.source == "b"]) == 12
    golden = [json.loads(line) for line in (GOLDEN / "demo_720p.fastestdet.jsonl").read_text().splitlines()]
    first_labels = {d["label"] for d in golden[0]["detections"]}
    assert first_labels <= {d.label for d in next(r for r in results if r.source == "b").detections or ()}


def test_unknown_model_key_is_refused() -> None:
    from streamprep.values.errors import ConfigError

    with pytest.raises(ConfigError, match=r"sources\.0\.model: no model named 'nope'"):
        parse({"sources": [{"url": "x.mp4", "model": "nope"}]})


def test_region_of_interest_per_source() -> None:
    clip = str(RECORDINGS / "demo_720p.mp4")
    cfg = parse(
        {"fps": 1, "sources": [{"url": clip, "id": "left", "roi": [0, 0, 0.5, 1.0]}, {"url": clip, "id": "all"}]}
    )
    results, _ = replay(cfg)
    left = [r for r in results if r.source == "left"]
    assert len(left) == 12
    for r in left:
        for d in r.detections or ():
            assert d.box.x2 <= 640.0 + 1e-6, "boxes stay inside the region, in source pixels"
    whole = [r for r in results if r.source == "all"]
    assert any(d.box.x2 > 640 for r in whole for d in r.detections or ())


@pytest.mark.parametrize(("live", "size", "policy"), [(True, 1, "drop_oldest"), (False, 8, "block")])
def test_a_ready_made_source_gets_the_queue_its_own_liveness_asks_for(live: bool, size: int, policy: str) -> None:
    from streamprep.api import configure
    from streamprep.sources.python import FrameSource

    cfg, custom = configure(FrameSource([], id="sdk", live=live))  # its entry, python:sdk, reads like a file
    pipeline = Pipeline(cfg, load_model(cfg.model), [ListSink()], sources=custom)
    try:
        (spec,) = pipeline.sources
        assert (spec.id, spec.live, spec.queue_size, spec.policy.value) == ("sdk", live, size, policy)
    finally:
        pipeline._close_executors()
