"""Live inputs are opened and decoded for delay, files for throughput (``decode_settings``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import RECORDINGS, RtspServer

from streamprep.sources.live import LiveOptions, classify, decode_settings, open_input


@pytest.mark.parametrize(
    ("url", "thread_type", "options"),
    [
        ("rtsp://cam/stream", "SLICE", {"rtsp_transport": "tcp", "fflags": "nobuffer", "probesize": "32"}),
        ("udp://127.0.0.1:5000", "SLICE", {"fflags": "nobuffer"}),
        ("/dev/video0", "SLICE", {"fflags": "nobuffer"}),
        ("lavfi:testsrc2=size=320x240:rate=30,realtime", "SLICE", {}),
        ("recordings/demo_720p.mp4", "AUTO", {}),  # a file paced in real time keeps frame threads
    ],
)
def test_settings_per_kind(url: str, thread_type: str, options: dict[str, str]) -> None:
    kind, _, target = classify(url)
    settings = decode_settings(kind, target, LiveOptions())
    assert (settings.thread_type, settings.options) == (thread_type, options)


def test_throughput_on_request_and_own_options_win() -> None:
    throughput = decode_settings("network", "rtsp://cam/stream", LiveOptions(low_delay=False, transport="udp"))
    assert throughput.thread_type == "AUTO"
    assert throughput.options == {"rtsp_transport": "udp", "fflags": "nobuffer"}
    own = decode_settings("network", "rtsp://cam/stream", LiveOptions(input_options={"probesize": "5000000"}))
    assert own.options["probesize"] == "5000000"


def test_a_real_camera_is_opened_for_delay(clock_server: Callable[..., RtspServer]) -> None:
    server = clock_server()
    container, stream = open_input("cam", server.url(), LiveOptions())
    try:
        assert stream.thread_type.name == "SLICE"
        frame = next(iter(container.decode(stream)))
        assert (frame.width, frame.height) == (1280, 720)
    finally:
        container.close()
    file, stream = open_input("file", str(RECORDINGS / "demo_720p.mp4"), LiveOptions(realtime=True))
    try:
        assert stream.thread_type.name == "AUTO"
    finally:
        file.close()
