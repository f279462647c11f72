"""``streamprep record``: copy a stream into a file without re-encoding, to replay a field problem in tests."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from streamprep.sources.live import LiveOptions, open_input
from streamprep.values.errors import SinkError, SourceError, SourceLostError, SourceOpenError
from streamprep.values.redact import redact_text, redact_url

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recording:
    path: Path
    packets: int
    keyframes: int
    seconds: float


def record(url: str, seconds: float, out: Path, options: LiveOptions | None = None) -> Recording:
    """Copy ``seconds`` of ``url``'s first video stream into ``out``, starting at a keyframe.

    Timestamps are rebased to start at zero. Blocking: run it off the event loop.
    """
    # a file's header needs the stream's full parameters: probe as usual rather than open for low delay
    options = dataclasses.replace(options or LiveOptions(), low_delay=False)
    safe = redact_url(url)
    try:
        source, stream = open_input("record", url, options)
    except SourceError:
        raise
    except (av.error.FFmpegError, OSError) as exc:
        reason = redact_text(getattr(exc, "strerror", None) or str(exc))
        raise SourceOpenError("record", f"cannot open {safe}: {reason}") from None
    try:
        try:
            sink = av.open(str(out), mode="w")
        except (av.error.FFmpegError, OSError) as exc:
            raise SinkError(f"output file {out}: {getattr(exc, 'strerror', None) or exc}") from None
        with sink:
            target = sink.add_stream_from_template(stream)
            time_base: Fraction = stream.time_base
            start: int | None = None
            packets = keyframes = 0
            last = 0.0
            try:
                for packet in source.demux(stream):
                    if packet.dts is None or packet.pts is None:
                        continue  # the demuxer's flush packet, or a packet FFmpeg cannot place
                    if start is None:
                        if not packet.is_keyframe:
                            continue  # a recording must start where a decoder can
                        start = packet.dts
                    elapsed = float((packet.pts - start) * time_base)
                    if elapsed >= seconds:
                        break
                    packet.pts -= start
                    packet.dts -= start
                    packet.stream = target
                    sink.mux(packet)
                    packets += 1
                    keyframes += int(packet.is_keyframe)
                    last = max(last, elapsed)
            except av.error.FFmpegError as exc:
                reason = redact_text(getattr(exc, "strerror", None) or str(exc))
                raise SourceLostError("record", f"{safe}: {reason} after {packets} packets") from None
    finally:
        source.close()
    if packets == 0:
        raise SourceLostError("record", f"{safe}: no keyframe arrived; nothing was recorded")
    log.info("recorded %d packets (%d keyframes, %.2f s) of %s into %s", packets, keyframes, last, safe, out)
    return Recording(out, packets, keyframes, last)
