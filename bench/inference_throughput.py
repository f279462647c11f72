"""Inference and end-to-end throughput: what batching buys on this CPU, and how many 5 fps sources it sustains.

Two measurements, one table each, in one run.

1. Inference throughput per batch size (1, 2, 4, 8) for the bundled models:
   ``streamprep/models/ssd_mobilenet_v2_fpnlite_256_int8.onnx`` (the default model) and
   ``streamprep/models/mobilenet_v2_224_int8.onnx``, both with a dynamic batch dimension, and
   ``streamprep/models/fastestdet_352.onnx``, whose input is fixed at ``[1, 3, 352, 352]``: only batch 1 exists for it
   (``load_model(ModelConfig(batch=8))`` clamps ``max_batch`` to 1, and the pipeline never batches it), so
   only batch 1 is timed. Each (model, batch) is streamprep's own ``load_model(ModelConfig(path=...,
   batch=B))``, timed on ``engine.run(tensor)`` (ONNX Runtime's ``session.run`` plus ``np.asarray`` of the
   outputs; no box decoding). The tensor is filled once by the model's ``Preprocessor.into`` from real
   frames: 8 frames spread evenly over ``--clip`` (default ``recordings/demo_720p.mp4``), decoded with PyAV
   and converted by the file source's ``to_image`` (I420, as the pipeline hands them over); batch B uses the
   first B of them. Rounds (``--rounds``) visit every (model, batch) in turn, the batch order rotating each
   round; each turn does one untimed run and then ``--runs`` timed runs. The untimed run matters: every
   session has its own ONNX Runtime thread pool, and the first run after switching sessions pays for the
   previous session's workers still spinning on the other core and for cold caches (up to 2x slower on 2
   cores). The pipeline never switches: it runs one session per model. Reported per (model, batch): median
   and 10th–90th percentile wall ms per batch, ms per frame, frames/s (B / median seconds), frames/s
   relative to batch 1 of the same model, and median CPU ms per frame (all threads of the process).

2. End-to-end sustained throughput of the full ``streamprep.run.pipeline.Pipeline`` with N simultaneous
   live-like sources (``--sources``, default 1, 4, 8), each ``--clip`` replayed with real-time pacing and
   sampled at ``--fps`` (default 5), with the default model (SSD) at model batch 1 and 4 (``--batches``):
   config ``{"sources": [{"url": clip, "id": "cam0"}, ...], "fps": 5, "realtime": True,
   "model": {"batch": B, "max_wait_ms": 20}}``, so each source is a ``LiveSource`` (latest frame wins, the
   oldest is dropped when the pipeline is behind), delivering to an in-bench ``MemorySink`` that also
   stamps each result's arrival. Models are loaded once, before timing. Each configuration runs the whole
   clip (12 s) ``--repeats`` times, configurations round-robin with the order rotating each round.
   Reported per configuration, medians over the repeats of:

   - results/s: results that reached the sink between 2 s and 11 s after ``Pipeline.run`` started, per
     second (a window clear of start-up and of the end of the clip), in total and per source (mean, and
     the slowest and fastest source), against the ideal N x fps;
   - over the whole run: frames processed / sampled, frames dropped
     (``report.snapshot.sources[*].dropped``: the live hand-off and per-source queues), the mean frames per
     inference batch, and the median inference ms per batch (``snapshot.inference_p50_ms``);
   - p50 and p95 of the results' ``timings.age_ms`` (decode -> inference start);
   - "behind real time at decode", p95: how much later than its place in the clip a frame was decoded,
     ``captured_at - pts`` relative to the source's earliest frame. ``age_ms`` starts at decode, so it
     cannot show a decoder that fell behind real time; this column does;
   - run wall seconds (12 s of clip, plus start-up and drain; more when decoding cannot keep real time);
   - CPU: user+sys CPU seconds of the whole process (``resource.getrusage(RUSAGE_SELF)``, every thread:
     decoders, preprocessing, ONNX Runtime, the event loop) divided by the run's wall seconds, as a % of
     one core and of all the cores the process may use.

Prints the machine (CPUs, CPU model, load average before and after), the streamprep commit and the library
versions. The development machines have 2 shared cores: compare figures from the same run.

Run from the repository root (about 4.5 minutes with the defaults)::

    .venv/bin/python bench/inference_throughput.py [--clip PATH] [--rounds 20] [--runs 3] [--repeats 3]
        [--sources 1,4,8] [--batches 1,4] [--fps 5] [--part all|inference|pipeline]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from benchenv import load_average, machine, revision, versions

from streamprep.config.schema import parse
from streamprep.inference.model import LoadedModel, load_model
from streamprep.inference.settings import ModelConfig
from streamprep.run.pipeline import Pipeline
from streamprep.sinks.memory import MemorySink
from streamprep.sources.file import to_image
from streamprep.values.frames import Image, Result, Tensor

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CLIP = ROOT / "recordings" / "demo_720p.mp4"
MODELS = (
    ROOT / "streamprep" / "models" / "ssd_mobilenet_v2_fpnlite_256_int8.onnx",
    ROOT / "streamprep" / "models" / "mobilenet_v2_224_int8.onnx",
    ROOT / "streamprep" / "models" / "fastestdet_352.onnx",
)
BATCHES = (1, 2, 4, 8)
WINDOW_S = (2.0, 11.0)  # results/s counted between these seconds after Pipeline.run starts
MAX_WAIT_MS = 20.0


def _ints(text: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.split(",") if v.strip())
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


# -- 1. inference throughput per batch size


@dataclass
class BatchCase:
    """One (model, batch size): its loaded model, its filled tensor, and the timed runs."""

    model: str
    batch: int
    loaded: LoadedModel
    tensor: Tensor
    wall_ms: list[float]
    cpu_ms: list[float]


def sample_frames(clip: Path, count: int) -> list[tuple[Image, str]]:
    """``count`` frames spread evenly over the clip, as the file source hands them over (``to_image``)."""
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        total = stream.frames or sum(1 for _ in container.decode(stream))
    wanted = {round(i * (total - 1) / max(1, count - 1)) for i in range(count)}
    frames: list[tuple[Image, str]] = []
    with av.open(str(clip)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                frames.append(to_image(frame))
    if len(frames) < count:
        raise RuntimeError(f"{clip}: could decode only {len(frames)} of the {count} frames wanted")
    return frames


def input_desc(loaded: LoadedModel) -> str:
    facts = loaded.engine.info.inputs[0]
    dims = ",".join("N" if not isinstance(d, int) else str(d) for d in facts.shape)
    return f"[{dims}] {facts.dtype}"


def batch_cases(frames: list[tuple[Image, str]]) -> tuple[list[BatchCase], list[str]]:
    """Load every (model, batch) to time; notes say which batch sizes a model cannot take, and why."""
    cases: list[BatchCase] = []
    notes: list[str] = []
    for path in MODELS:
        probe = load_model(ModelConfig(path=path, batch=max(BATCHES)))
        batches: tuple[int, ...] = BATCHES
        if probe.spec.batch is not None:
            batches = tuple(b for b in BATCHES if b == probe.spec.batch) or (probe.spec.batch,)
            notes.append(
                f"{path.name}: input {input_desc(probe)} has a fixed batch of {probe.spec.batch}; "
                f"load_model(ModelConfig(batch={max(BATCHES)})) gives max_batch {probe.max_batch}, "
                f"so only batch {probe.spec.batch} is timed"
            )
        for b in batches:
            loaded = probe if b == max(BATCHES) else load_model(ModelConfig(path=path, batch=b))
            tensor = loaded.preprocessor.new_batch(loaded.max_batch)
            for i in range(tensor.shape[0]):
                image, fmt = frames[i]
                loaded.preprocessor.into(image, tensor[i], fmt)
            cases.append(BatchCase(path.stem, tensor.shape[0], loaded, tensor, [], []))
    return cases, notes


def run_inference(cases: list[BatchCase], rounds: int, runs: int) -> None:
    models = list(dict.fromkeys(c.model for c in cases))
    for r in range(rounds):
        for name in models:
            mine = [c for c in cases if c.model == name]
            shift = r % len(mine)
            for case in mine[shift:] + mine[:shift]:
                engine, tensor = case.loaded.engine, case.tensor
                engine.run(tensor)  # settle: see the module docstring
                for _ in range(runs):
                    c0 = time.process_time()
                    t0 = time.perf_counter()
                    engine.run(tensor)
                    case.wall_ms.append((time.perf_counter() - t0) * 1000.0)
                    case.cpu_ms.append((time.process_time() - c0) * 1000.0)
        if (r + 1) % 5 == 0 or r + 1 == rounds:
            print(f"inference: round {r + 1}/{rounds} done", file=sys.stderr, flush=True)


def inference_table(cases: list[BatchCase]) -> str:
    lines = [
        "| model | input | batch | median ms per batch | p10–p90 ms per batch | ms per frame | frames/s "
        "| frames/s vs batch 1 | CPU ms per frame |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base: dict[str, float] = {}
    for case in cases:
        median = statistics.median(case.wall_ms)
        fps = case.batch * 1000.0 / median
        base.setdefault(case.model, fps if case.batch == 1 else float("nan"))
        cpu = statistics.median(case.cpu_ms) / case.batch
        lines.append(
            f"| {case.model} | {input_desc(case.loaded)} | {case.batch} | {median:.1f} "
            f"| {_pct(case.wall_ms, 10):.1f}–{_pct(case.wall_ms, 90):.1f} | {median / case.batch:.1f} "
            f"| {fps:.1f} | {fps / base[case.model]:.2f}x | {cpu:.1f} |"
        )
    return "\n".join(lines)


# -- 2. end-to-end pipeline throughput


class StampingSink(MemorySink):
    """A MemorySink that keeps every result and when it arrived (``time.monotonic()``)."""

    def __init__(self) -> None:
        super().__init__(keep=None)
        self.arrivals: list[float] = []

    async def send(self, result: Result) -> None:
        self.arrivals.append(time.monotonic())
        await super().send(result)


@dataclass(frozen=True)
class PipelineRun:
    """One whole-clip run of the pipeline with N sources."""

    window_rate: float  # results/s in WINDOW_S, all sources
    per_source_rates: tuple[float, ...]
    processed: int
    sampled: int
    dropped: int
    age_p50: float
    age_p95: float
    behind_p95: float
    fill: float
    inference_p50: float
    wall_s: float
    cpu_s: float


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_pipeline(clip: Path, sources: int, fps: float, model: LoadedModel, batch: int) -> PipelineRun:
    cfg = parse(
        {
            "sources": [{"url": str(clip), "id": f"cam{i}"} for i in range(sources)],
            "fps": fps,
            "realtime": True,
            "model": {"batch": batch, "max_wait_ms": MAX_WAIT_MS},
        }
    )
    if model.max_batch != cfg.model.batch:
        raise RuntimeError(f"model loaded for batch {model.max_batch}, config says {cfg.model.batch}")
    sink = StampingSink()

    async def go() -> tuple[Any, float, float, float]:
        await sink.open()
        pipeline = Pipeline(cfg, model, [sink])
        c0 = _cpu_seconds()
        t0 = time.monotonic()
        report = await pipeline.run()
        return report, t0, time.monotonic() - t0, _cpu_seconds() - c0

    report, t0, wall, cpu = asyncio.run(go())
    if report.failures:
        raise RuntimeError(f"pipeline failed: {report.failures}")
    lo, hi = t0 + WINDOW_S[0], t0 + WINDOW_S[1]
    span = WINDOW_S[1] - WINDOW_S[0]
    in_window = [r for r, at in zip(sink.results, sink.arrivals, strict=True) if lo <= at < hi]
    ids = [f"cam{i}" for i in range(sources)]
    per_source = tuple(sum(1 for r in in_window if r.source == sid) / span for sid in ids)
    ages = [r.timings.age_ms for r in sink.results]
    behind: list[float] = []
    for sid in ids:
        mine = [r.captured_at - (r.pts or 0.0) for r in sink.results if r.source == sid]
        if mine:
            first = min(mine)
            behind += [(v - first) * 1000.0 for v in mine]
    snap = report.snapshot
    metrics = report.metrics
    return PipelineRun(
        window_rate=len(in_window) / span,
        per_source_rates=per_source,
        processed=sum(s.processed for s in snap.sources),
        sampled=sum(s.sampled for s in snap.sources),
        dropped=sum(s.dropped for s in snap.sources),
        age_p50=_pct(ages, 50),
        age_p95=_pct(ages, 95),
        behind_p95=_pct(behind, 95),
        fill=metrics.frames / metrics.batches if metrics.batches else 0.0,
        inference_p50=snap.inference_p50_ms,
        wall_s=wall,
        cpu_s=cpu,
    )


def pipeline_table(configs: list[tuple[int, int]], runs: dict[tuple[int, int], list[PipelineRun]], fps: float) -> str:
    cores = len(os.sched_getaffinity(0))
    lines = [
        "| sources | batch | ideal results/s | results/s | vs ideal | per source results/s (slowest–fastest) "
        "| processed / sampled | dropped | age p50 ms | age p95 ms | behind real time at decode p95 ms "
        f"| frames per batch | inference ms per batch p50 | run wall s | CPU % of one core | CPU % of {cores} cores |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, b in configs:
        rs = runs[(n, b)]

        def med(values: list[float]) -> float:
            return statistics.median(values)

        ideal = n * fps
        rate = med([r.window_rate for r in rs])
        slowest = med([min(r.per_source_rates) for r in rs])
        fastest = med([max(r.per_source_rates) for r in rs])
        cpu_pct = med([100.0 * r.cpu_s / r.wall_s for r in rs])
        lines.append(
            f"| {n} | {b} | {ideal:.0f} | {rate:.1f} | {rate / ideal:.2f} "
            f"| {rate / n:.2f} ({slowest:.2f}–{fastest:.2f}) "
            f"| {med([r.processed for r in rs]):.0f} / {med([r.sampled for r in rs]):.0f} "
            f"| {med([r.dropped for r in rs]):.0f} | {med([r.age_p50 for r in rs]):.0f} "
            f"| {med([r.age_p95 for r in rs]):.0f} | {med([r.behind_p95 for r in rs]):.0f} "
            f"| {med([r.fill for r in rs]):.2f} | {med([r.inference_p50 for r in rs]):.1f} "
            f"| {med([r.wall_s for r in rs]):.2f} | {cpu_pct:.0f} | {cpu_pct / cores:.0f} |"
        )
    return "\n".join(lines)


def plot_streams(
    configs: list[tuple[int, int]], runs: dict[tuple[int, int], list[PipelineRun]], fps: float, path: Path
) -> None:
    """Results/s against sources, one line per batch size, with the ideal (every sampled frame) dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    counts = sorted({n for n, _ in configs})
    ax.plot(counts, [n * fps for n in counts], "k--", label=f"ideal ({fps:g} fps per source)")
    for b in sorted({b for _, b in configs}):
        rates = [statistics.median(r.window_rate for r in runs[(n, b)]) for n in counts]
        ax.plot(counts, rates, "o-", label=f"streamprep, batch {b}")
    ax.set_xlabel("live 720p sources")
    ax.set_ylabel("results per second")
    ax.set_title("Sustained results against the number of streams")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def clip_desc(clip: Path) -> str:
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
        return (
            f"{stream.codec_context.name} {stream.width}x{stream.height}, {float(stream.average_rate or 0):g} fps, "
            f"{stream.frames} frames, {seconds:g} s"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="video file (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=20, help="inference rounds (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per turn (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="pipeline runs per configuration (default: %(default)s)")
    parser.add_argument("--sources", type=_ints, default=(1, 4, 8), help="source counts (default: 1,4,8)")
    parser.add_argument("--batches", type=_ints, default=(1, 4), help="pipeline model batches (default: 1,4)")
    parser.add_argument("--fps", type=float, default=5.0, help="sampling rate per source (default: %(default)s)")
    parser.add_argument("--part", choices=("all", "inference", "pipeline"), default="all")
    parser.add_argument("--plot", type=Path, help="also draw results/s against the number of sources (PNG)")
    args = parser.parse_args(argv)
    if min(args.rounds, args.runs, args.repeats) < 1 or args.fps <= 0:
        parser.error("--rounds, --runs and --repeats must be >= 1 and --fps > 0")
    clip: Path = args.clip.resolve()
    if not clip.is_file():
        parser.error(f"no such clip: {clip}")
    fps: float = args.fps

    measured = revision()
    load_before = load_average()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    t_start = time.monotonic()
    tables: list[str] = []

    if args.part in ("all", "inference"):
        frames = sample_frames(clip, max(BATCHES))
        cases, notes = batch_cases(frames)
        threads = ModelConfig().threads
        run_inference(cases, args.rounds, args.runs)
        samples = args.rounds * args.runs
        tables.append(
            "Inference throughput per batch size: streamprep's load_model + engine.run on a tensor filled by "
            f"Preprocessor.into from {max(BATCHES)} frames of the clip (ONNX Runtime CPUExecutionProvider, "
            f"model.threads={threads}: ONNX Runtime's default intra-op pool, one thread per core); medians of "
            f"{samples} runs per row ({args.rounds} rounds x {args.runs}, each turn after one untimed run, "
            "batch sizes round-robin)\n" + "".join(f"\nnote: {n}" for n in notes) + "\n\n" + inference_table(cases)
        )

    if args.part in ("all", "pipeline"):
        configs = [(n, b) for n in args.sources for b in args.batches]
        models = {b: load_model(parse({"model": {"batch": b, "max_wait_ms": MAX_WAIT_MS}}).model) for b in args.batches}
        runs: dict[tuple[int, int], list[PipelineRun]] = {c: [] for c in configs}
        for r in range(args.repeats):
            shift = r % len(configs)
            for n, b in configs[shift:] + configs[:shift]:
                runs[(n, b)].append(run_pipeline(clip, n, fps, models[b], b))
                print(
                    f"pipeline: round {r + 1}/{args.repeats}: {n} sources, batch {b} done", file=sys.stderr, flush=True
                )
        if args.plot is not None:
            plot_streams(configs, runs, fps, args.plot)
        tables.append(
            f"End-to-end: Pipeline with N real-time sources ({clip.name} each, sampled at {fps:g} fps), default "
            f"model ({models[args.batches[0]].name}), max_wait_ms {MAX_WAIT_MS:g}; medians of {args.repeats} "
            f"whole-clip runs per row, configurations round-robin; results/s counted {WINDOW_S[0]:g}–{WINDOW_S[1]:g} s "
            "after the run started; the rest over the whole run\n\n" + pipeline_table(configs, runs, fps)
        )

    print(f"date: {started}; bench took {time.monotonic() - t_start:.0f} s")
    print(f"clip: {clip.relative_to(ROOT) if clip.is_relative_to(ROOT) else clip} ({clip_desc(clip)})")
    print(f"streamprep: {measured}")
    print(f"machine: {machine()}")
    print(f"libraries: {versions()}")
    print(f"load average (1/5/15 min): {load_before} before, {load_average()} after")
    for text in tables:
        print()
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
