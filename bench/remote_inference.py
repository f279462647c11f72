"""Local against remote inference (issue 15): the cost per frame, and what crosses the network per frame.

The same replay runs three ways in one process, ``--repeats`` times each, the modes taking turns:

* ``local``: the bundled SSD (``ssd_mobilenet_v2_fpnlite_256_int8``) in ONNX Runtime inside streamprep;
* ``kserve grpc`` / ``kserve http``: the same model on a real NVIDIA Triton Inference Server on 127.0.0.1
  (``tests/servers/triton_server.py``: nvidia-pytriton's bundled ``tritonserver``, the ONNX file run by
  ONNX Runtime in Triton's Python backend, ``max_batch_size`` 4), ``backend = "kserve"``.

Each run replays ``--clip`` (default ``recordings/pan_1080p.mp4``, 1080p) at ``--fps`` (5: 50 frames) through
the full :class:`~streamprep.run.pipeline.Pipeline`, model batch 4 and ``max_wait_ms`` 10, into a memory sink.
Reported, medians over the repeats: wall ms per frame (the run's wall time / frames; a replay goes as fast
as it can), streamprep's CPU ms per frame (``time.process_time``: every thread of this process), the
server's CPU ms per frame (user+sys of every process of Triton's process group, from ``/proc``), their
sum, and the median inference ms per batch as streamprep saw it (the request's round trip for a remote
model). On this 2-core machine client and server share the cores: the remote rows show what the edge
device saves and what the protocol costs in total, not a GPU server's speed.

Then the bytes per frame: the tensor streamprep sends (its payload), the bytes on the wire both ways for
gRPC and HTTP (one more run of each through a byte-counting TCP relay, not timed), against what sending
the frames instead would take: the decoded frame as bgr24 and yuv420p, and as a JPEG (OpenCV, quality 90)
of each sampled frame (median size).

Run from the repository root, with ``scripts/triton-venv.sh`` done (about a minute)::

    .venv/bin/python bench/remote_inference.py [--clip recordings/pan_1080p.mp4] [--fps 5] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from benchenv import ROOT, load_average, machine, revision, versions

sys.path.insert(0, str(ROOT / "tests"))
from servers.triton import TRITON_PYTHON, TritonServer, group_members

from streamprep.config.schema import Config, parse
from streamprep.inference.model import LoadedModel, load_model
from streamprep.run.pipeline import Pipeline
from streamprep.sinks.memory import MemorySink
from streamprep.sources.file import frame_at

MODEL = "ssd_mobilenet_v2_fpnlite_256_int8"
SSD = ROOT / "streamprep" / "models" / f"{MODEL}.onnx"
BATCH = 4


@dataclass(frozen=True)
class Run:
    frames: int
    wall_s: float
    cpu_s: float
    server_cpu_s: float
    inference_p50_ms: float


def cpu_of_group(pgid: int) -> float:
    """User + system CPU seconds of every live process in a process group."""
    total = 0
    for pid in group_members(pgid):
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def config(clip: Path, fps: float, url: str | None) -> Config:
    model: dict[str, Any] = {"batch": BATCH, "max_wait_ms": 10}
    if url is not None:
        model |= {"backend": "kserve", "path": MODEL, "kserve": {"url": url, "model": "ssd"}}
    return parse({"sources": [{"url": str(clip), "id": "clip"}], "fps": fps, "model": model})


def replay(cfg: Config, model: LoadedModel, server: TritonServer) -> Run:
    sink = MemorySink()
    assert server.process is not None
    s0, c0, t0 = cpu_of_group(server.process.pid), time.process_time(), time.monotonic()
    report = asyncio.run(Pipeline(cfg, model, [sink]).run())
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    server_cpu = cpu_of_group(server.process.pid) - s0
    if report.failures or not sink.results:
        raise RuntimeError(f"the replay failed: {report.failures}")
    return Run(len(sink.results), wall, cpu, server_cpu, report.snapshot.inference_p50_ms)


class Relay:
    """A TCP relay on 127.0.0.1 that counts the bytes going each way (to measure what crosses the wire)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.up = 0
        self.down = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, server, "up"), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, "down"), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, way: str) -> None:
        try:
            while data := src.recv(1 << 20):
                dst.sendall(data)
                setattr(self, way, getattr(self, way) + len(data))
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def frame_sizes(clip: Path, times: list[float]) -> tuple[int, int, int, int, int, float]:
    """(width, height, bgr24 bytes, yuv420p bytes, median JPEG q90 bytes, median ms to encode it) of the
    clip's frames at ``times``."""
    jpegs, encode_ms = [], []
    width = height = 0
    for t in times:
        f = frame_at(clip, t)
        width, height = f.width, f.height
        image = f.image if f.pixel_format == "bgr24" else cv2.cvtColor(f.image, cv2.COLOR_YUV2BGR_I420)
        t0 = time.perf_counter()
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        encode_ms.append((time.perf_counter() - t0) * 1000.0)
        assert ok
        jpegs.append(len(data))
    jpeg = int(statistics.median(jpegs))
    return width, height, width * height * 3, width * height * 3 // 2, jpeg, statistics.median(encode_ms)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", type=Path, default=ROOT / "recordings" / "pan_1080p.mp4")
    p.add_argument("--fps", type=float, default=5.0)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    if not TRITON_PYTHON.exists():
        p.error(f"no Triton server: {TRITON_PYTHON} is missing; run scripts/triton-venv.sh first (about a minute)")
    load_before = load_average()
    server = TritonServer(["--model", f"ssd={SSD}:{BATCH}"])
    server.start()
    try:
        urls = {"local": None, "kserve grpc": server.grpc_url, "kserve http": server.http_url}
        configs = {mode: config(args.clip, args.fps, url) for mode, url in urls.items()}
        models = {mode: load_model(cfg.model) for mode, cfg in configs.items()}
        for mode in urls:  # one untimed run each: caches, connections, ONNX Runtime's lazy set-up
            replay(configs[mode], models[mode], server)
        runs: dict[str, list[Run]] = {mode: [] for mode in urls}
        order = list(urls)
        for r in range(args.repeats):
            for mode in order[r % len(order) :] + order[: r % len(order)]:
                runs[mode].append(replay(configs[mode], models[mode], server))
        wire: dict[str, tuple[float, float, int]] = {}
        for mode, port in (("kserve grpc", server.grpc_port), ("kserve http", server.http_port)):
            relay = Relay(port)
            scheme = "grpc" if "grpc" in mode else "http"
            cfg = config(args.clip, args.fps, f"{scheme}://127.0.0.1:{relay.port}")
            model = load_model(cfg.model)
            up0, down0 = relay.up, relay.down
            done = replay(cfg, model, server)
            wire[mode] = ((relay.up - up0) / done.frames, (relay.down - down0) / done.frames, done.frames)
        tensor_bytes = (
            int(np.prod(models["local"].spec.tensor_shape(1))) * np.dtype(models["local"].spec.dtype).itemsize
        )
    finally:
        server.kill()
    times = [i / args.fps for i in range(runs["local"][0].frames)][:: max(1, runs["local"][0].frames // 10)]
    width, height, bgr, yuv, jpeg, jpeg_ms = frame_sizes(args.clip, times)

    def med(mode: str, f: Callable[[Run], float]) -> float:
        return statistics.median(f(run) for run in runs[mode])

    print(f"# Local against remote inference: {args.clip.name} at {args.fps:g} fps, batch {BATCH}\n")
    print(f"{machine()}; {versions()}; {revision()}")
    print(f"load average before {load_before}, after {load_average()}; {args.repeats} repeats, medians\n")
    print(
        "| mode | frames | wall ms/frame | streamprep CPU ms/frame | server CPU ms/frame | total CPU ms/frame "
        "| inference ms/batch p50 | wall vs local | streamprep CPU vs local |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    base_wall = med("local", lambda r: r.wall_s / r.frames)
    base_cpu = med("local", lambda r: r.cpu_s / r.frames)
    for mode in urls:
        wall = med(mode, lambda r: r.wall_s / r.frames)
        cpu = med(mode, lambda r: r.cpu_s / r.frames)
        server_cpu = med(mode, lambda r: r.server_cpu_s / r.frames)
        total = med(mode, lambda r: (r.cpu_s + r.server_cpu_s) / r.frames)
        print(
            f"| {mode} | {runs[mode][0].frames} | {wall * 1000:.1f} | {cpu * 1000:.1f} | "
            f"{server_cpu * 1000:.1f} | {total * 1000:.1f} | {med(mode, lambda r: r.inference_p50_ms):.1f} | "
            f"{wall / base_wall:.2f}x | {cpu / base_cpu:.2f}x |"
        )
    print(f"\n| per frame ({width}x{height} source, model input {tensor_bytes:,} bytes) | bytes | vs the tensor |")
    print("|---|---:|---:|")
    rows = [("the tensor streamprep sends (payload)", tensor_bytes)]
    for mode, (up, down, _) in wire.items():
        rows.append((f"{mode}: on the wire, edge to server (measured)", int(up)))
        rows.append((f"{mode}: on the wire, server to edge (measured; the model's raw outputs)", int(down)))
    rows += [
        (f"the decoded frame, bgr24 ({width}x{height}x3)", bgr),
        (f"the decoded frame, yuv420p ({width}x{height}x1.5)", yuv),
        (f"the frame as JPEG, quality 90 (median; {jpeg_ms:.1f} ms to encode on this CPU)", jpeg),
    ]
    for what, n in rows:
        print(f"| {what} | {n:,} | {n / tensor_bytes:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
