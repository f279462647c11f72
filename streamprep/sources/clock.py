"""When was a live frame captured? The best clock a stream offers, checked before it is believed.

Three clocks, best first (a frame's ``capture_clock`` says which one its ``captured_at`` came from):

``camera``
    The camera's own wall clock. An RTSP camera sends RTCP sender reports, each mapping an RTP
    timestamp to its NTP wall time; FFmpeg turns the first one into the container's
    ``start_time_realtime`` (the wall time, in microseconds, of pts 0), so a frame was captured at
    ``start_time_realtime / 1e6 + pts * time_base``. Until the first report arrives (a second or two after
    connecting) there is no camera clock.
``arrival``
    When the demuxer handed over the frame's first packet. It includes neither the camera's encoding
    nor the network, and where FFmpeg's parser must see the next frame begin before it ends this one
    (H.264 and H.265 over RTSP) it is up to one frame interval late: ages from it are too low by that much.
``decode``
    When the decoder handed the frame over (files, and frames without a timestamp).

A camera clock that is not synchronised with ours would make ages negative or absurd, so it is checked
against arrival times, per connection: it is believed once the first ``_SETTLE`` frames that carry it put
their capture at most ``AHEAD_TOLERANCE_S`` after their arrival and at most ``BEHIND_LIMIT_S`` before it
(the smallest difference counts: it is the one least delayed by the network or by this machine), and it
is dropped for the rest of the connection as soon as a frame's capture time lies more than
``AHEAD_TOLERANCE_S`` after its arrival (a frame cannot arrive before it was captured) or more than
``JUMP_LIMIT_S`` before it (the camera's clock jumped). Either way one line is logged with the figures,
and the frames carry ``arrival`` instead. A camera clock less than ``BEHIND_LIMIT_S`` behind ours cannot be
told from a slow network; its ages are too high by its error.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from streamprep.values.frames import CaptureClock

log = logging.getLogger(__name__)

AHEAD_TOLERANCE_S = 0.05
BEHIND_LIMIT_S = 2.0
JUMP_LIMIT_S = 60.0
_SETTLE = 30  # frames with a camera time looked at before the camera clock is believed
_ARRIVALS = 128  # packet arrival times remembered (frame threading holds a few frames back; live: none)


@dataclass(frozen=True, slots=True)
class Capture:
    """When a frame was captured (Unix seconds) and by which clock."""

    at: float
    clock: CaptureClock


class _Stamped:
    """A container whose ``demux`` notes when each packet arrived; everything else passes through."""

    def __init__(self, container: Any, arrivals: collections.OrderedDict[int, float]) -> None:
        self._container = container
        self._arrivals = arrivals

    def demux(self, *args: Any, **kwargs: Any) -> Any:
        arrivals = self._arrivals
        for packet in self._container.demux(*args, **kwargs):
            pts = packet.pts
            if pts is not None and pts not in arrivals:
                arrivals[pts] = time.time()
                if len(arrivals) > _ARRIVALS:
                    arrivals.popitem(last=False)
            yield packet

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)


class CameraCheck:
    """Whether to believe a camera's clock, from ``transit`` = arrival - camera capture time, frame by frame
    (see the module's docstring). ``rejected`` says why it is not believed; that lasts until reconnect."""

    def __init__(self, source_id: str) -> None:
        self.source_id = source_id
        self.believed = False
        self.rejected: str | None = None
        self._settling: list[float] = []

    def observe(self, transit: float) -> bool:
        """True if this frame's camera time is to be believed."""
        if self.rejected is not None:
            return False
        if self.believed:
            if transit < -AHEAD_TOLERANCE_S or transit > JUMP_LIMIT_S:
                self._reject(transit)
                return False
            return True
        self._settling.append(transit)
        if len(self._settling) < _SETTLE:
            return False
        least = min(self._settling)
        self._settling.clear()
        if least < -AHEAD_TOLERANCE_S or least > BEHIND_LIMIT_S:
            self._reject(least)
            return False
        self.believed = True
        log.info(
            "source %s: capture times from the camera's clock (RTCP sender reports); "
            "first packets arrive %.1f ms after capture",
            self.source_id,
            least * 1000.0,
        )
        return True

    def _reject(self, transit: float) -> None:
        where = "after the frames arrived" if transit < 0 else "before the frames arrived"
        self.rejected = f"its capture times lie {abs(transit):.3f} s {where}"
        log.warning(
            "source %s: camera clock ignored until reconnect: %s (not synchronised with this machine?); "
            "ages count from packet arrival",
            self.source_id,
            self.rejected,
        )


class CaptureClocks:
    """Capture times for the frames of one connection to a live source.

    Decode through :meth:`stamped` (the container with arrival stamping) and ask :meth:`capture` for each
    decoded frame. Not thread-safe: one per decode thread and connection.
    """

    def __init__(self, source_id: str, container: Any, stream: Any) -> None:
        self._container = container
        self._time_base: Fraction | None = stream.time_base
        self._arrivals: collections.OrderedDict[int, float] = collections.OrderedDict()
        self.check = CameraCheck(source_id)

    def stamped(self) -> _Stamped:
        """The container, with every packet's arrival noted for :meth:`capture`."""
        return _Stamped(self._container, self._arrivals)

    def capture(self, pts: int | None, decoded_at: float) -> Capture:
        """The capture time of a frame with raw ``pts`` (stream time base) that was decoded at ``decoded_at``."""
        arrival = self._arrivals.pop(pts, None) if pts is not None else None
        if arrival is None:
            return Capture(decoded_at, "decode")
        camera = self._camera_time(pts)
        if camera is not None and self.check.observe(arrival - camera):
            return Capture(min(camera, arrival), "camera")  # within the tolerance, never after it arrived
        return Capture(arrival, "arrival")

    def _camera_time(self, pts: int | None) -> float | None:
        if self.check.rejected is not None or pts is None or self._time_base is None:
            return None
        realtime = self._container.start_time_realtime
        if realtime is None:
            return None
        return float(realtime / 1_000_000 + pts * self._time_base)
