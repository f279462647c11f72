"""Live frame age: how far behind real time a frame is when inference on it starts, with slow inference.

The claim under test (issue 4): with a 30 fps live RTSP source and inference slower than the frame rate,
streamprep's frame age at inference stays bounded (p99 <= inference median + 2 frame intervals) over a
run of at least 30 s, while the naive ``cv2.VideoCapture`` read loop falls further and further behind.

Source: a real RTSP server (gst-rtsp-server, ``tests/servers/rtsp_server.py --pattern --size 1280x720
--fps 30``, run with Debian's ``/usr/bin/python3`` exactly as ``tests/conftest.py`` does: free loopback
port, wait for ``READY``). It encodes a live test pattern with x264 whose pts follow the server's clock.
Each method gets a fresh server, killed after its run.

Model: a synthetic ONNX model built here with ``onnx.helper`` (float32 NCHW input ``[1, 3, 320, 320]``,
a stack of real 3x3 Conv + Relu layers of 32 channels, global average pool, MatMul to 10 outputs). The
number of Conv layers is calibrated at start so that one ONNX Runtime run takes about ``--target-ms``
(default 70 ms, i.e. slower than the 33.3 ms frame interval) on this machine; the calibrated median is
printed. It is saved in a temporary directory with a ``.streamprep.json`` sidecar (RGB, [0, 1]).

Methods:

1. ``streamprep``: ``streamprep.pipeline.Pipeline`` with that RTSP URL as its only source, no ``fps``
   sampling (every decoded frame is a candidate; the live queue drops the oldest), the synthetic model with
   ``decoder = "raw"``, and an in-bench sink that keeps every result.
2. ``naive loop``: ``cv2.VideoCapture(url, cv2.CAP_FFMPEG)`` with OpenCV's default options; ``read()`` →
   ``cv2.resize`` to 320x320, ``cvtColor`` BGR2RGB, ``/ 255.0``, transpose to CHW, add the batch axis →
   ``session.run`` on an ONNX Runtime session of the same model with default options → repeat.

Frame age at inference start, per inferred frame::

    age = (wall time inference of the frame starts - wall time the first frame arrived)
          - (frame pts - first frame pts)

"Arrived" is when the frame was decoded (streamprep: ``Result.captured_at``; naive: when ``read()``
returned). streamprep's inference start is derived from what each result carries: ``captured_at +
timings.age_ms / 1000`` (``age_ms`` runs from decode to the start of its batch's inference, on the
monotonic clock). As a cross-check, the engine the pipeline calls is an ``OnnxEngine`` subclass that
stamps the wall time when each run starts; the median and largest difference between the two are printed.
The naive loop stamps the wall time just before ``session.run``; its pts is ``cv2.CAP_PROP_POS_MSEC``.
Frames whose inference starts more than ``--seconds`` after the first arrival are not counted.

Reported per method: frames inferred, frames decoded up to the last inferred one, stream seconds covered,
inference ms median (during the run), age at decode p50, frame age p50/p99/max, median age of the frames
inferred in the first and in the last 5 s, the bound (inference median + 2 x 33.3 ms) and whether p99 is
within it. Also the CPU the RTSP server used, the machine and the library versions.

Run from the repository root (about 2 x ``--seconds`` plus ~20 s of calibration and set-up)::

    .venv/bin/python bench/live_frame_age.py [--seconds 30] [--target-ms 70]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from benchenv import ROOT, load_average, machine
from onnx import TensorProto, helper, numpy_helper

from streamprep.config import parse
from streamprep.frames import Result
from streamprep.inference import OnnxEngine, Tensor
from streamprep.model import load_model
from streamprep.pipeline import Pipeline
from streamprep.sinks.memory import MemorySink

sys.path.insert(0, str(ROOT / "tests"))
from servers.rtsp import SYSTEM_PYTHON, RtspServer, free_port

FPS = 30
FRAME_INTERVAL_MS = 1000.0 / FPS
INPUT_SIDE = 320
CHANNELS = 32
WINDOW_S = 5.0
INPUT_NAME = "images"
PATTERN_ARGS = ("--pattern", "--size", "1280x720", "--fps", str(FPS))


# -- the synthetic slow model


def build_model(layers: int) -> bytes:
    """float32 [1,3,S,S] → (layers + 1) x (3x3 Conv 32 ch + Relu) → GlobalAveragePool → MatMul → [1,10]."""
    rng = np.random.default_rng(0)
    nodes: list[onnx.NodeProto] = []
    weights: list[onnx.TensorProto] = []
    previous, in_channels = INPUT_NAME, 3
    for i in range(layers + 1):
        scale = np.sqrt(2.0 / (in_channels * 9))
        w = (rng.standard_normal((CHANNELS, in_channels, 3, 3)) * scale).astype(np.float32)
        weights.append(numpy_helper.from_array(w, f"conv{i}.weight"))
        nodes.append(helper.make_node("Conv", [previous, f"conv{i}.weight"], [f"conv{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"]))
        previous, in_channels = f"relu{i}", CHANNELS
    fc = (rng.standard_normal((CHANNELS, 10)) * 0.1).astype(np.float32)
    weights.append(numpy_helper.from_array(fc, "fc.weight"))
    nodes += [
        helper.make_node("GlobalAveragePool", [previous], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "fc.weight"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "slow_convs",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, INPUT_SIDE, INPUT_SIDE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def session_for(model: bytes | str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def inference_median_ms(model: bytes, runs: int = 15) -> float:
    session = session_for(model)
    x = np.random.default_rng(1).random((1, 3, INPUT_SIDE, INPUT_SIDE), dtype=np.float32)
    for _ in range(3):
        session.run(None, {INPUT_NAME: x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, {INPUT_NAME: x})
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def calibrate(target_ms: float) -> tuple[int, bytes, float]:
    """Conv layers for a run of about ``target_ms``: a line through two sizes, then the chosen one measured."""
    small, large = 1, 4
    t_small = inference_median_ms(build_model(small))
    t_large = inference_median_ms(build_model(large))
    per_layer = max((t_large - t_small) / (large - small), 0.1)
    layers = max(1, round(small + (target_ms - t_small) / per_layer))
    model = build_model(layers)
    return layers, model, inference_median_ms(model, runs=25)


# -- measurements


@dataclass(frozen=True)
class Sample:
    """One inferred frame: stream time, wall time it was decoded, wall time its inference started."""

    pts_s: float
    arrived: float
    infer_start: float
    inference_ms: float


@dataclass
class Measured:
    name: str
    samples: list[Sample]
    decoded: int
    seconds: float
    server_cpu_s: float = 0.0
    load: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)


class StampedEngine(OnnxEngine):
    """The pipeline's engine, stamping the wall time at which each run starts (a cross-check only)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.starts: list[float] = []

    def run(self, tensor: Tensor) -> list[Tensor]:
        self.starts.append(time.time())
        return super().run(tensor)


def inference_start(result: Result) -> float:
    """Wall time inference of ``result``'s frame started, from the fields the result carries."""
    return result.captured_at + result.timings.age_ms / 1000.0


def run_streamprep(model_path: Path, seconds: float) -> Measured:
    server = RtspServer(free_port(), list(PATTERN_ARGS))
    server.start()
    try:
        cfg = parse(
            {
                "sources": [{"url": server.url(), "id": "cam"}],
                "model": {"path": str(model_path), "decoder": "raw"},
            }
        )
        loaded = load_model(cfg.model)
        engine = StampedEngine(model_path)
        engine.select_input(loaded.spec.input_name)
        engine.warm_up(loaded.preprocessor.new_batch(1))
        model = dataclasses.replace(loaded, engine=engine)
        sink = MemorySink()
        cpu0 = server.cpu_seconds()

        async def live() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(Pipeline(cfg, model, [sink], drain_timeout=10).run(stop))
            try:
                deadline = time.monotonic() + 30
                while not sink.results:  # the bench starts its clock at the first result
                    if time.monotonic() > deadline:
                        raise RuntimeError("no result from streamprep within 30 s")
                    await asyncio.sleep(0.05)
                first = sink.results[0].captured_at
                await asyncio.sleep(max(0.0, first + seconds + 0.5 - time.time()))
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)

        asyncio.run(live())
        server_cpu = server.cpu_seconds() - cpu0
    finally:
        server.kill()
    results = list(sink.results)
    if not results or results[0].pts is None:
        raise RuntimeError("streamprep produced no result with a pts")
    arrival0, pts0 = results[0].captured_at, results[0].pts
    samples = [
        Sample(r.pts - pts0, r.captured_at - arrival0, inference_start(r) - arrival0, r.timings.inference_ms)
        for r in results
        if r.pts is not None
    ]
    kept = [s for s in samples if s.infer_start <= seconds]
    measured = Measured("streamprep", kept, decoded=results[len(kept) - 1].frame_index + 1, seconds=seconds)
    measured.server_cpu_s = server_cpu
    if len(samples) != len(results):
        measured.notes.append(f"{len(results) - len(samples)} results without pts left out")
    if len(engine.starts) == len(results):
        diffs = [abs(inference_start(r) - s) * 1000.0 for r, s in zip(results, engine.starts, strict=True)]
        measured.notes.append(
            f"inference start derived from results vs stamped by the engine: |difference| median "
            f"{statistics.median(diffs):.2f} ms, max {max(diffs):.2f} ms over {len(diffs)} frames"
        )
    else:
        measured.notes.append(f"engine ran {len(engine.starts)} times for {len(results)} results: no cross-check")
    head = results[: len(kept)]
    queue = statistics.median(r.timings.queue_ms for r in head)
    pre = statistics.median(r.timings.preprocess_ms for r in head)
    gap = statistics.median(r.timings.age_ms - r.timings.queue_ms - r.timings.preprocess_ms for r in head)
    measured.notes.append(
        f"decode → inference start, medians: queue {queue:.1f} ms (decode → preprocessing starts), "
        f"preprocess {pre:.1f} ms, prepared and waiting for the engine {gap:.1f} ms"
    )
    measured.notes.append(
        f"frames dropped by the live queues (gaps in seq, no --fps sampling): {head[-1].seq + 1 - len(head)}"
    )
    return measured


def udp_sockets() -> int:
    """How many UDP sockets this process holds (to tell which RTSP transport OpenCV chose)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/self/net/udp", "/proc/self/net/udp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as f:
            count += sum(1 for line in f.readlines()[1:] if line.split()[9] in inodes)
    return count


def tutorial_preprocess(frame: npt.NDArray[Any]) -> npt.NDArray[Any]:
    image = cv2.resize(frame, (INPUT_SIDE, INPUT_SIDE))
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    scaled = image.astype(np.float32) / 255.0
    return np.expand_dims(scaled.transpose(2, 0, 1), axis=0)


def run_naive(model_path: Path, seconds: float) -> Measured:
    session = session_for(str(model_path))
    session.run(None, {INPUT_NAME: np.zeros((1, 3, INPUT_SIDE, INPUT_SIDE), np.float32)})
    server = RtspServer(free_port(), list(PATTERN_ARGS))
    server.start()
    samples: list[Sample] = []
    notes: list[str] = []
    try:
        cpu0 = server.cpu_seconds()
        udp_before = udp_sockets()
        capture = cv2.VideoCapture(server.url(), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            raise RuntimeError(f"cv2.VideoCapture cannot open {server.url()}")
        udp = udp_sockets() - udp_before
        notes.append(f"OpenCV's RTSP transport: {'UDP' if udp else 'TCP'} ({udp} UDP sockets opened by the capture)")
        reads = 0
        first: tuple[float, float] | None = None
        while True:
            ok, frame = capture.read()
            arrived = time.time()
            if not ok:
                notes.append(f"read() failed after {reads} frames")
                break
            reads += 1
            pos_s = float(capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
            if first is None:
                first = (arrived, pos_s)
            if arrived - first[0] > seconds:
                break
            tensor = tutorial_preprocess(frame)
            start = time.time()
            if start - first[0] > seconds:
                break
            t0 = time.perf_counter()
            session.run(None, {INPUT_NAME: tensor})
            inference_ms = (time.perf_counter() - t0) * 1000.0
            samples.append(Sample(pos_s - first[1], arrived - first[0], start - first[0], inference_ms))
        capture.release()
        server_cpu = server.cpu_seconds() - cpu0
    finally:
        server.kill()
    return Measured(
        "naive cv2 loop", samples, decoded=len(samples), seconds=seconds, server_cpu_s=server_cpu, notes=notes
    )


# -- the report


@dataclass(frozen=True)
class Row:
    label: str
    values: tuple[str, ...]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def rows(runs: list[Measured]) -> list[Row]:
    def each(fn: Any) -> tuple[str, ...]:
        return tuple(fn(m) for m in runs)

    def ages(m: Measured) -> list[float]:
        return [(s.infer_start - s.pts_s) * 1000.0 for s in m.samples]

    def decode_ages(m: Measured) -> list[float]:
        return [(s.arrived - s.pts_s) * 1000.0 for s in m.samples]

    def window(m: Measured, last: bool) -> str:
        end = max(s.infer_start for s in m.samples)
        lo, hi = (end - WINDOW_S, end) if last else (0.0, WINDOW_S)
        chosen = [(s.infer_start - s.pts_s) * 1000.0 for s in m.samples if lo <= s.infer_start <= hi]
        return f"{statistics.median(chosen):.0f}" if chosen else "—"

    def inference(m: Measured) -> float:
        return statistics.median(s.inference_ms for s in m.samples)

    def bound(m: Measured) -> float:
        return inference(m) + 2 * FRAME_INTERVAL_MS

    def within(m: Measured) -> str:
        p99 = percentile(ages(m), 99)
        return f"{'yes' if p99 <= bound(m) else 'no'} ({p99:.0f} vs {bound(m):.0f})"

    def covered(m: Measured) -> str:
        span = m.samples[-1].pts_s - m.samples[0].pts_s
        wall = m.samples[-1].infer_start - m.samples[0].infer_start
        return f"{span:.1f} in {wall:.1f}"

    return [
        Row("frames inferred", each(lambda m: str(len(m.samples)))),
        Row("frames decoded (up to the last inferred)", each(lambda m: str(m.decoded))),
        Row("inferred per second", each(lambda m: f"{len(m.samples) / m.samples[-1].infer_start:.1f}")),
        Row("stream s covered in wall s", each(covered)),
        Row("inference ms, median (during the run)", each(lambda m: f"{inference(m):.1f}")),
        Row("age at decode ms, p50", each(lambda m: f"{percentile(decode_ages(m), 50):.0f}")),
        Row("frame age at inference ms, p50", each(lambda m: f"{percentile(ages(m), 50):.0f}")),
        Row("frame age at inference ms, p99", each(lambda m: f"{percentile(ages(m), 99):.0f}")),
        Row("frame age at inference ms, max", each(lambda m: f"{max(ages(m)):.0f}")),
        Row(f"frame age ms, median of the first {WINDOW_S:g} s", each(lambda m: window(m, last=False))),
        Row(f"frame age ms, median of the last {WINDOW_S:g} s", each(lambda m: window(m, last=True))),
        Row("bound ms: inference median + 2 × 33.3", each(lambda m: f"{bound(m):.0f}")),
        Row("p99 within the bound", each(within)),
        Row("RTSP server CPU, % of one core", each(lambda m: f"{100 * m.server_cpu_s / m.seconds:.0f}")),
    ]


def windows(m: Measured) -> str:
    """Median frame age in each consecutive window of the run, to show whether it grows."""
    out = []
    start = 0.0
    while start < m.seconds:
        chosen = [(s.infer_start - s.pts_s) * 1000.0 for s in m.samples if start <= s.infer_start < start + WINDOW_S]
        out.append(f"{statistics.median(chosen):.0f}" if chosen else "—")
        start += WINDOW_S
    return ", ".join(out)


def table(runs: list[Measured]) -> str:
    lines = [
        "| | " + " | ".join(m.name for m in runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]
    lines += [f"| {row.label} | " + " | ".join(row.values) + " |" for row in rows(runs)]
    return "\n".join(lines)


def gstreamer_version() -> str:
    probe = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-c",
            "import gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst; Gst.init(None); "
            "print(Gst.version_string())",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.stdout.strip() or "unknown GStreamer"


def opencv_ffmpeg() -> str:
    info = cv2.getBuildInformation()
    codec = next((line.split(":", 1)[1].strip() for line in info.splitlines() if "avcodec:" in line), "?")
    return f"libavcodec {codec}"


def versions() -> str:
    return (
        f"av {av.__version__} (libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}), "
        f"cv2 {cv2.__version__} ({opencv_ffmpeg()}), onnxruntime {ort.__version__}, onnx {onnx.__version__}, "
        f"numpy {np.__version__}, {gstreamer_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=30.0, help="run length per method (default: %(default)s)")
    parser.add_argument(
        "--target-ms", type=float, default=70.0, help="inference time to calibrate the model to (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.seconds < 2 * WINDOW_S or args.target_ms <= FRAME_INTERVAL_MS:
        parser.error(f"--seconds must be >= {2 * WINDOW_S:g} and --target-ms > {FRAME_INTERVAL_MS:.1f}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    seconds: float = args.seconds
    load_before = load_average()
    layers, model_bytes, calibrated_ms = calibrate(args.target_ms)
    print(
        f"model: {layers + 1} Conv 3x3 layers of {CHANNELS} channels at {INPUT_SIDE}x{INPUT_SIDE}, "
        f"inference median {calibrated_ms:.1f} ms alone (target {args.target_ms:g} ms)",
        file=sys.stderr,
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="live_frame_age_") as tmp:
        model_path = Path(tmp) / "slow_convs.onnx"
        model_path.write_bytes(model_bytes)
        sidecar = {"preprocess": {"color": "rgb", "scaling": "unit"}}
        model_path.with_suffix(".streamprep.json").write_text(json.dumps(sidecar))
        runs = []
        for name, method in (("streamprep", run_streamprep), ("naive cv2 loop", run_naive)):
            print(f"running {name} for {seconds:g} s...", file=sys.stderr, flush=True)
            before = load_average()
            measured = method(model_path, seconds)
            measured.load = f"{before} before, {load_average()} after"
            runs.append(measured)
    print(f"date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"machine: {machine()}")
    print(f"libraries: {versions()}")
    print(
        f"source: gst-rtsp-server live test pattern (x264 ultrafast zerolatency), 1280x720 at {FPS} fps, "
        "fresh server per method"
    )
    print(
        f"model: synthetic ONNX, float32 [1,3,{INPUT_SIDE},{INPUT_SIDE}], {layers + 1} Conv 3x3 x {CHANNELS} ch + "
        f"Relu, pool, MatMul; inference median {calibrated_ms:.1f} ms alone before the runs"
    )
    print(
        f"run: {seconds:g} s per method from the first frame; load average (1/5/15 min) {load_before} before, "
        f"{load_average()} after"
    )
    print()
    print(table(runs))
    print()
    for m in runs:
        print(f"- {m.name}: median frame age ms per {WINDOW_S:g} s of the run: {windows(m)}")
        for note in m.notes:
            print(f"- {m.name}: {note}")
        print(f"- {m.name}: load average (1/5/15 min) {m.load}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
