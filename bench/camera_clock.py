"""The camera clock against the time burnt into each frame, per start of the test camera (issue 19).

For each of ``--starts`` fresh ``tests/servers/clock_rtsp_server.py`` processes (extra arguments after ``--``
go to the server, e.g. ``-- --capture-lead 60``), one client opens the stream exactly as streamprep opens a
live input (``open_input``: RTSP over TCP, slice threads, ``nobuffer``, ``probesize=32``), stamps packet
arrival with streamprep's own ``CaptureClocks``, decodes ``--frames`` frames once FFmpeg has the first RTCP
sender report, and reads the time code from each decoded frame's luma. Per frame it compares, against the
time code (the wall time the server burnt into the frame as it pushed it into x264):

- ``camera``: the RTP to NTP mapping of the sender reports, ``start_time_realtime + pts`` (what streamprep
  takes as the capture time once the camera clock is believed);
- ``arrival``: when the demuxer handed the frame's first packet over;
- ``decoded``: when the decoder handed the frame over.

Medians per start (and the camera column's range) are printed. If the camera column stays put while the
true age moves from start to start, the sender reports do not describe what the time code does.

Run from the repository root::

    .venv/bin/python bench/camera_clock.py [--starts 5] [--frames 150] [-- SERVER ARGS]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from benchenv import load_average, machine, revision, versions

from streamprep.sources.clock import CaptureClocks
from streamprep.sources.live import LiveOptions, open_input

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from servers.rtsp import CLOCK_SERVER, RtspServer, free_port  # noqa: E402
from servers.timecode import read_time  # noqa: E402


def one_start(server_args: list[str], frames: int) -> list[tuple[float, float, float]]:
    """(camera, arrival, decoded) minus the time code, in ms, for ``frames`` frames of a fresh server."""
    server = RtspServer(free_port(), server_args, script=CLOCK_SERVER)
    server.start()
    rows: list[tuple[float, float, float]] = []
    try:
        container, stream = open_input("bench", server.url(), LiveOptions())
        clocks = CaptureClocks("bench", container, stream)
        try:
            for packet in clocks.stamped().demux(stream):
                for frame in packet.decode():
                    decoded = time.time()
                    arrival = clocks._arrivals.pop(frame.pts, None) if frame.pts is not None else None
                    realtime = container.start_time_realtime
                    code = read_time(frame.to_ndarray(format="gray"), decoded)
                    if realtime is None or code is None or arrival is None:
                        continue  # before the first sender report, or no packet arrival for this pts
                    camera = realtime / 1e6 + float(frame.pts * stream.time_base)
                    rows.append(((camera - code) * 1e3, (arrival - code) * 1e3, (decoded - code) * 1e3))
                if len(rows) >= frames:
                    break
        finally:
            container.close()
    finally:
        server.kill()
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    server_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--starts", type=int, default=5, help="fresh server processes (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=150, help="frames measured per start (default: %(default)s)")
    args = parser.parse_args(own)
    print(f"streamprep: {revision()}")
    print(f"machine: {machine()}; {versions()}")
    print(f"server: clock_rtsp_server.py {' '.join(server_args) or '(defaults: 1280x720, 30 fps, pan)'}")
    print(f"load average (1/5/15 min) before: {load_average()}")
    print()
    print("| start | frames | camera - code ms, p50 (min..max) | arrival - code ms, p50 | decoded - code ms, p50 |")
    print("|---:|---:|---:|---:|---:|")
    for start in range(1, args.starts + 1):
        rows = one_start(server_args, args.frames)
        camera, arrival, decoded = ([r[i] for r in rows] for i in range(3))
        print(
            f"| {start} | {len(rows)} | {statistics.median(camera):.1f} ({min(camera):.1f}..{max(camera):.1f}) "
            f"| {statistics.median(arrival):.1f} | {statistics.median(decoded):.1f} |",
            flush=True,
        )
    print(f"\nload average (1/5/15 min) after: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
