"""A real RTSP server for the tests: GStreamer's gst-rtsp-server, from Debian's packages.

Run with Debian's interpreter (PyGObject is not in the venv):
    /usr/bin/python3 tests/servers/rtsp_server.py --port 8554 --file recordings/demo_720p.mp4
    /usr/bin/python3 tests/servers/rtsp_server.py --port 8554 --pattern
Serves ``rtsp://127.0.0.1:PORT/stream`` on 127.0.0.1 only: an H.264 MP4 (``--hevc``: an HEVC one)
without re-encoding (looped by default, so a client can connect at any time), or an encoded live test
pattern. With ``--user`` and ``--password`` it requires basic authentication. Prints ``READY`` on stdout
once it listens.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PATTERN = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width={w},height={h},framerate={fps}/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} ! video/x-h264,profile=baseline "
    "! rtph264pay name=pay0 pt=96 config-interval=1 )"
)
FILE = (
    "( multifilesrc location={path} loop={loop} ! qtdemux ! {codec}parse config-interval=-1 "
    "! rtp{codec}pay name=pay0 pt=96 config-interval=1 )"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--file")
    parser.add_argument("--once", action="store_true", help="play the file once instead of looping")
    parser.add_argument("--hevc", action="store_true", help="the file is HEVC, not H.264")
    parser.add_argument("--pattern", action="store_true")
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    if args.file:
        codec = "h265" if args.hevc else "h264"
        launch = FILE.format(path=args.file, loop="false" if args.once else "true", codec=codec)
    else:
        w, h = args.size.split("x")
        launch = PATTERN.format(w=w, h=h, fps=args.fps)
    factory.set_launch(launch)
    factory.set_shared(True)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("user", "media.factory.access", True)
        permissions.add_permission_for_role("user", "media.factory.construct", True)
        factory.set_permissions(permissions)
    serve(server, factory, args.port)


def serve(server: Any, factory: Any, port: int) -> None:
    """Mount ``factory`` at ``/stream``, listen, say ``READY`` and serve until SIGTERM or SIGINT."""
    server.get_mount_points().add_factory("/stream", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr)
        sys.exit(1)
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print("READY", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
