"""Test-time augmentation: what extra views cost per frame, and what they do to the bundled recordings' detections.

What it measures: the full pipeline (``streamprep.run.pipeline.Pipeline``, the default SSD MobileNetV2 FPNLite
detector, batch 1 frame, sampled at ``--fps``, default 2) replaying ``recordings/demo_720p.mp4``,
``pan_1080p.mp4`` and ``vfr_720p.mp4`` (64 sampled frames in all) with, side by side in one run:

- ``none``: no augmentation (one input per frame);
- ``hflip wbf``: ``tta = ["hflip"]``, weighted box fusion (the default);
- ``hflip nms``: ``tta = ["hflip"]``, ``tta_fusion = "nms"``;
- ``hflip + scale 0.83 wbf``: ``tta = ["hflip", "scale:0.83"]`` (three inputs per frame).

Cost: the medians over all frames of each result's ``timings_ms.preprocess`` (this frame's views) and
``timings_ms.inference`` (its batch: the frame's views in one run), the median wall seconds of a whole
replay over ``--repeats`` round-robin repeats (after one untimed warm-up round), and the ratios to ``none``.

Effect, per recording segment with a known subject (``recordings/README.md``: demo person/cat/cup, pan
cat/person, vfr cup/person): frames where the subject's label is found, its mean score where found, the
mean IoU of its box with the ``none`` box on the same frame, and the number of detections of other labels.

Run from the repository root::

    .venv/bin/python bench/tta_cost.py [--fps 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchenv import load_average, machine, revision, versions

from streamprep.config.schema import parse
from streamprep.inference.model import load_model
from streamprep.run.pipeline import Pipeline
from streamprep.sinks.memory import MemorySink
from streamprep.values.frames import Box, Result

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ("demo_720p", "pan_1080p", "vfr_720p")
SUBJECTS = {
    "demo_720p": ((0, 4, "person"), (4, 8, "cat"), (8, 12, "cup")),
    "pan_1080p": ((0, 5, "cat"), (5, 10, "person")),
    "vfr_720p": ((0, 5, "cup"), (5, 10, "person")),
}
CONFIGS: dict[str, dict[str, Any]] = {
    "none": {},
    "hflip wbf": {"tta": ["hflip"]},
    "hflip nms": {"tta": ["hflip"], "tta_fusion": "nms"},
    "hflip + scale 0.83 wbf": {"tta": ["hflip", "scale:0.83"]},
}


def replay(name: str, fps: float) -> tuple[list[Result], float]:
    cfg = parse({"sources": [str(ROOT / "recordings" / f"{c}.mp4") for c in CLIPS], "fps": fps, "model": CONFIGS[name]})
    model = load_model(cfg.model)
    sink = MemorySink()

    async def go() -> float:
        await sink.open()
        t0 = time.perf_counter()
        report = await Pipeline(cfg, model, [sink]).run()
        if report.failures:
            raise RuntimeError(f"{name}: {report.failures}")
        return time.perf_counter() - t0

    wall = asyncio.run(go())
    return list(sink.results), wall


def subject(result: Result) -> str:
    t = float(result.pts or 0.0)
    return next(label for start, end, label in SUBJECTS[result.source] if start <= t < end)


def iou(a: Box, b: Box) -> float:
    w = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    h = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = w * h
    union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter
    return inter / union if union > 0 else 0.0


def effect(results: list[Result], baseline: list[Result]) -> dict[tuple[str, str], str]:
    """Per (recording, subject): found/frames, mean score, mean IoU with the baseline box, other labels."""
    base = {(r.source, r.seq): r for r in baseline}
    cells: dict[tuple[str, str], str] = {}
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.source, subject(r)), []).append(r)
    for key, rs in groups.items():
        label = key[1]
        hits = [next((d for d in r.detections or () if d.label == label), None) for r in rs]
        found = [h for h in hits if h is not None]
        ious = []
        for r, h in zip(rs, hits, strict=True):
            b = next((d for d in base[(r.source, r.seq)].detections or () if d.label == label), None)
            if h is not None and b is not None:
                ious.append(iou(h.box, b.box))
        others = sum(1 for r in rs for d in r.detections or () if d.label != label)
        score = statistics.mean(h.score for h in found) if found else 0.0
        mean_iou = f"{statistics.mean(ious):.2f}" if ious else "—"
        cells[key] = f"{len(found)}/{len(rs)}, {score:.2f}, IoU {mean_iou}, +{others}"
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    names = list(CONFIGS)
    load_before = load_average()
    for name in names:
        replay(name, args.fps)
    walls: dict[str, list[float]] = {n: [] for n in names}
    results: dict[str, list[Result]] = {}
    for i in range(args.repeats):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            rs, wall = replay(name, args.fps)
            walls[name].append(wall)
            results[name] = rs
        print(f"round {i + 1}/{args.repeats} done", file=sys.stderr, flush=True)

    print(f"streamprep: {revision()}")
    print(f"machine: {machine()}")
    print(f"libraries: {versions()}")
    print(f"load average (1/5/15 min): {load_before} before, {load_average()} after")
    print(f"recordings: {', '.join(CLIPS)} at --fps {args.fps:g}; {len(results['none'])} frames; model: bundled SSD")
    print()
    print(
        "| views | inputs per frame | preprocess ms (median) | inference ms (median) | replay wall s (median) | "
        "wall vs none |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    base_wall = statistics.median(walls["none"])
    for name in names:
        rs = results[name]
        pre = statistics.median(r.timings.preprocess_ms for r in rs)
        inf = statistics.median(r.timings.inference_ms for r in rs)
        wall = statistics.median(walls[name])
        inputs = 1 + len(CONFIGS[name].get("tta", []))
        print(f"| {name} | {inputs} | {pre:.2f} | {inf:.1f} | {wall:.2f} | {wall / base_wall:.2f}x |")
    print()
    keys = sorted({(r.source, subject(r)) for r in results["none"]}, key=lambda k: (CLIPS.index(k[0]), k[1]))
    print(
        "Per subject: frames found / frames, mean score where found, mean IoU with the no-TTA box, "
        "detections of other labels."
    )
    print()
    print("| recording | subject | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    cells = {name: effect(results[name], results["none"]) for name in names}
    for key in keys:
        print(f"| {key[0]} | {key[1]} | " + " | ".join(cells[n][key] for n in names) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
