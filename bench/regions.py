"""Regions and second models (issue 21): recall of small objects per mode against SAHI, model runs and CPU per
camera, and what a second model costs per crop.

What it measures, with the bundled SSD MobileNetV2 FPNLite 256² uint8 (score threshold 0.5, ONNX Runtime on CPU):

1. **Recall** on the region recordings with ground truth (``recordings/REGIONS.md``): ``regions_walk_1080p.mp4``
   and ``regions_light_1080p.mp4`` sampled at ``--fps`` (default 5: every other frame) and every frame of
   ``regions_border_1080p.mp4``. A ground-truth object counts as found when a detection of its label overlaps
   it with IoU >= 0.3. Modes, built from ``streamprep.regions``' building blocks exactly as its docstring wires
   them (the model on each region at native resolution, the region as the preprocessor's region of interest):

   - ``full``: the whole frame resized to 256²;
   - ``tiles``: ``tile_plan(w, h, 256)`` (tile side 256, overlap 0.2) on every frame, merged (``merge``);
   - ``motion``: ``MotionRegions`` (defaults): found on the frame itself, and found or carried (what a
     ``motion`` source reports);
   - ``sahi``: an independent sliced-inference run: SAHI 0.12.8's ``get_sliced_prediction`` with 256x256
     slices and 0.2 overlap (the same tile size and overlap), no full-frame pass, SAHI's own postprocess
     (GREEDYNMM, IOS 0.5), with the same ONNX SSD wrapped as a SAHI ``DetectionModel`` (each slice goes through
     streamprep's preprocessing of that model and its decoder; SAHI slices, shifts and merges).

   Also the model runs per frame of each. ``--plot PNG`` saves recall per mode and recording.
2. **Model runs and CPU per camera**, ``full`` against ``motion``, through the real pipeline
   (``streamprep.stream(..., regions=MODE)``; skipped when the streamprep imported has no ``regions`` option):
   ``--cameras`` copies of ``regions_light`` and of ``regions_walk`` as sources of one run at ``--fps``, each
   run in a child process; the child's CPU seconds (``resource.getrusage(RUSAGE_CHILDREN)``: the whole process,
   imports and model load included) and the CPU of the ``stream`` call alone (``time.process_time``), per camera
   and per camera-minute of video, medians of ``--repeats`` round-robin repeats; the same for the still clip of
   ``--seconds`` below (the short recordings are dominated by motion's whole-frame tile scans: the first frame,
   and regions_light's lighting step).
   **Sustained cameras** (``--parts ...,sustained``, not in the default parts): a still 720p clip of
   ``--seconds`` (``regions_light``'s first 2 s, before its light goes on, resized to 1280x720, looped and
   encoded once into the temporary directory) as N real-time cameras (``realtime = true``) at ``--fps`` in
   one ``streamprep run`` (JSON lines to a file, what a deployment runs), all started at once, the model at
   ``--batch`` (default 1, the config's default), N from ``--full-cameras`` and ``--motion-cameras``.
   Sustained: at least 95 % of the results due in the steady state (the clip's seconds from ``WARMUP_S`` = 30 s on: with
   ``motion`` every camera starts with a whole-frame tile scan, 24 model runs at 720p, and N cameras started
   together queue N x 24 runs); also the whole run's share, the second from which every 10 s got 95 %, the
   frame age, the process CPU.
3. **A second model's cost per crop** (``[[model.then]]``): the SSD on ``demo_720p.mp4`` at ``--fps``, each
   detection's crop (``box_region`` with margin 0.1, cut at native resolution) preprocessed for
   ``mobilenet_v2_224_int8`` and run at batch 1, 4 and 8: ms per crop for preprocessing and for inference
   (medians of ``--repeats``), second-model runs; then the pipeline with and without the second model
   (``streamprep.stream(..., then=[...])``, batch 1 and 8): crops, CPU and wall per run.

Run from the repository root (``PYTHONPATH=/path/to/tree`` measures another checkout)::

    .venv/bin/python bench/regions.py [--fps 5] [--cameras 4] [--repeats 3] [--parts recall,cpu,decode,crops]
        [--plot bench/plots/regions_recall.png] [--max-frames N]
        [--parts sustained --seconds 90 --full-cameras 10,12 --motion-cameras 30,36 --sustained-plot PNG]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from benchenv import load_average, machine, revision, versions

import streamprep
from streamprep.events.tracking import iou_matrix
from streamprep.inference.model import LoadedModel, load_model
from streamprep.regions import MotionRegions, RegionPlan, crop, merge, tile_plan
from streamprep.regions.values import box_of
from streamprep.values.frames import Box, Detection, Image

try:
    from streamprep.inference.settings import ModelConfig
except ImportError:  # a streamprep from before the second models (its [model] settings in the config schema)
    from streamprep.config.schema import ModelConfig  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT / "recordings"
SSD = ROOT / "streamprep" / "models" / "ssd_mobilenet_v2_fpnlite_256_int8.onnx"
CLASSIFIER = "mobilenet_v2_224_int8"
WARMUP_S = 30.0  # sustained cameras: results from this second of the clip on are the steady state
CLIPS = ("regions_walk_1080p", "regions_light_1080p", "regions_border_1080p")
try:
    import sahi  # noqa: F401 - the bench extra; without it the sahi rows are left out
except ImportError:
    MODES: tuple[str, ...] = ("full", "tiles", "motion", "motion+carried")
else:
    MODES = ("full", "tiles", "motion", "motion+carried", "sahi")
IOU = 0.3
SIDE = 256
OVERLAP = 0.2


# -- decoding and the model on a region
def decode(path: Path, step: int, limit: int | None) -> list[tuple[int, float, Image]]:
    """(index, pts seconds, BGR image) of every ``step``-th frame, at most ``limit`` of them."""
    out: list[tuple[int, float, Image]] = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % step == 0:
                out.append((index, float(frame.time or 0.0), frame.to_ndarray(format="bgr24")))
                if limit is not None and len(out) >= limit:
                    break
    return out


def infer(model: LoadedModel, image: Image, roi: tuple[float, float, float, float]) -> tuple[Detection, ...]:
    tensor = model.preprocessor.new_batch(1)
    geometry = model.preprocessor.into(image, tensor[0], region=roi)
    return model.decoder.decode(model.engine.run(tensor[:1]), 0, geometry).detections or ()


def hits(found: Sequence[Detection], objects: Sequence[dict[str, Any]]) -> int:
    """Ground-truth objects matched by a detection of their label with IoU >= 0.3."""
    if not found or not objects:
        return 0
    iou = iou_matrix(np.array([o["box"] for o in objects], float), np.array([box_of(d) for d in found], float))
    return sum(
        any(found[j].label == o["label"] and iou[i, j] >= IOU for j in range(len(found))) for i, o in enumerate(objects)
    )


# -- SAHI: the same SSD as a SAHI detection model
def sahi_model(model: LoadedModel) -> Any:
    from sahi.models.base import DetectionModel
    from sahi.prediction import ObjectPrediction

    class StreamprepSSD(DetectionModel):  # type: ignore[misc]
        """The bundled SSD through streamprep's preprocessing and decoder, one SAHI slice at a time."""

        runs = 0

        def load_model(self) -> None:
            self.set_model(model)

        def set_model(self, model: Any, **kwargs: Any) -> None:
            self.model = model
            self.category_mapping = {str(i): label for i, label in enumerate(model.labels)}

        def perform_inference(self, image: np.ndarray) -> None:  # SAHI hands RGB slices
            StreamprepSSD.runs += 1
            bgr = np.ascontiguousarray(image[:, :, ::-1])
            self._original_predictions = [infer(self.model, bgr, (0.0, 0.0, float(bgr.shape[1]), float(bgr.shape[0])))]

        def _create_object_prediction_list_from_original_predictions(
            self,
            shift_amount_list: list[list[int | float]] | None = None,
            full_shape_list: list[list[int | float]] | None = None,
        ) -> None:
            from sahi.utils.compatibility import fix_full_shape_list, fix_shift_amount_list

            shifts = fix_shift_amount_list(shift_amount_list or [[0, 0]])
            shapes = fix_full_shape_list(full_shape_list)
            per_image = []
            for i, found in enumerate(self._original_predictions):
                per_image.append(
                    [
                        ObjectPrediction(
                            bbox=[d.box.x1, d.box.y1, d.box.x2, d.box.y2],
                            category_id=d.class_id,
                            category_name=d.label,
                            score=d.score,
                            shift_amount=shifts[i],
                            full_shape=None if shapes is None else shapes[i],
                        )
                        for d in found
                        if d.score >= self.confidence_threshold
                    ]
                )
            self._object_prediction_list_per_image = per_image

    return StreamprepSSD(model=model, confidence_threshold=0.5, load_at_init=True)


def sahi_detect(detector: Any, image: Image) -> tuple[tuple[Detection, ...], int]:
    from sahi.predict import get_sliced_prediction

    before = type(detector).runs
    result = get_sliced_prediction(
        np.ascontiguousarray(image[:, :, ::-1]),
        detector,
        slice_height=SIDE,
        slice_width=SIDE,
        overlap_height_ratio=OVERLAP,
        overlap_width_ratio=OVERLAP,
        perform_standard_pred=False,
        verbose=0,
    )
    found = []
    for p in result.object_prediction_list:
        x1, y1, x2, y2 = p.bbox.to_xyxy()
        found.append(Detection(p.category.name, int(p.category.id), float(p.score.value), Box(x1, y1, x2, y2)))
    return tuple(found), type(detector).runs - before


# -- part 1: recall
@dataclass
class Tally:
    objects: int = 0
    found: int = 0
    runs: int = 0
    frames: int = 0
    extra: int = 0  # detections matching no ground-truth object
    seconds: list[float] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.found / self.objects if self.objects else 0.0


def unmatched(found: Sequence[Detection], objects: Sequence[dict[str, Any]]) -> int:
    return sum(not hits([d], objects) for d in found)


def recall(model: LoadedModel, fps: float, limit: int | None) -> dict[str, dict[str, Tally]]:
    detector = sahi_model(model) if "sahi" in MODES else None
    out: dict[str, dict[str, Tally]] = {}
    for clip in CLIPS:
        path = RECORDINGS / f"{clip}.mp4"
        truth = json.loads(path.with_suffix(".json").read_text())
        step = 1 if clip == "regions_border_1080p" else max(1, round(truth["fps"] / fps))
        frames = decode(path, step, limit)
        h, w = frames[0][2].shape[:2]
        tallies = {m: Tally() for m in MODES}
        tiles = tile_plan(w, h, SIDE, 1.0, OVERLAP)
        state = MotionRegions(w, h, SIDE)
        for index, pts, image in frames:
            objects = truth["frames"][index]["objects"]

            def run(plan: RegionPlan, image: Image = image) -> tuple[Detection, ...]:
                return merge(plan, [infer(model, image, r.roi) for r in plan.regions])

            t0 = time.perf_counter()
            full = infer(model, image, (0.0, 0.0, float(w), float(h)))
            t1 = time.perf_counter()
            tiled = run(tiles)
            t2 = time.perf_counter()
            plan = state.plan(image, pts)
            found = run(plan)
            reported = state.update(plan, found, pts)
            t3 = time.perf_counter()
            sliced, sahi_runs = sahi_detect(detector, image) if detector is not None else ((), 0)
            t4 = time.perf_counter()
            for mode, dets, runs, secs in (
                ("full", full, 1, t1 - t0),
                ("tiles", tiled, len(tiles.regions), t2 - t1),
                ("motion", reported.found, len(plan.regions), t3 - t2),
                ("motion+carried", reported.found + reported.carried, len(plan.regions), t3 - t2),
                ("sahi", sliced, sahi_runs, t4 - t3),
            ):
                if mode not in tallies:
                    continue
                tally = tallies[mode]
                tally.objects += len(objects)
                tally.found += hits(dets, objects)
                tally.extra += unmatched(dets, objects)
                tally.frames += 1
                tally.runs += runs
                tally.seconds.append(secs)
        out[clip] = tallies
        print(f"recall: {clip} done ({len(frames)} frames)", file=sys.stderr, flush=True)
    return out


def print_recall(results: dict[str, dict[str, Tally]], fps: float) -> None:
    print(
        f"### Recall of small objects (IoU >= {IOU}), SSD 256² uint8, score >= 0.5; walk and light at {fps:g} fps, "
        "border every frame"
    )
    print()
    print(
        "| recording | mode | frames | found / objects | recall | model runs | runs per frame | other detections | "
        "ms per frame (median) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    if "sahi" not in MODES:
        print("| (sahi is not installed: `pip install -e '.[bench]'` adds its rows) |||||||||")
    for clip, tallies in results.items():
        for mode in MODES:
            t = tallies[mode]
            print(
                f"| {clip} | {mode} | {t.frames} | {t.found}/{t.objects} | {t.recall:.2f} | {t.runs} | "
                f"{t.runs / max(1, t.frames):.1f} | {t.extra} | {1000 * statistics.median(t.seconds):.1f} |"
            )
    print()


def plot(results: dict[str, dict[str, Tally]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(MODES)
    xs = np.arange(len(results))
    for k, mode in enumerate(MODES):
        values = [results[c][mode].recall for c in results]
        bars = ax.bar(xs + k * width, values, width, label=mode)
        for bar, clip in zip(bars, results, strict=True):
            t = results[clip][mode]
            ax.annotate(
                f"{t.runs / max(1, t.frames):.0f}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.set_xticks(xs + width * (len(MODES) - 1) / 2, [c.removesuffix("_1080p") for c in results])
    ax.set_ylabel(f"recall (IoU >= {IOU})")
    ax.set_ylim(0, 1.1)
    ax.set_title("Small objects in 1080p, bundled SSD 256²: recall per mode (numbers: model runs per frame)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


# -- part 2: model runs and CPU per camera, through the pipeline
def regions_supported() -> bool:
    from streamprep.config.schema import Config

    return "regions" in Config.model_fields


def child(mode: str, clip: str, cameras: int, fps: float) -> None:
    """One run in this process: prints JSON with the results, model runs, the median frame age and the CPU of
    the stream call. ``clip``: a recording's name, or a path."""
    path = RECORDINGS / f"{clip}.mp4" if "/" not in clip else Path(clip)
    sources = [{"url": str(path), "id": f"cam{i}"} for i in range(cameras)]
    t0, c0 = time.perf_counter(), time.process_time()
    results = runs = 0
    ages: list[float] = []
    for r in streamprep.stream(sources, fps=fps, regions=mode):
        results += 1
        runs += len(getattr(r, "regions", ()) or ())
        ages.append(r.timings.age_ms)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    age = statistics.median(ages) if ages else 0.0
    print(json.dumps({"results": results, "runs": runs, "cpu": cpu, "wall": wall, "age_ms": age}))


def measured(argv: list[str], timeout: float, what: str) -> tuple[str, float]:
    """Run ``argv``: its standard output and its CPU seconds (``RUSAGE_CHILDREN``: the whole process, imports
    and model load included); a failure raises with the end of its standard error."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{what}: {proc.stderr[-2000:]}")
    return proc.stdout, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_child(mode: str, clip: str, cameras: int, fps: float) -> dict[str, Any]:
    out, cpu = measured([sys.executable, __file__, "--child", f"{mode},{clip},{cameras},{fps}"], 600, f"{mode} {clip}")
    data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    data["process_cpu"] = cpu
    return data


def cpu_per_camera(fps: float, cameras: int, repeats: int, seconds: float) -> None:
    if not regions_supported():
        print("### Model runs and CPU per camera: skipped (this streamprep has no `regions` option)")
        print()
        return
    clips = {"regions_light_1080p": 4.0, "regions_walk_1080p": 6.0, str(static_clip(seconds)): seconds}
    cases = [(m, c) for c in clips for m in ("full", "motion")]
    runs: dict[tuple[str, str], list[dict[str, float]]] = {k: [] for k in cases}
    for i in range(repeats):
        for case in cases[i % len(cases) :] + cases[: i % len(cases)]:
            runs[case].append(run_child(case[0], case[1], cameras, fps))
        print(f"cpu: round {i + 1}/{repeats} done", file=sys.stderr, flush=True)
    print(
        f"### Model runs and CPU per camera: {cameras} copies of each recording as sources of one run, {fps:g} fps, "
        f"not paced (as fast as it goes); still {seconds:g} s = regions_light's first 2 s looped; medians of {repeats}"
    )
    print()
    print(
        "| recording | regions | results | model runs | runs per frame | process CPU s | stream() CPU s | "
        "stream() CPU s per camera-minute | CPU vs full | wall s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for clip, duration in clips.items():
        minutes = cameras * duration / 60
        base = statistics.median(r["cpu"] for r in runs[("full", clip)])
        name = clip if "/" not in clip else f"still {seconds:g} s"
        for mode in ("full", "motion"):
            rs = runs[(mode, clip)]
            cpu = statistics.median(r["cpu"] for r in rs)
            results = int(statistics.median(r["results"] for r in rs))
            model_runs = int(statistics.median(r["runs"] for r in rs))
            print(
                f"| {name} | {mode} | {results} | {model_runs} | {model_runs / max(1, results):.2f} | "
                f"{statistics.median(r['process_cpu'] for r in rs):.2f} | {cpu:.2f} | {cpu / minutes:.2f} | "
                f"{cpu / base:.2f}x | {statistics.median(r['wall'] for r in rs):.2f} |"
            )
    print()


def decode_floor(cameras: int, seconds: float, repeats: int) -> None:
    """What decoding alone costs per camera: every frame of the still clip decoded (PyAV, no pixel conversion,
    the codec's default threads), ``cameras`` times, CPU of this process; the floor under both modes, since
    a camera's every frame is decoded in both (the clip has one keyframe)."""
    clip = static_clip(seconds)
    cpu: list[float] = []
    for _ in range(repeats):
        c0 = time.process_time()
        for _ in range(cameras):
            with av.open(str(clip)) as container:
                for _ in container.decode(video=0):
                    pass
        cpu.append(time.process_time() - c0)
    c = statistics.median(cpu)
    print(
        f"Decode only, the floor under both modes: the still {seconds:g} s clip decoded {cameras} times (PyAV, every "
        f"frame, no conversion): {c:.2f} CPU s, {c / (cameras * seconds / 60):.2f} CPU s per camera-minute "
        f"(median of {repeats})"
    )
    print()


def static_clip(seconds: float, width: int = 1920, height: int = 1080) -> Path:
    """A still scene ``seconds`` long, ``width`` x ``height``: ``regions_light``'s first 2 s (three still small
    objects, before its light goes on; resized with area interpolation when not 1080p) looped at 10 fps,
    encoded once into a temporary file (libx264, CRF 30, as the recordings)."""
    size = "" if (width, height) == (1920, 1080) else f"-{height}p"
    out = Path(tempfile.gettempdir()) / f"streamprep-bench-static-{seconds:g}s{size}.mp4"
    if out.exists():
        return out
    frames = [image for _, _, image in decode(RECORDINGS / "regions_light_1080p.mp4", 1, 20)]
    if (width, height) != (1920, 1080):
        frames = [np.asarray(cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA), np.uint8) for f in frames]
    part = out.with_name(f"{out.stem}.{os.getpid()}.part.mp4")  # two benches at once: each its own
    with av.open(str(part), "w") as container:
        stream = container.add_stream("libx264", rate=10, options={"crf": "30", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for k in range(round(seconds * 10)):
            frame = av.VideoFrame.from_ndarray(frames[k % len(frames)], format="bgr24")
            frame.pts, frame.time_base = k, Fraction(1, 10)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    part.replace(out)
    return out


def steady_after(per_second: Sequence[int], expected: float, share: float = 0.95) -> float | None:
    """The first second of the clip from which on every 10 s stretch got at least ``share`` of its
    ``expected`` results per second (None: never)."""
    n = len(per_second)
    for start in range(n):
        stretches = [per_second[k : k + 10] for k in range(start, n - 9, 10)]
        if stretches and all(sum(w) >= share * expected * 10 for w in stretches):
            return float(start)
    return None


def plot_sustained(rows: list[tuple[str, int, list[int]]], fps: float, path: Path) -> None:
    """Each run's results per second of the clip, as a share of what its cameras were due (5 s means)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    for mode, n, per_second in rows:
        due = n * fps
        share = [sum(per_second[k : k + 5]) / (5 * due) for k in range(0, max(0, len(per_second) - 5), 5)]
        ax.plot(
            [k * 5 + 2.5 for k in range(len(share))],
            share,
            label=f"{mode}, {n} cameras",
            linestyle="-" if mode == "motion" else "--",
        )
    ax.axvline(WARMUP_S, color="grey", linewidth=0.8)
    ax.axhline(0.95, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("second of the clip")
    ax.set_ylabel("results / due (5 s means)")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Still 720p cameras in real time at {fps:g} fps, all started at once: results per second")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def run_daemon(mode: str, clip: Path, cameras: int, fps: float, batch: int) -> dict[str, Any]:
    """``streamprep run`` (what a deployment runs) on ``cameras`` real-time copies of ``clip`` with ``regions =
    mode``, JSON lines to a file: results per second of the clip, model runs, the steady frame age, the
    process CPU (``RUSAGE_CHILDREN``)."""
    with tempfile.TemporaryDirectory() as tmp:
        config, out = Path(tmp) / "cameras.toml", Path(tmp) / "results.jsonl"
        lines = [f"fps = {fps}", f'regions = "{mode}"', "realtime = true", ""]
        for i in range(cameras):
            lines += ["[[sources]]", f'url = "{clip}"', f'id = "cam{i}"', ""]
        lines += ["[model]", f"batch = {batch}", ""]
        config.write_text("\n".join(lines))
        argv = [sys.executable, "-m", "streamprep", "run", "--config", str(config), "--out", str(out)]
        _, cpu = measured(argv, 900, f"{mode} x{cameras}")
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    per_second = [0] * (math.ceil(max((r["pts"] for r in rows), default=0.0)) + 1)
    for r in rows:
        per_second[int(r["pts"])] += 1
    late = [r["timings_ms"]["age"] for r in rows if r["pts"] >= WARMUP_S]
    return {
        "results": len(rows),
        "runs": sum(len(r.get("regions", ())) for r in rows),
        "age_steady_ms": statistics.median(late) if late else 0.0,
        "per_second": per_second,
        "process_cpu": cpu,
    }


def sustained(
    fps: float, seconds: float, ladders: dict[str, list[int]], batch: int = 1, plot_path: Path | None = None
) -> None:
    """How many still 720p cameras one ``streamprep run`` keeps up with, per mode: N copies of a still clip
    replayed in real time (``realtime = true``: latest frame wins, so a process that falls behind drops frames),
    the model at ``batch``."""
    if not regions_supported():
        print("### Sustained cameras: skipped (this streamprep has no `regions` option)")
        print()
        return
    clip = static_clip(seconds, 1280, 720)
    print(
        f"### Sustained still 720p cameras, one `streamprep run`, real time at {fps:g} fps, model batch {batch}: N "
        f"copies of a {seconds:g} s still clip (regions_light's first 2 s at 1280x720, looped, 10 fps, 3 small "
        "still objects), all started at once, JSON lines to a file; steady = the results of the clip's seconds "
        f"from {WARMUP_S:g} s on, against N x fps x "
        f"{seconds - WARMUP_S:g} s (sustained: at least 95 %); whole run = all results against N x fps x "
        f"{seconds:g} s; steady from = the first second of the clip from which every 10 s got 95 %"
    )
    print()
    print(
        "| regions | cameras | results | whole run | steady | steady from s | model runs per result | "
        "frame age ms (median, steady) | process CPU s | CPU per camera-minute | sustained |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    rows: list[tuple[str, int, list[int]]] = []
    for mode, ladder in ladders.items():
        for n in ladder:
            r = run_daemon(mode, clip, n, fps, batch)
            per_second = [int(x) for x in r["per_second"]]
            rows.append((mode, n, per_second))
            whole = r["results"] / (n * fps * seconds)
            steady = sum(per_second[round(WARMUP_S) :]) / (n * fps * (seconds - WARMUP_S))
            since = steady_after(per_second, n * fps)
            print(
                f"| {mode} | {n} | {int(r['results'])} | {whole:.1%} | {steady:.1%} | "
                f"{'never' if since is None else f'{since:.0f}'} | {r['runs'] / max(1, r['results']):.2f} | "
                f"{r['age_steady_ms']:.0f} | {r['process_cpu']:.1f} | "
                f"{r['process_cpu'] / (n * seconds / 60):.2f} | {'yes' if steady >= 0.95 else 'no'} |",
                flush=True,
            )
    print()
    if plot_path is not None:
        plot_sustained(rows, fps, plot_path)


# -- part 3: the second model per crop
def crops_cost(ssd: LoadedModel, fps: float, repeats: int, limit: int | None) -> None:
    from streamprep.regions.values import box_region  # with the second models (issue 21)

    second = load_model(ModelConfig(path=Path(CLASSIFIER), batch=8))
    frames = decode(RECORDINGS / "demo_720p.mp4", max(1, round(30 / fps)), limit)
    cut: list[Image] = []
    for _, _, image in frames:
        h, w = image.shape[:2]
        for d in infer(ssd, image, (0.0, 0.0, float(w), float(h))):
            cut.append(np.ascontiguousarray(crop(image, box_region(box_of(d), 0.1, w, h))))
    print(
        f"### A second model per crop: {CLASSIFIER} on the SSD's detections (score >= 0.5, margin 0.1), "
        f"demo_720p.mp4 at {fps:g} fps: {len(frames)} frames, {len(cut)} crops; medians of {repeats}"
    )
    print()
    print(
        "| batch | second-model runs | preprocess ms per crop | inference ms per crop | inference ms per run | "
        "per crop vs batch 1 |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    base = 0.0
    for batch in (1, 4, 8):
        if batch > second.max_batch:
            continue
        tensor = second.preprocessor.new_batch(batch)
        pre: list[float] = []
        inf: list[float] = []
        for _ in range(repeats):
            p = q = 0.0
            for start in range(0, len(cut), batch):
                group = cut[start : start + batch]
                t0 = time.perf_counter()
                for i, image in enumerate(group):
                    second.preprocessor.into(image, tensor[i])
                t1 = time.perf_counter()
                second.engine.run(tensor[: len(group)])
                q += time.perf_counter() - t1
                p += t1 - t0
            pre.append(1000 * p / max(1, len(cut)))
            inf.append(1000 * q / max(1, len(cut)))
        per_crop = statistics.median(inf)
        base = base or per_crop
        runs = math.ceil(len(cut) / batch)
        print(
            f"| {batch} | {runs} | {statistics.median(pre):.2f} | {per_crop:.2f} | "
            f"{per_crop * len(cut) / max(1, runs):.2f} | {per_crop / base:.2f}x |"
        )
    print()
    pipeline_with_crops(fps, repeats)


def pipeline_with_crops(fps: float, repeats: int) -> None:
    path = str(RECORDINGS / "demo_720p.mp4")
    cases: dict[str, dict[str, Any]] = {
        "SSD only": {},
        "SSD + classifier, batch 1": {"then": [{"path": CLASSIFIER, "margin": 0.1, "batch": 1}]},
        "SSD + classifier, batch 8": {"then": [{"path": CLASSIFIER, "margin": 0.1, "batch": 8}]},
    }
    try:
        list(streamprep.stream(path, fps=fps, **cases["SSD + classifier, batch 1"]))
    except Exception as exc:  # a streamprep without [[model.then]]
        print(f"(the pipeline with a second model: skipped, {type(exc).__name__}: {str(exc)[:120]})")
        print()
        return
    measured: dict[str, list[tuple[float, float, int, int]]] = {k: [] for k in cases}
    names = list(cases)
    for i in range(repeats):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            t0, c0 = time.perf_counter(), time.process_time()
            results = list(streamprep.stream(path, fps=fps, **cases[name]))
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            crops = sum(1 for r in results for d in r.detections or () if d.classes is not None)
            measured[name].append((cpu, wall, len(results), crops))
    print(
        f"The pipeline on demo_720p.mp4 at {fps:g} fps, one source, not paced (CPU of the stream() call, "
        f"this process; medians of {repeats}):"
    )
    print()
    print("| run | frames | crops | CPU s | wall s | extra CPU ms per crop |")
    print("|---|---:|---:|---:|---:|---:|")
    base = statistics.median(m[0] for m in measured["SSD only"])
    for name in names:
        ms = measured[name]
        cpu = statistics.median(m[0] for m in ms)
        crops = ms[-1][3]
        extra = f"{1000 * (cpu - base) / crops:.1f}" if crops else "—"
        print(f"| {name} | {ms[-1][2]} | {crops} | {cpu:.2f} | {statistics.median(m[1] for m in ms):.2f} | {extra} |")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", default="recall,cpu,crops")
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--max-frames", type=int, default=None, help="at most this many frames per recording")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the still clip (sustained part)")
    parser.add_argument("--full-cameras", default="1,2,4", help="camera counts tried with regions = full")
    parser.add_argument("--motion-cameras", default="4,8,12", help="camera counts tried with regions = motion")
    parser.add_argument("--batch", type=int, default=1, help="the model's batch in the sustained runs")
    parser.add_argument("--sustained-plot", type=Path, default=None, help="save the sustained runs' results over time")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mode, clip, cameras, fps = args.child.split(",")
        child(mode, clip, int(cameras), float(fps))
        return 0
    parts = set(args.parts.split(","))
    load_before = load_average()
    model = load_model(ModelConfig(path=SSD))
    recalled = recall(model, args.fps, args.max_frames) if "recall" in parts else None
    print(f"streamprep: {revision()}")
    print(f"machine: {machine()}")
    print(f"libraries: {versions()}")
    print(f"load average (1/5/15 min) at start: {load_before}")
    print()
    if recalled is not None:
        print_recall(recalled, args.fps)
        if args.plot:
            plot(recalled, args.plot)
    if "cpu" in parts:
        cpu_per_camera(args.fps, args.cameras, args.repeats, args.seconds)
    if "cpu" in parts or "decode" in parts:
        decode_floor(args.cameras, args.seconds, args.repeats)
    if "sustained" in parts:
        ladders = {"full": [int(n) for n in args.full_cameras.split(",")]}
        ladders["motion"] = [int(n) for n in args.motion_cameras.split(",")]
        sustained(args.fps, args.seconds, ladders, args.batch, args.sustained_plot)
    if "crops" in parts:
        crops_cost(model, args.fps, args.repeats, args.max_frames)
    print(f"load average (1/5/15 min) at end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
