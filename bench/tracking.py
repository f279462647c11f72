"""Tracking quality and cost (issue 13): streamprep's tracker against a frame-to-frame IoU tracker.

Quality: the bundled SSD detector (score threshold 0.3, labels person/cat/cup) runs once over
``recordings/tracks_800x600.mp4`` sampled at each ``--fps``; every tracker then gets the same detections.
Its output (the detections it gives a confirmed track id) is scored against the clip's ground truth with
the CLEAR MOT and identity metrics of ``motmetrics`` (IDF1, MOTA, identity switches, precision, recall;
a match needs IoU >= 0.5). Ground-truth objects less than half visible (behind the van, half out of the
frame) are left out: no detector sees them, and counting them would only measure the detector.

Trackers:
- ``naive IoU``: what one writes first: each detection (score >= 0.5) takes the id of the previous frame's
  detection of the same label it overlaps most (IoU >= 0.3), else a new id; no motion model, no memory;
- ``streamprep``: :class:`streamprep.events.tracking.Tracker` with the ``[events]`` defaults used by the
  tests (high 0.5, new track 0.5, min_hits 3, max_age 1.5 s) and greedy matching;
- ``streamprep, Hungarian``: the same with an optimal assignment (``scipy.optimize.linear_sum_assignment``).

Cost: ``Tracker.update`` per frame with 1, 10 and 50 objects (synthetic boxes moving at constant velocity
in a 1920x1080 frame, with noise and 5 % missed detections, 10 fps, 300 frames), greedy and Hungarian, and
the whole :class:`~streamprep.events.engine.EventEngine` per frame (tracker, two zones, two lines, events;
no snapshots). Medians over frames and repeats.

Needs the bench extra: ``.venv/bin/pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import motmetrics as mm
import numpy as np
from benchenv import load_average, machine, revision, versions
from scipy.optimize import linear_sum_assignment

from streamprep.config.schema import parse
from streamprep.events.engine import EventEngine
from streamprep.events.geometry import Line, Zone
from streamprep.events.settings import EventsConfig
from streamprep.events.tracking import FloatArray, Tracker, TrackerSettings, iou_matrix
from streamprep.inference.model import load_model
from streamprep.run.pipeline import Pipeline
from streamprep.sinks.memory import MemorySink
from streamprep.values.frames import Box, Detection, Result, Timings

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "recordings" / "tracks_800x600.mp4"
LABELS = ("person", "cat", "cup")
SETTINGS = TrackerSettings(new_track_score=0.5)
Frame = tuple[float, FloatArray, FloatArray, list[str]]  # pts, boxes, scores, labels
Output = list[tuple[int, list[float]]]  # per frame: (id, box) of each tracked detection


def hungarian(iou: FloatArray, threshold: float) -> list[tuple[int, int]]:
    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= threshold]


def detect(fps: float) -> list[Frame]:
    cfg = parse({"sources": [str(CLIP)], "fps": fps, "model": {"score_threshold": 0.3}})
    sink = MemorySink()
    asyncio.run(Pipeline(cfg, load_model(cfg.model), [sink]).run())
    frames = []
    for r in sink.results:
        dets = [d for d in r.detections or () if d.label in LABELS]
        boxes = np.array([[d.box.x1, d.box.y1, d.box.x2, d.box.y2] for d in dets]).reshape(-1, 4)
        frames.append((float(r.pts or 0.0), boxes, np.array([d.score for d in dets]), [d.label for d in dets]))
    return frames


def run_streamprep(frames: list[Frame], settings: TrackerSettings, matcher: Callable[..., Any] | None) -> list[Output]:
    tracker = Tracker(settings) if matcher is None else Tracker(settings, matcher)
    out = []
    for t, boxes, scores, labels in frames:
        step = tracker.update(t, boxes, scores, labels)
        out.append([(i, list(boxes[d])) for d, i in enumerate(step.assigned) if i is not None])
    return out


def run_naive(frames: list[Frame]) -> list[Output]:
    out: list[Output] = []
    previous: list[tuple[int, str, FloatArray]] = []
    next_id = 1
    for _, boxes, scores, labels in frames:
        keep = [d for d in range(len(scores)) if scores[d] >= 0.5]
        current: list[tuple[int, str, FloatArray]] = []
        taken: set[int] = set()
        for d in keep:
            best, best_iou = None, 0.3
            for k, (_, plabel, pbox) in enumerate(previous):
                if k in taken or plabel != labels[d]:
                    continue
                iou = float(iou_matrix(pbox[None], boxes[d][None])[0, 0])
                if iou >= best_iou:
                    best, best_iou = k, iou
            if best is None:
                tid, next_id = next_id, next_id + 1
            else:
                taken.add(best)
                tid = previous[best][0]
            current.append((tid, labels[d], boxes[d]))
        previous = current
        out.append([(tid, list(box)) for tid, _, box in current])
    return out


def truth_at(pts_list: list[float]) -> list[list[tuple[int, list[float]]]]:
    frames = {round(f["pts"], 3): f for f in json.loads(CLIP.with_suffix(".json").read_text())["frames"]}
    return [[(o["id"], o["box"]) for o in frames[round(t, 3)]["objects"] if o["visibility"] >= 0.5] for t in pts_list]


def score(truth: list[list[tuple[int, list[float]]]], output: list[Output]) -> dict[str, float]:
    acc = mm.MOTAccumulator(auto_id=True)
    hidden = 0
    for gt, hyp in zip(truth, output, strict=True):
        g = np.array([b for _, b in gt], dtype=float).reshape(-1, 4)
        h = np.array([b for _, b in hyp], dtype=float).reshape(-1, 4)
        dist = 1.0 - iou_matrix(g, h)
        dist[dist > 0.5] = np.nan
        acc.update([i for i, _ in gt], [i for i, _ in hyp], dist)
        hidden += len(gt)
    names = ["idf1", "mota", "num_switches", "precision", "recall", "num_unique_objects", "mostly_tracked"]
    row = mm.metrics.create().compute(acc, metrics=names, name="x")
    return {k: float(row[k].iloc[0]) for k in names}


def quality(fps_list: list[float]) -> str:
    trackers: dict[str, Callable[[list[Frame]], list[Output]]] = {
        "naive IoU": run_naive,
        "streamprep": lambda f: run_streamprep(f, SETTINGS, None),
        "streamprep, Hungarian": lambda f: run_streamprep(f, SETTINGS, hungarian),
    }
    lines = [
        "| --fps | tracker | IDF1 | MOTA | id switches | ids given (truth: 4) | precision | recall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for fps in fps_list:
        frames = detect(fps)
        truth = truth_at([f[0] for f in frames])
        for name, run in trackers.items():
            out = run(frames)
            m = score(truth, out)
            ids = len({i for frame in out for i, _ in frame})
            lines.append(
                f"| {fps:g} | {name} | {m['idf1']:.3f} | {m['mota']:.3f} | {m['num_switches']:.0f} | {ids} "
                f"| {m['precision']:.3f} | {m['recall']:.3f} |"
            )
    return "\n".join(lines)


def synthetic(n: int, frames: int, seed: int) -> list[Frame]:
    rng = np.random.default_rng(seed)
    size = rng.uniform(40, 160, (n, 2))
    pos = rng.uniform([0, 0], [1920 - 160, 1080 - 160], (n, 2))
    vel = rng.uniform(-80, 80, (n, 2))
    out: list[Frame] = []
    for k in range(frames):
        t = k / 10
        p = pos + vel * t
        p = np.abs((p + 1920 * 4) % (2 * np.array([1760, 920])) - np.array([1760, 920]))  # bounce in the frame
        seen = rng.random(n) >= 0.05
        boxes = np.hstack([p, p + size]) + rng.normal(0, 2, (n, 4))
        out.append((t, boxes[seen], rng.uniform(0.3, 0.95, n)[seen], ["person"] * int(seen.sum())))
    return out


def results_for(frames: list[Frame]) -> list[Result]:
    out = []
    for k, (t, boxes, scores, labels) in enumerate(frames):
        dets = tuple(
            Detection(lab, 1, float(s), Box(*map(float, b))) for b, s, lab in zip(boxes, scores, labels, strict=True)
        )
        out.append(Result("s", k, k, t, 0.0, "m", 1920, 1080, 1, Timings(0, 0, 0, 0), "r", detections=dets))
    return out


def per_frame_us(step: Callable[[int], object], count: int, repeats: int) -> float:
    medians = []
    for _ in range(repeats):
        times = []
        for k in range(count):
            t0 = time.perf_counter()
            step(k)
            times.append(time.perf_counter() - t0)
        medians.append(statistics.median(times))
    return statistics.median(medians) * 1e6


def cost_row(n: int, repeats: int) -> str:
    frames = synthetic(n, 300, seed=n)
    results = results_for(frames)
    cfg = EventsConfig(new_track_score=0.5)
    zones = [Zone("a", ((0, 0.5), (0.5, 0.5), (0.5, 1), (0, 1))), Zone("b", ((0.5, 0), (1, 0), (1, 0.5), (0.5, 0.5)))]
    lines = [Line("v", ((0.5, 0), (0.5, 1))), Line("h", ((0, 0.5), (1, 0.5)))]
    timings = {}

    # the naive tracker's whole algorithm is one frame against the previous one: time two frames (the first
    # has nothing to match) and halve it
    def naive_pair(k: int) -> None:
        run_naive(frames[max(k - 1, 0) : k + 1])

    timings["naive"] = per_frame_us(naive_pair, len(frames), repeats) / 2
    for name, matcher in (("greedy", None), ("hungarian", hungarian)):
        trackers: list[Tracker] = []

        def step(k: int, matcher: Any = matcher, trackers: list[Tracker] = trackers) -> None:
            if k == 0:
                trackers[:] = [Tracker(SETTINGS) if matcher is None else Tracker(SETTINGS, matcher)]
            t, boxes, scores, labels = frames[k]
            trackers[0].update(t, boxes, scores, labels)

        timings[name] = per_frame_us(step, len(frames), repeats)
    engines: list[EventEngine] = []

    def engine_step(k: int) -> None:
        if k == 0:
            engines[:] = [EventEngine("s", cfg, zones, lines, "r")]
        engines[0].process(results[k])

    timings["engine"] = per_frame_us(engine_step, len(frames), repeats)
    return (
        f"| {n} | {timings['naive']:.0f} | {timings['greedy']:.0f} | {timings['hungarian']:.0f} "
        f"| {timings['hungarian'] / timings['greedy']:.2f}x | {timings['engine']:.0f} |"
    )


def cost(counts: list[int], repeats: int) -> str:
    rows = [
        "| objects | naive IoU µs/frame | streamprep µs/frame | streamprep, Hungarian µs/frame | Hungarian / greedy "
        "| event engine µs/frame (2 zones, 2 lines) |",
        "|---|---|---|---|---|---|",
    ]
    rows += [cost_row(n, repeats) for n in counts]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--fps", default="15,5,2", help="sampling rates for the quality table")
    parser.add_argument("--objects", default="1,10,50", help="object counts for the cost table")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    measured, before = revision(), load_average()
    quality_table = quality([float(f) for f in args.fps.split(",")])
    cost_table = cost([int(n) for n in args.objects.split(",")], args.repeats)
    print(f"clip: {CLIP.relative_to(ROOT)}; detector: SSD, score threshold 0.3; truth: objects >= 50 % visible")
    print(f"streamprep: {measured}")
    print(f"machine: {machine()}")
    print(f"libraries: {versions()}, motmetrics {mm.__version__}")
    print(f"load average (1/5/15 min): {before} before, {load_average()} after")
    print()
    print(quality_table)
    print()
    print(cost_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
