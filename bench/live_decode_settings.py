"""Decoder settings for a live camera: how old each frame is when the decoder hands it over, and the CPU.

Source: ``tests/servers/clock_rtsp_server.py`` (1280x720 at 30 fps, a panned photo, x264 ``ultrafast
zerolatency`` at 2 Mbit/s, RTCP sender reports), which burns its wall-clock time into every frame just
before encoding. A PyAV decode loop over RTSP/TCP reads the time back from the top rows of each decoded
frame's Y plane (a view, no copy: the reading costs ~0.1 ms a frame), so the age at decoder output is
exact.

Each setting gets a fresh server, ``--seconds`` of decoding after a 2 s warm-up, ``--rounds`` times in
turn (the machine is shared and noisy: rounds interleave the settings). Reported per setting: the time
``av.open`` took, the delay to the first frame and that frame's age, the steady age p50/p99, and the
CPU this process used while decoding, in % of one core (that is the cost per camera).

    .venv/bin/python bench/live_decode_settings.py [--seconds 15] [--rounds 2]
"""

from __future__ import annotations

import argparse
import datetime
import resource
import sys
import time
from dataclasses import dataclass, field

import av
import numpy as np
from benchenv import ROOT, load_average, machine, revision, versions

from streamprep.sources.live import LiveOptions, decode_settings

sys.path.insert(0, str(ROOT / "tests"))
from servers.rtsp import CLOCK_SERVER, RtspServer, free_port
from servers.timecode import band_height, read_time

WARMUP_S = 2.0


@dataclass(frozen=True)
class Setting:
    name: str
    options: dict[str, str]
    thread_type: str
    thread_count: int = 0  # 0: FFmpeg's choice
    low_delay: bool = False


def settings() -> list[Setting]:
    chosen = decode_settings("network", "rtsp://x", LiveOptions())
    return [
        Setting("AUTO (frame threads), nobuffer — before", {"rtsp_transport": "tcp", "fflags": "nobuffer"}, "AUTO"),
        Setting("SLICE, FFmpeg's default buffering", {"rtsp_transport": "tcp"}, "SLICE"),
        Setting("SLICE, nobuffer", {"rtsp_transport": "tcp", "fflags": "nobuffer"}, "SLICE"),
        Setting("one thread, nobuffer", {"rtsp_transport": "tcp", "fflags": "nobuffer"}, "NONE", 1),
        Setting("SLICE, nobuffer, low_delay", {"rtsp_transport": "tcp", "fflags": "nobuffer"}, "SLICE", 0, True),
        Setting(
            f"streamprep now: {chosen.thread_type}, "
            + ", ".join(f"{k}={v}" for k, v in chosen.options.items() if k != "rtsp_transport"),
            chosen.options,
            chosen.thread_type,
        ),
    ]


@dataclass
class Measured:
    open_s: list[float] = field(default_factory=list)
    first_s: list[float] = field(default_factory=list)
    first_age_ms: list[float] = field(default_factory=list)
    ages_ms: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    seconds: float = 0.0
    unreadable: int = 0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def top_rows(frame: av.VideoFrame, rows: int) -> np.ndarray:
    """The first ``rows`` rows of the Y plane, without copying the frame."""
    plane = frame.planes[0]
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:rows, : frame.width]


def measure(setting: Setting, seconds: float, into: Measured) -> None:
    server = RtspServer(free_port(), ["--size", "1280x720", "--fps", "30"], script=CLOCK_SERVER)
    server.start()
    try:
        t0 = time.monotonic()
        container = av.open(server.url(), options=setting.options, timeout=(10, 10))
        into.open_s.append(time.monotonic() - t0)
        opened = time.monotonic()
        stream = container.streams.video[0]
        stream.thread_type = setting.thread_type
        if setting.thread_count:
            stream.thread_count = setting.thread_count
        if setting.low_delay:
            stream.codec_context.flags |= av.codec.context.Flags.low_delay
        rows = band_height(720)
        first = True
        cpu0 = measuring = None
        try:
            for frame in container.decode(stream):
                now = time.time()
                code = read_time(top_rows(frame, rows), now)
                if first:
                    into.first_s.append(time.monotonic() - opened)
                    if code is not None:
                        into.first_age_ms.append((now - code) * 1000.0)
                    first = False
                elapsed = time.monotonic() - opened
                if elapsed < WARMUP_S:
                    continue
                if cpu0 is None:
                    cpu0, measuring = cpu_seconds(), time.monotonic()
                if code is None:
                    into.unreadable += 1
                else:
                    into.ages_ms.append((now - code) * 1000.0)
                if elapsed >= WARMUP_S + seconds:
                    break
            assert cpu0 is not None and measuring is not None
            into.cpu_s += cpu_seconds() - cpu0
            into.seconds += time.monotonic() - measuring
        finally:
            container.close()
    finally:
        server.kill()


def pct(values: list[float], q: float) -> str:
    return f"{np.percentile(np.asarray(values), q):.1f}" if values else "—"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    load_before = load_average()
    chosen = settings()
    results = {s.name: Measured() for s in chosen}
    for round_ in range(args.rounds):
        for setting in chosen:
            print(f"round {round_ + 1}: {setting.name}", file=sys.stderr, flush=True)
            measure(setting, args.seconds, results[setting.name])
    print(f"date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"code: {revision()}")
    print(f"machine: {machine()}")
    print(f"libraries: {versions()}")
    print(
        f"camera: clock_rtsp_server.py 1280x720 30 fps over RTSP/TCP; {args.rounds} rounds of {args.seconds:g} s "
        f"per setting after {WARMUP_S:g} s; load average {load_before} before, {load_average()} after"
    )
    print()
    print(
        "| setting | av.open s | first frame after s | its age ms | age p50 ms | age p99 ms | frames "
        "| CPU % of one core |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, m in results.items():
        print(
            f"| {name} | {pct(m.open_s, 50)} | {pct(m.first_s, 50)} | {pct(m.first_age_ms, 50)} "
            f"| {pct(m.ages_ms, 50)} | {pct(m.ages_ms, 99)} | {len(m.ages_ms)} "
            f"| {100 * m.cpu_s / m.seconds:.1f} |"
        )
    print()
    print("open and first-frame figures are medians over the rounds; ages pool every frame of every round")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
