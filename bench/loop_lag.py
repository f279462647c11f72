"""Event-loop lag and live frame age under I/O pressure, before and after the loop stopped doing I/O.

Three scenarios, each run once with an earlier streamprep (``--before``, default ``c391060``: the last
commit before disk writes, SQLite and decoding left the event loop) and once with this checkout, side by
side. Every run has a live camera (``lavfi`` testsrc2 640x360, 30 fps, real time, sampled at 10 fps,
id ``cam``) beside the pressure, and a probe task in the pipeline's own event loop that sleeps 5 ms and
records how late it wakes (the loop lag):

1. ``blocked stdout``: the camera at its full 30 fps through a tiny model (64x64 uint8 mean, raw decoder),
   results to stdout, a pipe the benchmark does not read for 20 s (then drains); the run lasts 25 s.
2. ``spool 10,000``: a 10,000-frame 160x120 file is replayed as fast as it decodes through the tiny model
   to an MQTT broker that is down (nothing listens on the port;
   ``wait_for_broker``), so every result is spooled to SQLite in a temporary state directory; until the
   file is done.
3. ``8 files``: eight replays of ``recordings/demo_720p.mp4`` at 5 fps through the bundled SSD, to
   ``/dev/null``; until they are done.

Reported per scenario and revision: loop lag p50/p99/max (ms), live results and the live frame age at
inference p50/p99 (ms, ``timings_ms.age``: decode to inference, the same figure in both revisions), and
what the pressure did (results written, spooled or replayed).

Run from the repository root::

    .venv/bin/python bench/loop_lag.py [--before c391060] [--scenarios blocked,spool,files]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LIVE = "lavfi:testsrc2=size=640x360:rate=30,realtime"
SSD = ROOT / "streamprep" / "models" / "ssd_mobilenet_v2_fpnlite_256_int8.onnx"


# -- the child: one scenario with one revision of streamprep on its path
def _sinks(cfg: Any) -> list[Any]:
    try:
        from streamprep.ops.daemon import build_sinks
    except ImportError:
        try:  # before the reshape into layer folders (0d4bbb7 and earlier)
            from streamprep.daemon import build_sinks  # type: ignore[import-not-found,no-redef]
        except ImportError:  # before the daemon module existed (c391060)
            from streamprep.cli import _sinks as build_sinks  # type: ignore[attr-defined,no-redef]
    try:
        from streamprep.config.resolve import resolve_sources
    except ImportError:  # before the sources were resolved once
        return list(build_sinks(cfg))
    return list(build_sinks(cfg, resolve_sources(cfg)))


async def _child(scenario: str, work: Path, seconds: float, stats_path: Path) -> None:
    from streamprep.sinks.memory import MemorySink

    try:
        from streamprep.config.schema import parse
        from streamprep.inference.model import load_model
        from streamprep.run.pipeline import Pipeline
    except ImportError:  # before the reshape into layer folders (0d4bbb7 and earlier)
        from streamprep.model import load_model  # type: ignore[import-not-found,no-redef]
        from streamprep.pipeline import Pipeline  # type: ignore[import-not-found,no-redef]

        from streamprep.config import parse  # type: ignore[attr-defined,no-redef]

    cam = {"url": LIVE, "id": "cam", "fps": 10}
    data: dict[str, Any] = {"sources": [cam], "drain_timeout_s": 5, "device": "bench"}
    if scenario == "blocked":
        data["sources"] = [cam | {"fps": 30}]  # every frame: the pipe fills in seconds
        data["model"] = {"path": str(work / "tiny.onnx"), "decoder": "raw"}
        data["output"] = {"out": "-"}
    elif scenario == "spool":
        bulk = {"url": str(work / "bulk.ts"), "id": "bulk"}
        data |= {"sources": [cam, bulk], "state_dir": str(work / f"state-{os.getpid()}")}
        data["model"] = {"path": str(work / "tiny.onnx"), "decoder": "raw"}
        url = f"mqtt://127.0.0.1:{_free_port()}"
        data["output"] = {"mqtt": {"url": url, "wait_for_broker": True, "outbox_max": 20_000}}
    else:
        demo = str(ROOT / "recordings" / "demo_720p.mp4")
        data["sources"] = [cam] + [{"url": demo, "id": f"file{i}", "fps": 5} for i in range(8)]
        data["model"] = {"path": str(SSD), "batch": 4}
        data["output"] = {"out": "/dev/null"}
    cfg = parse(data)
    model = load_model(cfg.model)
    memory = MemorySink()
    sinks = [*_sinks(cfg), memory]
    for sink in sinks:
        await sink.open()
    pipeline = Pipeline(cfg, model, sinks)
    lags: list[float] = []

    async def probe(_pipeline: Any) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(0.005)
            lags.append((loop.time() - t0 - 0.005) * 1000.0)

    stop = asyncio.Event()

    async def stopper(_pipeline: Any) -> None:
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            await asyncio.sleep(0.5)
            states = {s.source: s.state for s in pipeline.snapshot().sources}
            others = [state for source, state in states.items() if source != "cam"]
            if others and all(state in ("finished", "failed") for state in others):
                break
        stop.set()

    t0 = time.monotonic()
    report = await pipeline.run(stop, [probe, stopper])
    wall = time.monotonic() - t0
    ages = [r.timings.age_ms for r in memory.results if r.source == "cam"]
    snap = report.snapshot
    outbox = sum(s.outbox for s in snap.sinks)
    results = sum(s.processed for s in snap.sources if s.source != "cam")
    stats = {
        "wall_s": wall,
        "lag": lags,
        "live": len(ages),
        "ages": ages,
        "pressure_results": results,
        "outbox": outbox,
    }
    stats_path.write_text(json.dumps(stats))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the parent: prepare, run every child, print the table
def _tiny_model(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("frames", TensorProto.UINT8, ["N", 64, 64, 3])
    y = helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["N", 3])
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["frames"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", ["f", "axes"], ["mean"], keepdims=0),
        ],
        "tiny",
        [x],
        [y],
        initializer=[axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _bulk_video(path: Path, frames: int = 10_000) -> None:
    import av
    import numpy as np

    if path.exists():
        return
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=100)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        ramp = np.tile(np.arange(160, dtype=np.uint8), (120, 1))
        for i in range(frames):
            image = np.dstack([ramp + np.uint8(i % 256), ramp, np.full_like(ramp, i % 200)])
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, 100)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _checkout(revision: str, into: Path) -> Path:
    """The ``streamprep`` package of ``revision``, extracted under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "streamprep"], capture_output=True, check=True
    ).stdout
    target = into / revision
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def _run_child(scenario: str, path: Path, work: Path, seconds: float) -> dict[str, Any]:
    stats = work / f"{scenario}-{path.name}.json"
    env = {**os.environ, "PYTHONPATH": str(path)}
    cmd = [sys.executable, __file__, "--child", scenario, "--work", str(work), "--stats", str(stats)]
    cmd += ["--seconds", str(seconds)]
    if scenario == "blocked":
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        time.sleep(20)  # the outage of the reader: nobody reads stdout for 20 s
        assert proc.stdout is not None
        written = proc.stdout.read().count(b"\n")
        proc.wait()
    else:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc.wait()
        written = None
    result: dict[str, Any] = json.loads(stats.read_text())
    result["written"] = written
    return result


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="c391060", help="the earlier revision to compare with")
    parser.add_argument("--scenarios", default="blocked,spool,files")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=25.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_child(args.child, args.work, args.seconds, args.stats))
        return
    sys.path.insert(0, str(ROOT / "bench"))
    from benchenv import load_average, machine, versions

    with tempfile.TemporaryDirectory(prefix="loop-lag-") as tmp:
        work = Path(tmp)
        _tiny_model(work / "tiny.onnx")
        _bulk_video(work / "bulk.ts")
        revisions = {f"before ({args.before})": _checkout(args.before, work / "rev"), "after (this checkout)": ROOT}
        durations = {"blocked": 25.0, "spool": 240.0, "files": 240.0}
        names = {"blocked": "blocked stdout", "spool": "spool 10,000", "files": "8 files"}
        print(f"machine: {machine()}; {versions()}; load {load_average()}")
        print()
        print("| scenario | revision | loop lag p50 / p99 / max ms | live results | live age p50 / p99 ms | pressure |")
        print("|---|---|---|---|---|---|")
        for scenario in args.scenarios.split(","):
            for label, path in revisions.items():
                r = _run_child(scenario, path, work, durations[scenario])
                lag, ages = r["lag"], r["ages"]
                if scenario == "blocked":
                    pressure = f"{r['written']} lines written to the pipe"
                elif scenario == "spool":
                    pressure = f"{r['pressure_results']} results, {r['outbox']} spooled, {r['wall_s']:.0f} s"
                else:
                    pressure = f"{r['pressure_results']} results in {r['wall_s']:.1f} s"
                print(
                    f"| {names[scenario]} | {label} | {statistics.median(lag):.1f} / {_p(lag, 99):.1f} / "
                    f"{max(lag):.0f} | {r['live']} | {_p(ages, 50):.0f} / {_p(ages, 99):.0f} | {pressure} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
