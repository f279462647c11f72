"""Sustained cameras against worker processes (issue 15): how many 5 fps cameras ``streamprep run --workers N``
keeps up with, on this machine or a bigger one.

Each configuration is one ``streamprep run`` process (the real command line, ``--workers W``, a supervisor
and W workers when W > 1) with C live-like cameras: ``--clip`` (default ``recordings/demo_720p.mp4``, 720p
H.264, 12 s) replayed in real time (``realtime = true``: a live source, latest frame wins, frames dropped
when the pipeline is behind), each under its own id, sampled at ``--fps`` (5), the default model (SSD)
at batch 4 with ``max_wait_ms`` 20, results as JSON lines to a file. Configurations take turns,
``--repeats`` rounds, the order rotating each round. Reported per configuration, medians over the repeats:

- the share of each worker (sources per worker, as :func:`streamprep.ops.workers.plan` places them);
- results/s: results whose frame was decoded between 2 s and 11 s into the clip (by ``captured_at``,
  relative to the earliest frame), per second, against the ideal C x fps;
- processed / sampled over the whole run (from the end-of-run summary of every source) and the drops;
- frame age at inference (``timings_ms.age``) p50 and p95 over all results;
- CPU: user+sys seconds of the whole process tree (supervisor and workers, ``RUSAGE_CHILDREN``) over the
  run's wall seconds, as a % of all the cores this process may use;
- sustained: at least 95% of the sampled frames processed and age p95 under 500 ms.

On the 2-core development machine the workers compete for the same two cores, so the table shows the cost
of the supervisor and the per-process overheads more than a gain; on a machine with 8+ cores run it with
more cameras and workers (``--cameras 8,16,32,48 --workers 1,2,4,8``).

Run from the repository root (configurations x repeats x about 20 s)::

    .venv/bin/python bench/workers.py [--cameras 4,8,12,16] [--workers 1,2] [--repeats 3] [--fps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchenv import ROOT, load_average, machine, revision, versions

from streamprep.ops.workers import plan

WINDOW_S = (2.0, 11.0)
SUMMARY = re.compile(r"source (\S+): \w+, (\d+) decoded, (\d+) sampled, (\d+) processed, (\d+) dropped")


@dataclass(frozen=True)
class Run:
    rate: float
    processed: int
    sampled: int
    dropped: int
    age_p50: float
    age_p95: float
    cpu_pct: float
    wall_s: float


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run_once(clip: Path, cameras: int, workers: int, fps: float, work: Path) -> Run:
    cfg = work / f"c{cameras}w{workers}.toml"
    out = work / f"c{cameras}w{workers}.jsonl"
    sources = "".join(f'[[sources]]\nurl = "{clip}"\nid = "cam{i}"\n' for i in range(cameras))
    cfg.write_text(
        f"fps = {fps}\nrealtime = true\nworkers = {workers}\n[model]\nbatch = 4\nmax_wait_ms = 20\n{sources}"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streamprep", "run", "--config", str(cfg), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"streamprep exited {done.returncode}:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    results = [json.loads(line) for line in out.read_text().splitlines()]
    start = min(r["captured_at"] - (r["pts"] or 0.0) for r in results)
    lo, hi = start + WINDOW_S[0], start + WINDOW_S[1]
    in_window = sum(1 for r in results if lo <= r["captured_at"] < hi)
    counts = [tuple(map(int, m.groups()[1:])) for m in SUMMARY.finditer(done.stderr)]
    if len(counts) != cameras:
        raise RuntimeError(f"{len(counts)} summaries for {cameras} cameras:\n{done.stderr[-3000:]}")
    ages = [r["timings_ms"]["age"] for r in results]
    cores = len(os.sched_getaffinity(0))
    return Run(
        rate=in_window / (WINDOW_S[1] - WINDOW_S[0]),
        processed=sum(c[2] for c in counts),
        sampled=sum(c[1] for c in counts),
        dropped=sum(c[3] for c in counts),
        age_p50=pct(ages, 50),
        age_p95=pct(ages, 95),
        cpu_pct=100.0 * cpu / wall / cores,
        wall_s=wall,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", type=Path, default=ROOT / "recordings" / "demo_720p.mp4")
    p.add_argument("--cameras", default="4,8,12,16")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--fps", type=float, default=5.0)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    cameras = [int(x) for x in args.cameras.split(",")]
    workers = [int(x) for x in args.workers.split(",")]
    configs = [(c, w) for c in cameras for w in workers]
    load_before = load_average()
    runs: dict[tuple[int, int], list[Run]] = {k: [] for k in configs}
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        for r in range(args.repeats):
            for key in configs[r % len(configs) :] + configs[: r % len(configs)]:
                runs[key].append(run_once(args.clip.resolve(), *key, args.fps, Path(tmp)))
                print(f"round {r + 1}: {key[0]} cameras, {key[1]} worker(s) done", file=sys.stderr)
    print(f"# Sustained cameras against workers: {args.clip.name} in real time at {args.fps:g} fps, SSD batch 4\n")
    print(f"{machine()}; {versions()}; {revision()}")
    print(f"load average before {load_before}, after {load_average()}; {args.repeats} repeats, medians\n")
    print(
        "| cameras | workers | sources per worker | results/s (ideal) | processed / sampled | dropped "
        "| age p50 / p95 ms | CPU % of all cores | run s | sustained |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for c, w in configs:
        rs = runs[(c, w)]

        def med(attr: str, rs: list[Run] = rs) -> float:
            return float(statistics.median(getattr(x, attr) for x in rs))

        placed = plan([f"cam{i}" for i in range(c)], w)
        split = [sum(1 for k2 in placed.values() if k2 == k) for k in range(w)]
        share = med("processed") / med("sampled") if med("sampled") else 0.0
        sustained = share >= 0.95 and med("age_p95") < 500
        print(
            f"| {c} | {w} | {' / '.join(map(str, split))} | {med('rate'):.1f} ({c * args.fps:g}) | "
            f"{share:.1%} | {med('dropped'):.0f} | {med('age_p50'):.0f} / {med('age_p95'):.0f} | "
            f"{med('cpu_pct'):.0f}% | {med('wall_s'):.1f} | {'yes' if sustained else 'no'} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
