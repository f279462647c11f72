"""An RTSP test camera that burns its wall-clock time into every frame, for ground-truth latency.

Run with Debian's interpreter (PyGObject is not in the venv)::

    /usr/bin/python3 tests/servers/clock_rtsp_server.py --port 8554 [--size 1280x720] [--fps 30]
        [--no-rtcp] [--camera-clock ntp|running-time] [--bitrate 2048] [--background pan|ball]
        [--capture-lead MS] [--send-delay MS]

Serves ``rtsp://127.0.0.1:PORT/stream`` on 127.0.0.1 only. The picture is one second of a bundled
recording (``recordings/pan_1080p.mp4``, a photo panned and zoomed, decoded with openh264 and played
forwards and backwards) or GStreamer's moving ball on black. An appsrc pushes it at the frame rate, each
frame with ``time.time()`` written into its top band as it is pushed (``timecode.py``), straight into
x264 (``tune=zerolatency speed-preset=ultrafast``, a keyframe a second, baseline profile) and RTP. A client
reads the time back from what it decoded, or from the tensor a model was given, and knows exactly how old
that frame is.

RTCP sender reports (RFC 3550: each maps an RTP timestamp to the sender's NTP wall time) are sent by
default, mapping each frame's RTP timestamp to its capture time on this machine's clock, the way a camera
synchronised by NTP does. ``--no-rtcp`` sends none (a camera whose clock a client cannot learn);
``--camera-clock running-time`` sends reports whose NTP times count from the pipeline start (a camera
whose clock is not set: it believes it is 1900).

What the camera clock can see: the sender reports map a frame's RTP timestamp to the wall time at which
the RTP clock stamped it, which here (appsrc ``do-timestamp``) is the moment the frame is pushed, the same
moment its time code is read. A real camera may stamp at exposure or only when the frame reaches its
encoder; whatever happens before the stamp is invisible to a client. ``--capture-lead MS`` models that: the
time burnt in is MS milliseconds before the stamp (the frame was captured MS before the camera stamped it),
so ages counted from the camera's clock are MS too low against the burnt-in truth. What happens after the
stamp is seen: with ``--send-delay MS`` each frame is stamped (its RTP time, and its time code, minus the
lead) MS milliseconds before it is pushed, as in a camera that stamps at exposure and then spends MS on the
frame before sending it: ages from the camera clock include those MS, ages from packet arrival do not.

The media is shared: every client gets the same stream from one encoder. Prints ``READY`` on stdout once it listens.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

import gi
from rtsp_server import serve
from timecode import band_height, luma_row

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer  # noqa: E402

CAPS = "video/x-raw,format=I420,width={w},height={h},framerate={fps}/1"
PAN = Path(__file__).resolve().parents[2] / "recordings" / "pan_1080p.mp4"
BACKGROUNDS = {
    # the first second of a bundled recording: a photo panned and zoomed, real texture in motion
    "pan": f"filesrc location={PAN} ! qtdemux ! h264parse ! openh264dec ! videoconvert ! videoscale "
    "! videorate ! " + CAPS + " ! appsink name=out sync=false max-buffers={n} drop=false",
    # GStreamer's moving ball on black: almost nothing to encode or decode
    "ball": "videotestsrc pattern=ball num-buffers={n} ! " + CAPS + " ! appsink name=out sync=false",
}
LAUNCH = (
    "( appsrc name=src is-live=true do-timestamp=true format=time max-buffers=2 leaky-type=downstream "
    "caps=" + CAPS + " ! x264enc name=enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
    "bitrate={bitrate} ! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1 )"
)


def background(kind: str, w: int, h: int, fps: int) -> list[bytes]:
    """One second of video as raw I420 frames, played forwards then backwards (no jump when it loops)."""
    pipeline = Gst.parse_launch(BACKGROUNDS[kind].format(n=fps, w=w, h=h, fps=fps))
    sink = pipeline.get_by_name("out")
    pipeline.set_state(Gst.State.PLAYING)
    frames = []
    while len(frames) < fps and (sample := sink.emit("pull-sample")) is not None:
        buffer = sample.get_buffer()
        frames.append(buffer.extract_dup(0, buffer.get_size()))
    pipeline.set_state(Gst.State.NULL)
    if len(frames) != fps:
        raise RuntimeError(f"background {kind}: {len(frames)} frames of {fps}")
    return frames + frames[-2:0:-1]


class Camera:
    """Pushes frames into the media's appsrc at the frame rate, each with ``time.time()`` burnt in as it is
    pushed, i.e. just before x264 encodes it. One thread per prepared media; it stops when the media does."""

    def __init__(self, w: int, h: int, fps: int, frames: list[bytes], lead_ms: int = 0, delay_ms: int = 0) -> None:
        self.w, self.h, self.fps = w, h, fps
        self.lead_ms = lead_ms  # the frame was captured this long before the camera stamped it
        self.delay_ms = delay_ms  # and stamped this long before it is pushed (sent)
        self.rows = band_height(h)
        chroma = b"\x80" * ((w // 2) * (self.rows // 2))
        plane = w * h
        quarter = (w // 2) * (h // 2)
        # each background frame cut around the band: Y below the band, U and V with their band blanked
        self.rests = [
            (
                f[w * self.rows : plane],
                chroma + f[plane + len(chroma) : plane + quarter] + chroma + f[plane + quarter + len(chroma) :],
            )
            for f in frames
        ]

    def run(self, appsrc: Any, stop: threading.Event) -> None:
        start = time.monotonic()
        n = 0
        while not stop.is_set():
            due = start + n / self.fps
            late = time.monotonic() - due
            if late > 1.0 / self.fps:  # this thread was held up: skip the frames that are due already
                n += int(late * self.fps)
                continue
            if late < 0 and stop.wait(-late):
                return
            y_rest, chroma = self.rests[n % len(self.rests)]
            clock = appsrc.get_clock()
            running = clock.get_time() - appsrc.get_base_time() if clock is not None else None
            stamped_ms = int(time.time() * 1000) - self.delay_ms
            band = luma_row(stamped_ms - self.lead_ms, self.w) * self.rows
            buffer = Gst.Buffer.new_wrapped(band + y_rest + chroma)
            if self.delay_ms and running is not None and running > self.delay_ms * Gst.MSECOND:
                buffer.pts = buffer.dts = running - self.delay_ms * Gst.MSECOND  # else appsrc stamps it (now)
            result = appsrc.emit("push-buffer", buffer)
            if result != Gst.FlowReturn.OK:
                return
            n += 1


def make_media_type(camera_clock: str) -> Any:
    class ClockMedia(GstRtspServer.RTSPMedia):  # type: ignore[misc]
        """RTCP sender reports from the chosen NTP time source, mapping RTP time to capture time."""

        def do_setup_rtpbin(self, rtpbin: Any) -> bool:
            rtpbin.set_property("ntp-time-source", camera_clock)
            rtpbin.set_property("rtcp-sync-send-time", False)
            return True

    return ClockMedia


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--bitrate", type=int, default=2048, help="kbit/s")
    parser.add_argument("--no-rtcp", action="store_true", help="send no RTCP (no sender reports)")
    parser.add_argument("--camera-clock", choices=("ntp", "running-time"), default="ntp")
    parser.add_argument("--background", choices=sorted(BACKGROUNDS), default="pan")
    parser.add_argument("--send-delay", type=int, default=0, help="ms between the RTP stamp and sending")
    parser.add_argument(
        "--capture-lead", type=int, default=0, help="ms between capture (the time burnt in) and the RTP stamp"
    )
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))

    Gst.init(None)
    camera = Camera(w, h, args.fps, background(args.background, w, h, args.fps), args.capture_lead, args.send_delay)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(LAUNCH.format(w=w, h=h, fps=args.fps, bitrate=args.bitrate))
    factory.set_shared(True)
    factory.set_enable_rtcp(not args.no_rtcp)
    factory.set_media_gtype(make_media_type(args.camera_clock))

    def configure(_factory: Any, media: Any) -> None:
        appsrc = media.get_element().get_by_name("src")
        stop = threading.Event()
        media.connect("unprepared", lambda _media: stop.set())
        threading.Thread(target=camera.run, args=(appsrc, stop), daemon=True).start()

    factory.connect("media-configure", configure)
    serve(server, factory, args.port)


if __name__ == "__main__":
    main()
