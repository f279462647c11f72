"""Preprocessing speed: one decoded frame into a float32 NCHW RGB tensor, streamprep against the usual ways.

What it measures: the median wall milliseconds per frame to turn one real decoded frame into a
``1×3×S×S`` float32 tensor, RGB, normalised with the ImageNet mean/std (``(x / 255 - mean) / std``), for
sources of 1920×1080 and 1280×720, model sizes S = 224, 320 and 640, and two geometries: ``stretch``
(resize to S×S ignoring aspect) and ``letterbox`` (keep aspect, pad with 114). All resizing is bilinear.

Source images: frame ``--frame`` (default 0) of ``recordings/pan_1080p.mp4``, decoded with PyAV. Its
``yuv420p`` planes (``frame.to_ndarray()``, the decoder's I420 layout) are the YUV source; the BGR source is
FFmpeg's conversion of them (``frame.to_ndarray(format="bgr24")``). The 720p sources are that BGR image
resized with ``cv2.resize(..., INTER_AREA)`` and converted to I420 with ``cv2.cvtColor(..., COLOR_BGR2YUV_I420)``,
and FFmpeg's BGR conversion of that I420.

Methods (columns):

- ``streamprep (BGR)``: ``Preprocessor(spec).into(bgr, out[0])`` into a batch tensor made once by
  ``new_batch(1)``.
- ``streamprep (YUV exact)``: the same from the I420 array with ``pixel_format="yuv420p"``, the default
  ``color_conversion = "exact"``: FFmpeg's swscale converts the full frame to BGR, then as above. This
  includes the colour conversion that every BGR column gets for free (the BGR source was converted before
  timing), so it is the fair end-to-end comparison from a decoded frame.
- ``streamprep (YUV fast)``: the same with ``color_conversion = "fast"``: the Y, U and V planes resized to
  model size, converted there.
- ``naive tutorial``: ``cv2.resize`` (letterbox: the Ultralytics-style ``cv2.resize`` +
  ``cv2.copyMakeBorder``), ``cvtColor`` BGR2RGB, ``/ 255.0`` (float64), subtract the mean and divide by the
  std as float64 arrays, ``transpose(2, 0, 1)``, ``np.expand_dims``, ``.astype(np.float32)``.
- ``cv2.dnn.blobFromImageWithParams``: ``Image2BlobParams`` with ``scalefactor = 1 / (255 * std)`` and
  ``mean = 255 * mean`` per channel, ``swapRB=True``, float32; letterbox rows use ``DNN_PMODE_LETTERBOX``
  with ``borderValue`` 114 (its letterboxed size rounds differently by a pixel; irrelevant for timing).
- ``in-graph``: streamprep's CPU part (``Preprocessor(ingraph.frames_spec(spec)).into`` from BGR into a
  uint8 NHWC buffer) followed by ``ingraph.preprocess_model(spec, batch=1)`` run by an ONNX Runtime
  ``InferenceSession`` (CPUExecutionProvider, default thread count as streamprep's engine uses, but with
  ``session.intra_op.allow_spinning = 0`` so idle ORT workers do not steal the cores from the methods timed
  next). The cell is the per-frame sum, with the ORT part alone in parentheses.

Ratios: ``BGR / blob``, ``YUV exact / blob`` and ``YUV fast / blob`` (below 1 means streamprep is faster
than blobFromImageWithParams)
and ``naive / BGR`` (how many times faster streamprep is than the tutorial code).

Timing: every method runs ``--warmup`` untimed calls per row, then the repetitions (``--repeats``, default
200 for 224² and 320², 100 for 640²) go round-robin over the methods, with the starting method rotating
each repetition, so machine noise and cache state hit all methods alike; cells are medians. Minor page
faults per call are counted too (outside the timed interval) and reported for the 1080p → 640² rows:
a method that allocates fresh multi-megabyte buffers every call pays for faulting them in, which depends
on the allocator (glibc's ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``), so the ``MALLOC_*``
variables in effect are printed. Checks, once per row before timing: on stretch rows streamprep (BGR) must
equal blobFromImageWithParams and the naive code to ≤ 1e-5 max abs error, and on every row the in-graph
output and the YUV exact output must equal streamprep (BGR) to ≤ 1e-5; the YUV fast column's mean
difference from BGR (chroma is interpolated from its half-resolution planes) is shown for information.
The exit status is 1 when a check fails.

Run from the repository root::

    .venv/bin/python bench/preprocess_speed.py [--clip recordings/pan_1080p.mp4] [--frame 0]
        [--repeats N] [--warmup 10]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from streamprep.preprocess import ingraph
from streamprep.preprocess.kernels import Preprocessor
from streamprep.preprocess.spec import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec, Resize, Scaling

Array = npt.NDArray[Any]

SIZES = (224, 320, 640)
GEOMETRIES = (Resize.STRETCH, Resize.LETTERBOX)
PAD = 114
TOLERANCE = 1e-5
MEAN = np.array(IMAGENET_MEAN, dtype=np.float64)
STD = np.array(IMAGENET_STD, dtype=np.float64)
HEADLINE = ("1080p", 640)  # the goals are stated for 1920×1080 → 1×3×640×640
GOAL_BLOB_RATIO = 0.8
GOAL_NAIVE_SPEEDUP = 8.0

BGR, YUV, FAST, NAIVE, BLOB, IN_GRAPH = (
    "streamprep (BGR)",
    "streamprep (YUV exact)",
    "streamprep (YUV fast)",
    "naive tutorial",
    "cv2.dnn.blobFromImageWithParams",
    "in-graph",
)


@dataclass(frozen=True)
class Source:
    label: str
    bgr: Array
    i420: Array


@dataclass(frozen=True)
class Method:
    """One way to preprocess; ``steps`` run in order and are timed separately (in-graph: CPU, then ORT)."""

    name: str
    steps: tuple[Callable[[], object], ...]


@dataclass
class Timings:
    steps: list[list[float]] = field(default_factory=list)  # per repetition, seconds of each step
    faults: list[int] = field(default_factory=list)

    def median_ms(self, step: int | None = None) -> float:
        values = [sum(r) if step is None else r[step] for r in self.steps]
        return statistics.median(values) * 1e3

    def median_faults(self) -> float:
        return statistics.median(self.faults)


@dataclass
class Row:
    source: str
    size: int
    geometry: Resize
    timings: dict[str, Timings]
    checks: list[str]
    failed: bool

    def ms(self, method: str, step: int | None = None) -> float:
        return self.timings[method].median_ms(step)


def load_sources(clip: Path, index: int) -> list[Source]:
    """The decoded frame at 1080p (I420 and BGR) and its 720p version (BGR and I420)."""
    i420: Array | None = None
    with av.open(str(clip)) as container:
        for n, frame in enumerate(container.decode(video=0)):
            if n == index:
                if frame.format.name != "yuv420p":
                    raise SystemExit(f"{clip}: frame {index} is {frame.format.name}, not yuv420p")
                i420 = np.ascontiguousarray(frame.to_ndarray())
                break
    if i420 is None:
        raise SystemExit(f"{clip} has no frame {index}")
    bgr = ffmpeg_bgr(i420)
    if bgr.shape[:2] != (1080, 1920):
        raise SystemExit(f"{clip} is {bgr.shape[1]}x{bgr.shape[0]}, expected 1920x1080")
    i420_720 = cv2.cvtColor(cv2.resize(bgr, (1280, 720), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2YUV_I420)
    return [Source("1080p", bgr, i420), Source("720p", ffmpeg_bgr(i420_720), i420_720)]


def ffmpeg_bgr(i420: Array) -> Array:
    """FFmpeg's own conversion of BT.601 limited-range I420 planes to BGR (what the decoded frame gives)."""
    return np.asarray(av.VideoFrame.from_ndarray(i420, format="yuv420p").to_ndarray(format="bgr24"))


def tutorial_letterbox(image: Array, size: int) -> Array:
    """The letterbox found in YOLO tutorials: resize to fit, then ``copyMakeBorder`` split around the image."""
    h, w = image.shape[:2]
    r = min(size / h, size / w)
    new_w, new_h = round(w * r), round(h * r)
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    return cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD, PAD, PAD))


def naive(image: Array, size: int, geometry: Resize) -> Array:
    """Tutorial preprocessing, float64 throughout, a new array at every step."""
    if geometry is Resize.LETTERBOX:
        resized = tutorial_letterbox(image, size)
    else:
        resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    x = rgb / 255.0
    x = (x - MEAN) / STD
    x = x.transpose(2, 0, 1)
    x = np.expand_dims(x, 0)
    return x.astype(np.float32)


def blob_params(size: int, geometry: Resize) -> Any:
    params = cv2.dnn.Image2BlobParams()
    params.scalefactor = (*(1.0 / (255.0 * STD)).tolist(), 0.0)
    params.mean = (*(255.0 * MEAN).tolist(), 0.0)
    params.swapRB = True
    params.size = (size, size)
    params.ddepth = cv2.CV_32F
    if geometry is Resize.LETTERBOX:
        params.paddingmode = cv2.dnn.DNN_PMODE_LETTERBOX
        params.borderValue = (PAD, PAD, PAD, 0)
    return params


def ort_session(spec: PreprocessSpec) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(
        ingraph.preprocess_model(spec, batch=1), sess_options=options, providers=["CPUExecutionProvider"]
    )


def max_error(a: Array, b: Array) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def measure_row(source: Source, size: int, geometry: Resize, repeats: int, warmup: int) -> Row:
    spec = PreprocessSpec(width=size, height=size, resize=geometry, scaling=Scaling.MEAN_STD, pad_value=PAD)
    pre = Preprocessor(spec)
    fast = Preprocessor(spec.model_copy(update={"color_conversion": "fast"}))
    out_bgr, out_yuv, out_fast = pre.new_batch(1), pre.new_batch(1), pre.new_batch(1)
    frames_pre = Preprocessor(ingraph.frames_spec(spec))
    frames = frames_pre.new_batch(1)
    session = ort_session(spec)
    feed = {ingraph.FRAMES_INPUT: frames}
    params = blob_params(size, geometry)
    bgr, i420 = source.bgr, source.i420

    methods = [
        Method(BGR, (lambda: pre.into(bgr, out_bgr[0]),)),
        Method(YUV, (lambda: pre.into(i420, out_yuv[0], pixel_format="yuv420p"),)),
        Method(FAST, (lambda: fast.into(i420, out_fast[0], pixel_format="yuv420p"),)),
        Method(NAIVE, (lambda: naive(bgr, size, geometry),)),
        Method(BLOB, (lambda: cv2.dnn.blobFromImageWithParams(bgr, params),)),
        Method(IN_GRAPH, (lambda: frames_pre.into(bgr, frames[0]), lambda: session.run(None, feed))),
    ]

    for method in methods:
        for _ in range(warmup):
            for step in method.steps:
                step()

    checks, failed = [], False
    in_graph = session.run(None, feed)[0]
    pre.into(i420, out_yuv[0], pixel_format="yuv420p")
    fast.into(i420, out_fast[0], pixel_format="yuv420p")
    results = [(IN_GRAPH, max_error(out_bgr, in_graph)), (YUV, max_error(out_bgr, out_yuv))]
    if geometry is Resize.STRETCH:
        results += [
            (BLOB, max_error(out_bgr, cv2.dnn.blobFromImageWithParams(bgr, params))),
            (NAIVE, max_error(out_bgr, naive(bgr, size, geometry))),
        ]
    for name, err in results:
        ok = err <= TOLERANCE
        failed |= not ok
        checks.append(f"max |BGR − {name}| = {err:.1e} {'ok' if ok else 'FAIL'}")
    mean_fast = float(np.mean(np.abs(out_fast.astype(np.float64) - out_bgr)) * 255.0 * float(np.mean(STD)))
    checks.append(f"mean |YUV fast − BGR| ≈ {mean_fast:.2f} of 255 (info)")

    timings = {m.name: Timings() for m in methods}
    gc.collect()
    gc.disable()
    try:
        for rep in range(repeats):
            start = rep % len(methods)
            for method in methods[start:] + methods[:start]:
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                seconds = []
                for step in method.steps:
                    t0 = time.perf_counter()
                    step()
                    seconds.append(time.perf_counter() - t0)
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
                timings[method.name].steps.append(seconds)
                timings[method.name].faults.append(faults)
    finally:
        gc.enable()
    return Row(source.label, size, geometry, timings, checks, failed)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_lines() -> list[str]:
    malloc = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"machine: {os.cpu_count()} CPUs (usable: {len(os.sched_getaffinity(0))}), {cpu_model()}, {platform.machine()}",
        f"load average at start (1, 5, 15 min): {load}",
        f"python {platform.python_version()}, opencv {cv2.__version__} ({cv2.getNumThreads()} threads), "
        f"numpy {np.__version__}, onnxruntime {ort.__version__}, av {av.__version__}",
        f"malloc environment: {malloc or 'none (glibc defaults)'}",
    ]


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}×" if x < 10 else f"{x:.1f}×"


def table(rows: list[Row]) -> list[str]:
    head = [
        "source → tensor",
        "geometry",
        f"{BGR} ms",
        f"{YUV} ms",
        f"{FAST} ms",
        f"{NAIVE} ms",
        f"{BLOB} ms",
        f"{IN_GRAPH}: CPU + ORT ms (ORT alone)",
        "BGR / blob",
        "naive / BGR",
        "YUV exact / blob",
        "YUV fast / blob",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            f"{r.source} → {r.size}²",
            r.geometry.value,
            f"{r.ms(BGR):.3f}",
            f"{r.ms(YUV):.3f}",
            f"{r.ms(FAST):.3f}",
            f"{r.ms(NAIVE):.3f}",
            f"{r.ms(BLOB):.3f}",
            f"{r.ms(IN_GRAPH):.3f} ({r.ms(IN_GRAPH, 1):.3f})",
            fmt_ratio(r.ms(BGR) / r.ms(BLOB)),
            fmt_ratio(r.ms(NAIVE) / r.ms(BGR)),
            fmt_ratio(r.ms(YUV) / r.ms(BLOB)),
            fmt_ratio(r.ms(FAST) / r.ms(BLOB)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def goal_lines(rows: list[Row]) -> list[str]:
    head = [r for r in rows if (r.source, r.size) == HEADLINE]
    blob = {r.geometry.value: r.ms(BGR) / r.ms(BLOB) for r in head}
    speedup = {r.geometry.value: r.ms(NAIVE) / r.ms(BGR) for r in head}
    stretch = Resize.STRETCH.value
    met_blob = blob[stretch] <= GOAL_BLOB_RATIO
    met_naive = speedup[stretch] >= GOAL_NAIVE_SPEEDUP

    def show(d: dict[str, float]) -> str:
        return ", ".join(f"{k} {fmt_ratio(v)}" for k, v in d.items())

    return [
        f"goal: streamprep (BGR) ≤ {GOAL_BLOB_RATIO}× the time of blobFromImageWithParams, 1080p → 640² stretch: "
        f"{'met' if met_blob else 'NOT met'} ({show(blob)})",
        f"goal: streamprep (BGR) ≥ {GOAL_NAIVE_SPEEDUP:g}× faster than the naive pipeline, 1080p → 640² stretch: "
        f"{'met' if met_naive else 'NOT met'} ({show(speedup)}; smallest over all rows "
        f"{fmt_ratio(min(r.ms(NAIVE) / r.ms(BGR) for r in rows))})",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clip", type=Path, default=Path("recordings/pan_1080p.mp4"))
    parser.add_argument("--frame", type=int, default=0, help="index of the decoded frame to use (default 0)")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions per row (default 200; 100 for 640²)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls per method and row (default 10)")
    args = parser.parse_args(argv)

    sources = load_sources(args.clip, args.frame)
    info = machine_lines()
    rows: list[Row] = []
    for source in sources:
        for size in SIZES:
            repeats = args.repeats or (100 if size >= 640 else 200)
            for geometry in GEOMETRIES:
                rows.append(measure_row(source, size, geometry, repeats, args.warmup))

    print(f"# Preprocessing speed: {args.clip} frame {args.frame} → 1×3×S×S float32 RGB, ImageNet mean/std")
    print()
    for line in info:
        print(f"- {line}")
    print(f"- load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print("\n".join(table(rows)))
    print()
    print("Medians of per-frame wall time. Checks (before timing):")
    for r in rows:
        print(f"- {r.source} → {r.size}² {r.geometry.value}: " + "; ".join(r.checks))
    print()
    print("Minor page faults per call, median, 1080p → 640²:")
    for r in rows:
        if (r.source, r.size) == HEADLINE:
            faults = ", ".join(f"{name} {t.median_faults():g}" for name, t in r.timings.items())
            print(f"- {r.geometry.value}: {faults}")
    print()
    for line in goal_lines(rows):
        print(f"- {line}")
    return 1 if any(r.failed for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
