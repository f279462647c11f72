"""Replay throughput: how fast streamprep replays a video file, next to plain decoding and tutorial code.

What it measures, on one clip (default ``recordings/pan_1080p.mp4``, 1920x1080 H.264, 30 fps, 300 frames,
keyframes at most 2 s apart), each method going through the whole file once per repeat, at each sampling
rate of ``--fps`` (default ``5,1``: one table per rate, all from the same run):

1. ``decode only (PyAV)``: ``av.open``, ``stream.thread_type = "AUTO"``, decode every frame, no pixel
   conversion. The baseline: every ratio is against this method (the same runs serve every rate).
2. ``streamprep replay, no inference``: streamprep's ``FileSource`` (``frames()``, sampling to the rate,
   leaving undecoded what sampling will not select: the default) feeding the default model's
   ``Preprocessor`` (``into(frame.image, tensor[0])``, called inline in the consuming coroutine, one
   batch-of-1 tensor reused), under ``asyncio.run``. No ONNX Runtime.
   Video colour is converted exactly as FFmpeg does (the default); ``... no inference, fast colour`` is the
   same with ``color_conversion = "fast"`` (Y, U, V planes resized to model size first).
3. ``streamprep replay, no inference, decoding every frame``: the same with ``skip_frames = false``
   (streamprep before frame skipping).
4. ``streamprep replay, keyframes mode``: the same with ``sample = "keyframes"`` (the first keyframe at or
   after each slot boundary; only those keyframes are decoded). Selects other frames than the rest.
5. ``streamprep replay, default model``: the full ``streamprep.run.pipeline.Pipeline`` with
   ``parse({"sources": [clip], "fps": fps})`` and the default model (SSD MobileNet v2 FPNLite 256 int8),
   delivering to an in-bench sink that only counts results, under ``asyncio.run``.
6. ``naive tutorial loop``: ``cv2.VideoCapture``, ``read()`` every frame; every Nth frame (N = clip fps /
   rate, rounded: 6 for 30 fps at 5 fps) ``cv2.resize`` to 640x640, ``cvtColor`` BGR2RGB, ``/ 255.0``
   (float64), subtract the ImageNet mean and divide by its std in float64, transpose to CHW,
   ``np.expand_dims``, ``.astype(np.float32)``. No model.
7. ``naive tutorial loop + default model``: the same capture and sampling; each sampled frame is
   ``cv2.resize`` to 256x256, ``cvtColor`` BGR2RGB, ``np.expand_dims`` (uint8 NHWC, what the SSD takes) and
   ``session.run`` of an ``onnxruntime.InferenceSession`` on the bundled SSD with default session options
   (CPUExecutionProvider); outputs are not decoded into boxes.

Before timing, the bench checks, for each rate, that streamprep's replay (with frame skipping) selects
exactly the frames that decoding every frame with PyAV and applying streamprep's sampler selects: same
pts, same pixels (digest of each selected frame); it stops with an error if not.

Loading models and creating ONNX Runtime sessions happen once, before timing. One untimed warm-up round
runs every method first (page cache, lazy imports, allocator). Then ``--repeats`` rounds run the methods
round-robin, so machine noise hits all of them alike. Reported per method: frames decoded, frames output
(sampled and processed; none for decode only), median wall seconds, median clip frames/s (frames of the
clip gone through, decoded or not, / wall), median output frames/s, the ratio of median clip frames/s to
decode only, and the median CPU seconds the process spent per pass (all threads: FFmpeg's, OpenCV's,
ONNX Runtime's, whose idle workers spin) with its ratio to decode only (decode-only CPU / method CPU, so
2.00x means half the CPU of decoding every frame). On a small shared machine the CPU columns are the
steadier measure of cost when other work competes for the cores: the wall-clock ratio then depends on
whether decoding got both cores in its runs.

``--input`` picks the tensor the no-inference methods (2-4) write: ``256-uint8`` (the default: the
default model's own input, 1x256x256x3 uint8 RGB NHWC) or ``640-float32`` (1x3x640x640 float32 NCHW,
ImageNet mean/std: the tutorial loop's tensor, the default model's spec with that size, dtype, layout and
scaling). The ratios depend on it: a 640x640 float32 tensor costs several times the work of a 256x256 uint8
one per output frame, which dilutes what leaving frames undecoded saves. With ``640-float32`` the methods
that run the default model (5 and 7) are left out (it takes 256x256 uint8). ``--methods`` runs only some
methods (comma-separated keys: ``replay,fast,every,keyframes,pipeline,naive,naive-model``; decode only
always runs), to keep a run short on a loaded machine.

Run from the repository root::

    .venv/bin/python bench/replay_throughput.py [--clip PATH] [--repeats 5] [--fps 5,1] [--input 256-uint8]
        [--methods replay,every]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from benchenv import load_average, machine, revision, versions

from streamprep.preprocess import spec as spec_mod
from streamprep.preprocess.kernels import Preprocessor
from streamprep.preprocess.spec import DType, Layout, Scaling, SpecOverrides
from streamprep.sinks.memory import MemorySink
from streamprep.sources.file import FileSource, to_image
from streamprep.sources.skipping import DecodeOptions, SampleMode

try:
    from streamprep.config.schema import parse
    from streamprep.inference.model import LoadedModel, load_model
    from streamprep.inference.settings import ModelConfig
    from streamprep.run.pipeline import Pipeline
    from streamprep.sources.sampling import Sampler
    from streamprep.values.frames import Frame
except ImportError:  # before the reshape into layer folders (0d4bbb7 and earlier): measure the old code too
    from streamprep.frames import Frame  # type: ignore[import-not-found,no-redef]
    from streamprep.model import LoadedModel, load_model  # type: ignore[import-not-found,no-redef]
    from streamprep.pipeline import Pipeline  # type: ignore[import-not-found,no-redef]
    from streamprep.sampling import Sampler  # type: ignore[import-not-found,no-redef]

    from streamprep.config import ModelConfig, parse  # type: ignore[attr-defined,no-redef]

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


def streamprep_no_inference(clip: Path, fps: float, model: LoadedModel, decoding: DecodeOptions | None = None) -> Run:
    pre = model.preprocessor
    into: Callable[..., Any] = pre.into
    tensor = pre.new_batch(1)

    async def replay() -> Run:
        kwargs: dict[str, Any] = {} if decoding is None else {"decoding": decoding}  # older FileSource: none
        source = FileSource("bench", clip, fps, **kwargs)
        output = 0
        t0 = time.perf_counter()
        async for frame in source.frames():
            into(frame.image, tensor[0], *_pixel_format(frame))
            output += 1
        return Run(source.counts.decoded, output, time.perf_counter() - t0)

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


def _digest(image: Any) -> str:
    return hashlib.md5(memoryview(image)).hexdigest()


def selected_by_decoding_everything(clip: Path, fps: float) -> list[tuple[Fraction, str]]:
    """PyAV decoding every frame, streamprep's sampler on every frame's pts: (pts, pixel digest) kept."""
    sampler = Sampler(fps)
    kept = []
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        time_base = stream.time_base or Fraction(1, 90000)
        for frame in container.decode(stream):
            pts = Fraction(frame.pts or 0) * time_base
            if sampler.keep(pts):
                kept.append((pts, _digest(to_image(frame)[0])))
    return kept


def selected_by_streamprep(clip: Path, fps: float, decoding: DecodeOptions) -> tuple[list[tuple[Fraction, str]], int]:
    async def replay() -> tuple[list[tuple[Fraction, str]], int]:
        source = FileSource("bench", clip, fps, decoding=decoding)
        kept = [(Fraction(f.pts or 0).limit_denominator(1 << 20), _digest(f.image)) async for f in source.frames()]
        return kept, source.counts.decoded

    return asyncio.run(replay())


def clip_facts(clip: Path) -> tuple[str, int, float]:
    """A description, the number of frames, and the longest gap between keyframes in seconds."""
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        keys = []
        frames = 0
        for packet in container.demux(stream):
            if packet.size:
                frames += 1
                if packet.is_keyframe and packet.pts is not None:
                    keys.append(float(packet.pts * (stream.time_base or Fraction(1, 90000))))
        rate = stream.average_rate
        desc = f"{stream.codec_context.name} {stream.width}x{stream.height}, {float(rate or 0):g} fps"
    keys.sort()
    gaps = [b - a for a, b in itertools.pairwise(keys)]
    return desc, frames, max(gaps, default=0.0)


def _fmt_rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def table(names: list[str], runs: dict[str, list[Run]], clip_frames: int) -> str:
    base_fps = statistics.median(clip_frames / r.wall_s for r in runs[names[0]])
    base_cpu = statistics.median(r.cpu_s for r in runs[names[0]])
    lines = [
        "| method | frames decoded | frames output | median wall s | median clip fps | median output fps "
        "| clip fps vs decode only | median CPU s | CPU vs decode only |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        rs = runs[name]
        decoded = rs[-1].decoded
        output = rs[-1].output
        wall = statistics.median(r.wall_s for r in rs)
        cpu = statistics.median(r.cpu_s for r in rs)
        clip_fps = statistics.median(clip_frames / r.wall_s for r in rs)
        out_fps = None if output is None else statistics.median((r.output or 0) / r.wall_s for r in rs)
        lines.append(
            f"| {name} | {decoded} | {'—' if output is None else output} | {wall:.3f} | {clip_fps:.1f} "
            f"| {_fmt_rate(out_fps)} | {clip_fps / base_fps:.2f}x | {cpu:.3f} | {base_cpu / cpu:.2f}x |"
        )
    return "\n".join(lines)


INPUTS = ("256-uint8", "640-float32")
METHOD_KEYS = ("replay", "fast", "every", "keyframes", "pipeline", "naive", "naive-model")
NEEDS_MODEL_INPUT = ("pipeline", "naive-model")  # they run the default model, which takes 256x256 uint8


def with_input(model: LoadedModel, name: str) -> LoadedModel:
    """``model`` whose preprocessor writes the tensor ``name`` (see ``--input``) instead of the model's."""
    if name == "256-uint8":
        return model
    spec = model.spec.model_copy(
        update={
            "width": 640,
            "height": 640,
            "dtype": DType.FLOAT32,
            "layout": Layout.NCHW,
            "scaling": Scaling.MEAN_STD,
            "mean": spec_mod.IMAGENET_MEAN,
            "std": spec_mod.IMAGENET_STD,
        }
    )
    return dataclasses.replace(model, spec=spec, preprocessor=Preprocessor(spec))


def _methods(text: str) -> list[str]:
    keys = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [k for k in keys if k not in METHOD_KEYS]
    if not keys or unknown:
        raise argparse.ArgumentTypeError(f"methods are a comma-separated subset of {','.join(METHOD_KEYS)}")
    return keys


def _rates(text: str) -> list[float]:
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of rates: {text!r}") from None
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError("rates must be > 0")
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="video file (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per method (default: %(default)s)")
    parser.add_argument("--fps", type=_rates, default=[5.0, 1.0], help="sampling rates, comma-separated (default: 5,1)")
    parser.add_argument("--input", choices=INPUTS, default=INPUTS[0], help="tensor written (default: %(default)s)")
    parser.add_argument("--methods", type=_methods, default=list(METHOD_KEYS), help="methods run (default: all)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    clip: Path = args.clip.resolve()
    if not clip.is_file():
        parser.error(f"no such clip: {clip}")
    rates: list[float] = args.fps

    measured = revision()
    desc, clip_frames, key_gap = clip_facts(clip)
    identity: list[str] = []
    for fps in rates:
        expected = selected_by_decoding_everything(clip, fps)
        got, decoded = selected_by_streamprep(clip, fps, DecodeOptions())
        if got != expected:
            print(
                f"streamprep's replay at {fps:g} fps selected other frames than decoding every frame "
                f"({len(got)} vs {len(expected)}): frame skipping is broken",
                file=sys.stderr,
            )
            return 1
        identity.append(f"{fps:g} fps: {len(got)} of {len(expected)} identical ({decoded} frames decoded)")

    model = with_input(load_model(ModelConfig()), args.input)
    fast = with_input(load_model(ModelConfig(preprocess=SpecOverrides(color_conversion="fast"))), args.input)
    chosen = [k for k in args.methods if not (args.input != "256-uint8" and k in NEEDS_MODEL_INPUT)]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(SSD), sess_options=options, providers=["CPUExecutionProvider"])

    baseline = "decode only (PyAV)"
    per_rate: dict[float, dict[str, Method]] = {
        fps: {
            name: method
            for key, name, method in (
                ("replay", "streamprep replay, no inference", partial(streamprep_no_inference, clip, fps, model)),
                (
                    "fast",
                    "streamprep replay, no inference, fast colour",
                    partial(streamprep_no_inference, clip, fps, fast),
                ),
                (
                    "every",
                    "streamprep replay, no inference, decoding every frame",
                    partial(streamprep_no_inference, clip, fps, model, DecodeOptions(skip=False)),
                ),
                (
                    "keyframes",
                    "streamprep replay, keyframes mode",
                    partial(streamprep_no_inference, clip, fps, model, DecodeOptions(sample=SampleMode.KEYFRAMES)),
                ),
                ("pipeline", "streamprep replay, default model", partial(streamprep_pipeline, clip, fps, model)),
                ("naive", "naive tutorial loop", partial(naive_loop, clip, fps)),
                ("naive-model", "naive tutorial loop + default model", partial(naive_loop, clip, fps, session)),
            )
            if key in chosen
        }
        for fps in rates
    }
    base_runs: list[Run] = []
    runs: dict[float, dict[str, list[Run]]] = {fps: {name: [] for name in methods} for fps, methods in per_rate.items()}
    load_before = load_average()
    decode_only(clip)
    for methods in per_rate.values():
        for method in methods.values():
            method()
    for i in range(args.repeats):
        base_runs.append(timed(partial(decode_only, clip)))
        for fps, methods in per_rate.items():
            for name, method in methods.items():
                runs[fps][name].append(timed(method))
        print(f"round {i + 1}/{args.repeats} done", file=sys.stderr, flush=True)

    where = clip.relative_to(ROOT) if clip.is_relative_to(ROOT) else clip
    print(f"clip: {where} ({desc}, {clip_frames} frames, keyframes at most {key_gap:g} s apart)")
    print(f"streamprep: {measured}")
    print(f"machine: {machine()}")
    print(f"libraries: {versions()}")
    shape = "x".join(str(n) for n in model.preprocessor.new_batch(1).shape)
    print(f"tensor written by the no-inference methods (--input {args.input}): {shape} {model.preprocessor.dtype}")
    print(f"repeats: {args.repeats} per method, round-robin, after one untimed warm-up round")
    print(f"load average (1/5/15 min): {load_before} before, {load_average()} after")
    print(f"selected frames vs PyAV decoding every frame (pts and pixels): {'; '.join(identity)}")
    for fps in rates:
        print()
        print(f"sampling --fps {fps:g}")
        print()
        print(table([baseline, *per_rate[fps]], {baseline: base_runs, **runs[fps]}, clip_frames))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
