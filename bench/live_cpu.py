"""Live CPU per camera: what a camera sampled at 5 of 30 fps costs with frame skipping and without.

The claim under test (issue 14): a live source sampled well below its frame rate does not spend its CPU
decoding frames it throws away where the stream allows skipping (B-frames, temporal sub-layers), and
costs what it did before where it does not (every frame a reference).

Streams (1280x720, 30 fps, made once per run in a temporary directory from ``recordings/demo_720p.mp4``'s
pictures, each encoded clip then repeated back to back without re-encoding until it is long enough):

* ``H.264, no B-frames``: libx264 ``veryfast``, ``bframes=0``, keyframe every 2 s: every frame is a
  reference, as from most IP cameras. Nothing can be left out: the control.
* ``H.264, B-frames``: the recording itself (libx264 ``medium``, B-pyramid, keyframe every 2 s).
* ``HEVC, temporal sub-layers``: libx265 ``ultrafast``, ``temporal-layers=3`` (the top sub-layer is never
  referenced), keyframe every 2 s.

Each is served by a real RTSP server (gst-rtsp-server, ``tests/servers/rtsp_server.py``, Debian's
``/usr/bin/python3``, a fresh server per run, played once). A run opens ``--cameras`` streamprep
``LiveSource`` s on it (RTSP over TCP, ``--fps`` sampling, the default live options, no model: the frames
are taken and dropped), waits ``--warmup`` seconds, then measures the process CPU time (``time.process_time``:
every thread of the process, FFmpeg's decoder threads included; the server is another process) over
``--seconds``, and the frames decoded, left out and sampled per camera in that window. Two modes per
stream: ``decode every frame`` (``skip_frames = false``, streamprep before issue 14) and ``skip`` (the
default). Modes alternate run by run, ``--repeats`` times each; medians are reported.

Reported: CPU seconds per camera-minute (CPU s / cameras / minutes measured), its ratio to decoding every
frame, frames decoded, left out and sampled per second per camera.

Run from the repository root (about 2 x 3 x repeats x (warmup + seconds) plus a minute of encoding)::

    .venv/bin/python bench/live_cpu.py [--cameras 2] [--seconds 20] [--warmup 3] [--repeats 2] [--fps 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from benchenv import ROOT, load_average, machine, revision, versions

sys.path.insert(0, str(ROOT / "tests"))
from servers.rtsp import RtspServer, free_port

from streamprep.sources.live import LiveOptions, LiveSource
from streamprep.sources.skipping import DecodeOptions

SOURCE = ROOT / "recordings" / "demo_720p.mp4"


@dataclass(frozen=True)
class StreamKind:
    name: str
    codec: str | None  # None: the recording as it is
    options: dict[str, str]
    hevc: bool = False


KINDS = (
    StreamKind(
        "H.264, no B-frames",
        "libx264",
        {"preset": "veryfast", "crf": "28", "x264-params": "keyint=60:min-keyint=60:scenecut=0:bframes=0"},
    ),
    StreamKind("H.264, B-frames", None, {}),
    StreamKind(
        "HEVC, temporal sub-layers",
        "libx265",
        {"preset": "ultrafast", "x265-params": "log-level=error:keyint=60:min-keyint=60:scenecut=0:temporal-layers=3"},
        hevc=True,
    ),
)


@dataclass(frozen=True)
class Run:
    cpu_per_camera_minute: float
    decoded_fps: float  # per camera
    skipped_fps: float
    sampled_fps: float


def encode(kind: StreamKind, out: Path) -> Path:
    """The recording re-encoded as ``kind`` (or itself)."""
    if kind.codec is None:
        return SOURCE
    with av.open(str(SOURCE)) as src, av.open(str(out), "w") as dst:
        stream: Any = dst.add_stream(kind.codec, rate=30, options=dict(kind.options))
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            frame.pts, frame.time_base = i, Fraction(1, 30)
            for packet in stream.encode(frame):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
    return out


def repeat(clip: Path, out: Path, seconds: float) -> Path:
    """``clip`` back to back (packets copied, timestamps shifted) until it lasts at least ``seconds``."""
    with av.open(str(clip)) as src:
        stream = src.streams.video[0]
        packets = [p for p in src.demux(stream) if p.dts is not None]
        tb = stream.time_base
        assert tb is not None
        pts = [p.pts for p in packets if p.pts is not None]
        span = max(pts) + (packets[-1].duration or 0) - min(pts)
        copies = int(seconds / float(span * tb)) + 1
        with av.open(str(out), "w") as dst:
            target = dst.add_stream_from_template(stream)
            for k in range(copies):
                for p in packets:
                    q = av.Packet(bytes(p))
                    q.pts = p.pts + k * span if p.pts is not None else None
                    q.dts = (p.dts or 0) + k * span
                    q.duration = p.duration
                    q.time_base = tb
                    if p.is_keyframe:
                        q.is_keyframe = True
                    q.stream = target
                    dst.mux(q)
    return out


async def measure(url: str, cameras: int, fps: float, decoding: DecodeOptions, warmup: float, seconds: float) -> Run:
    sources = [LiveSource(f"cam{i}", url, fps, LiveOptions(decoding=decoding)) for i in range(cameras)]
    stop = asyncio.Event()

    async def drain(source: LiveSource) -> None:
        async for _ in source.frames():
            if stop.is_set():
                return

    tasks = [asyncio.create_task(drain(s)) for s in sources]
    try:
        await asyncio.sleep(warmup)
        counts0 = [(s.counts.decoded, s.counts.skipped, s.counts.sampled) for s in sources]
        c0, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - c0, time.monotonic() - t0
        counts1 = [(s.counts.decoded, s.counts.skipped, s.counts.sampled) for s in sources]
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    per = [sum(b[i] - a[i] for a, b in zip(counts0, counts1, strict=True)) / cameras / wall for i in range(3)]
    return Run(cpu / cameras / (wall / 60), per[0], per[1], per[2])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cameras", type=int, default=2, help="live sources at once (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per stream and mode (default: %(default)s)")
    parser.add_argument("--fps", type=float, default=5.0, help="sampling rate (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.cameras < 1 or args.seconds <= 0 or args.warmup < 0 or args.repeats < 1 or args.fps <= 0:
        parser.error("--cameras and --repeats must be >= 1, --seconds and --fps > 0, --warmup >= 0")
    measured = revision()
    load_before = load_average()
    modes = {"decode every frame": DecodeOptions(skip=False), "skip": DecodeOptions()}
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="live_cpu_") as tmp:
        for n, kind in enumerate(KINDS):
            print(f"preparing {kind.name}...", file=sys.stderr, flush=True)
            clip = encode(kind, Path(tmp) / f"clip{n}.mp4")
            long = repeat(clip, Path(tmp) / f"long{n}.mp4", args.warmup + args.seconds + 5)
            runs: dict[str, list[Run]] = {mode: [] for mode in modes}
            for i in range(args.repeats):
                for mode, decoding in modes.items():
                    flags = ["--file", str(long), "--once", *(["--hevc"] if kind.hevc else [])]
                    server = RtspServer(free_port(), flags)
                    server.start()
                    try:
                        run = measure(server.url(), args.cameras, args.fps, decoding, args.warmup, args.seconds)
                        runs[mode].append(asyncio.run(run))
                    finally:
                        server.kill()
                print(f"{kind.name}: round {i + 1}/{args.repeats} done", file=sys.stderr, flush=True)
            base = statistics.median(r.cpu_per_camera_minute for r in runs["decode every frame"])
            for mode, rs in runs.items():
                cpu = statistics.median(r.cpu_per_camera_minute for r in rs)
                rows.append(
                    f"| {kind.name} | {mode} | {cpu:.2f} | {base / cpu:.2f}x "
                    f"| {statistics.median(r.decoded_fps for r in rs):.1f} "
                    f"| {statistics.median(r.skipped_fps for r in rs):.1f} "
                    f"| {statistics.median(r.sampled_fps for r in rs):.2f} |"
                )
    print(f"streams: from {SOURCE.relative_to(ROOT)} (1280x720, 30 fps), served over RTSP/TCP by gst-rtsp-server")
    print(f"streamprep: {measured}")
    print(f"machine: {machine()}")
    print(f"libraries: {versions()}")
    print(
        f"{args.cameras} camera(s) per run at --fps {args.fps:g}; {args.warmup:g} s warm-up, {args.seconds:g} s "
        f"measured; {args.repeats} run(s) per stream and mode, modes alternating; medians"
    )
    print(f"load average (1/5/15 min): {load_before} before, {load_average()} after")
    print()
    print(
        "| stream | decoding | CPU s per camera-minute | CPU vs decode every frame | decoded fps per camera "
        "| left out fps per camera | sampled fps per camera |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
