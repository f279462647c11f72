"""Replay throughput: how fast streamprep replays a video file, next to plain decoding and tutorial code.

What it measures, on one clip (default ``recordings/pan_1080p.mp4``, 1920x1080 H.264, 30 fps, 300 frames),
each method decoding the whole file once per repeat:

1. ``decode only (PyAV)``: ``av.open``, ``stream.thread_type = "AUTO"``, decode every frame, no pixel
   conversion. The baseline: every ratio is input frames/s divided by this method's input frames/s.
2. ``streamprep replay, no inference``: streamprep's ``FileSource`` (``frames()``, sampling to ``--fps``)
   feeding the default model's ``Preprocessor`` (``into(frame.image, tensor[0], ...)`` with the frame's
   pixel format, matrix and range, called inline in the consuming coroutine, one batch-of-1 tensor
   reused), under ``asyncio.run``. No ONNX Runtime. Video colour is converted exactly as FFmpeg does (the
   default); the row ``... no inference, fast colour`` is the same with ``color_conversion = "fast"``
   (Y, U, V planes resized to model size first).
3. ``streamprep replay, default model``: the full ``streamprep.pipeline.Pipeline`` with
   ``parse({"sources": [clip], "fps": fps})`` and the default model (SSD MobileNet v2 FPNLite 256 int8),
   delivering to an in-bench sink that only counts results, under ``asyncio.run``.
4. ``naive tutorial loop``: ``cv2.VideoCapture``, ``read()`` every frame; every Nth frame (N = clip fps /
   ``--fps``, rounded: 6 for 30 fps at 5 fps) ``cv2.resize`` to 640x640, ``cvtColor`` BGR2RGB, ``/ 255.0``
   (float64), subtract the ImageNet mean and divide by its std in float64, transpose to CHW,
   ``np.expand_dims``, ``.astype(np.float32)``. No model.
5. ``naive tutorial loop + default model``: the same capture and sampling; each sampled frame is
   ``cv2.resize`` to 256x256, ``cvtColor`` BGR2RGB, ``np.expand_dims`` (uint8 NHWC, what the SSD takes) and
   ``session.run`` of an ``onnxruntime.InferenceSession`` on the bundled SSD with default session options
   (CPUExecutionProvider); outputs are not decoded into boxes.

Loading models and creating ONNX Runtime sessions happen once, before timing. One untimed warm-up round
runs every method first (page cache, lazy imports, allocator). Then ``--repeats`` rounds run the methods
round-robin, so machine noise hits all of them alike. Reported per method: frames decoded, frames output
(sampled and processed; none for decode only), median wall seconds, median input frames/s (decoded / wall),
median output frames/s, the ratio of median input frames/s to decode only, and the median CPU seconds the
process spent per pass (all threads: FFmpeg's, OpenCV's, ONNX Runtime's, whose idle workers spin) with
its ratio to decode only (decode-only CPU / method CPU, so 1.00x means no CPU beyond decoding). On a small
shared machine the CPU columns are the steadier measure of cost when other work competes for the cores:
the wall-clock ratio then depends on whether decoding got both cores in its runs.

Run from the repository root::

    .venv/bin/python bench/replay_throughput.py [--clip PATH] [--repeats 5] [--fps 5]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from benchenv import load_average, machine, revision, versions

from streamprep.config import ModelConfig, parse
from streamprep.frames import Frame
from streamprep.model import LoadedModel, load_model
from streamprep.pipeline import Pipeline
from streamprep.preprocess.spec import SpecOverrides
from streamprep.sinks.memory import MemorySink
from streamprep.sources.file import FileSource

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CLIP = ROOT / "recordings" / "pan_1080p.mp4"
SSD = ROOT / "streamprep" / "models" / "ssd_mobilenet_v2_fpnlite_256_int8.onnx"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float64)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float64)


@dataclass(frozen=True)
class Run:
    """One timed pass over the clip: frames decoded, frames output (``None``: the method outputs none)."""

    decoded: int
    output: int | None
    wall_s: float
    cpu_s: float = 0.0


Method = Callable[[], Run]


def timed(method: Method) -> Run:
    """Run ``method`` once and add the CPU time the whole process (every thread) spent in it."""
    c0 = time.process_time()
    run = method()
    return dataclasses.replace(run, cpu_s=time.process_time() - c0)


def decode_only(clip: Path) -> Run:
    t0 = time.perf_counter()
    decoded = 0
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            decoded += 1
    return Run(decoded, None, time.perf_counter() - t0)


def _pixel_format(frame: Frame) -> tuple[Any, ...]:
    """``into``'s extra arguments as the pipeline passes them: the frame's pixel format, region (none),
    colour matrix and range; fewer for frames of streamprep versions that carry fewer.

    Frames that carry no ``pixel_format`` (streamprep before its I420 path) are always BGR.
    """
    fmt = getattr(frame, "pixel_format", None)
    if fmt is None:
        return ()
    if not hasattr(frame, "color_matrix"):
        return (fmt,)
    return (fmt, None, frame.color_matrix, frame.color_range)


def streamprep_no_inference(clip: Path, fps: float, model: LoadedModel) -> Run:
    pre = model.preprocessor
    into: Callable[..., Any] = pre.into
    tensor = pre.new_batch(1)

    async def replay() -> Run:
        source = FileSource("bench", clip, fps)
        output = 0
        t0 = time.perf_counter()
        async for frame in source.frames():
            into(frame.image, tensor[0], *_pixel_format(frame))
            output += 1
        return Run(source.decoded, output, time.perf_counter() - t0)

    return asyncio.run(replay())


def streamprep_pipeline(clip: Path, fps: float, model: LoadedModel) -> Run:
    cfg = parse({"sources": [str(clip)], "fps": fps})
    sink = MemorySink(keep=0)

    async def replay() -> Run:
        t0 = time.perf_counter()
        await sink.open()
        pipeline = Pipeline(cfg, model, [sink])
        report = await pipeline.run()
        wall = time.perf_counter() - t0
        if report.failures:
            raise RuntimeError(f"pipeline failed: {report.failures}")
        decoded = sum(s.decoded for s in report.snapshot.sources)
        return Run(decoded, sink.count, wall)

    return asyncio.run(replay())


def _sample_step(capture: Any, fps: float) -> int:
    clip_fps = float(capture.get(cv2.CAP_PROP_FPS)) or 30.0
    return max(1, round(clip_fps / fps))


def tutorial_preprocess(frame: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """Preprocessing as tutorials write it: float64 throughout, float32 at the end."""
    image = cv2.resize(frame, (640, 640))
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    scaled = image / 255.0
    scaled = (scaled - IMAGENET_MEAN) / IMAGENET_STD
    chw = scaled.transpose(2, 0, 1)
    return np.expand_dims(chw, axis=0).astype(np.float32)


def naive_loop(clip: Path, fps: float, session: Any | None = None) -> Run:
    """The tutorial loop: read every frame, work on every ``step``-th. Without a session it preprocesses
    the tutorial way; with one it resizes, swaps to RGB and runs the model (uint8 NHWC input)."""
    input_name = session.get_inputs()[0].name if session is not None else ""
    t0 = time.perf_counter()
    capture = cv2.VideoCapture(str(clip))
    if not capture.isOpened():
        raise RuntimeError(f"cv2.VideoCapture cannot open {clip}")
    step = _sample_step(capture, fps)
    decoded = output = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded += 1
        if (decoded - 1) % step:
            continue
        if session is None:
            tutorial_preprocess(frame)
        else:
            image = cv2.cvtColor(cv2.resize(frame, (256, 256)), cv2.COLOR_BGR2RGB)
            session.run(None, {input_name: np.expand_dims(image, axis=0)})
        output += 1
    capture.release()
    return Run(decoded, output, time.perf_counter() - t0)


def _fmt_rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def table(names: list[str], runs: dict[str, list[Run]]) -> str:
    base_fps = statistics.median(r.decoded / r.wall_s for r in runs[names[0]])
    base_cpu = statistics.median(r.cpu_s for r in runs[names[0]])
    lines = [
        "| method | frames decoded | frames output | median wall s | median input fps | median output fps "
        "| input fps vs decode only | median CPU s | CPU vs decode only |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        rs = runs[name]
        decoded = rs[-1].decoded
        output = rs[-1].output
        wall = statistics.median(r.wall_s for r in rs)
        cpu = statistics.median(r.cpu_s for r in rs)
        in_fps = statistics.median(r.decoded / r.wall_s for r in rs)
        out_fps = None if output is None else statistics.median((r.output or 0) / r.wall_s for r in rs)
        lines.append(
            f"| {name} | {decoded} | {'—' if output is None else output} | {wall:.3f} | {in_fps:.1f} "
            f"| {_fmt_rate(out_fps)} | {in_fps / base_fps:.2f}x | {cpu:.3f} | {base_cpu / cpu:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="video file (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per method (default: %(default)s)")
    parser.add_argument("--fps", type=float, default=5.0, help="sampling rate (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.fps <= 0:
        parser.error("--repeats must be >= 1 and --fps > 0")
    clip: Path = args.clip.resolve()
    if not clip.is_file():
        parser.error(f"no such clip: {clip}")
    fps: float = args.fps

    measured = revision()
    model = load_model(ModelConfig())
    fast = load_model(ModelConfig(preprocess=SpecOverrides(color_conversion="fast")))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(SSD), sess_options=options, providers=["CPUExecutionProvider"])

    methods: dict[str, Method] = {
        "decode only (PyAV)": lambda: decode_only(clip),
        "streamprep replay, no inference": lambda: streamprep_no_inference(clip, fps, model),
        "streamprep replay, no inference, fast colour": lambda: streamprep_no_inference(clip, fps, fast),
        "streamprep replay, default model": lambda: streamprep_pipeline(clip, fps, model),
        "naive tutorial loop": lambda: naive_loop(clip, fps),
        "naive tutorial loop + default model": lambda: naive_loop(clip, fps, session),
    }
    names = list(methods)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    load_before = load_average()
    for method in methods.values():
        method()
    for i in range(args.repeats):
        for name in names:
            runs[name].append(timed(methods[name]))
        print(f"round {i + 1}/{args.repeats} done", file=sys.stderr, flush=True)

    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate
        desc = f"{stream.codec_context.name} {stream.width}x{stream.height}, {float(rate or 0):g} fps"
    print(f"clip: {clip.relative_to(ROOT) if clip.is_relative_to(ROOT) else clip} ({desc}); sampling --fps {fps:g}")
    print(f"streamprep: {measured}")
    print(f"machine: {machine()}")
    print(f"libraries: {versions()}")
    print(f"repeats: {args.repeats} per method, round-robin, after one untimed warm-up round")
    print(f"load average (1/5/15 min): {load_before} before, {load_average()} after")
    print()
    print(table(names, runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
