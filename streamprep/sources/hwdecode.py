"""Hardware video decoding where the machine has it, software everywhere else.

At start, :func:`probe` picks a device once per setting (one info line when a device is used, a warning
when a device asked for by name is not usable, else a debug line saying why not):
``hwaccel = "auto"`` tries NVIDIA NVDEC (CUDA), VA-API, Intel Quick Sync and VideoToolbox in that order
(each only if the FFmpeg inside PyAV was built with it and a device actually opens); ``"off"`` decodes in
software; a device type (``"cuda"``, ``"vaapi"``, ``"qsv"``, ``"videotoolbox"``...) tries that one only.

Each stream then gets a :class:`Decoder`: on the chosen device when its codec has a hardware decoder
there, else FFmpeg's software decoder; and if the hardware decoder fails on the stream (it cannot be
opened, or it raises on a packet), that stream falls back to software at the next keyframe, with a log
line. Decoded hardware frames are downloaded once into system memory as NV12, which the preprocessor
resizes plane by plane at model size like I420 (no full-size colour conversion, no extra copy).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import av
from av.codec.context import CodecContext
from av.codec.hwaccel import HWAccel, hwdevices_available

log = logging.getLogger(__name__)

AUTO_ORDER = ("cuda", "vaapi", "qsv", "videotoolbox")
LABELS = {
    "cuda": "NVIDIA NVDEC (CUDA)",
    "vaapi": "VA-API",
    "qsv": "Intel Quick Sync",
    "videotoolbox": "Apple VideoToolbox",
    "d3d11va": "Direct3D 11",
    "d3d12va": "Direct3D 12",
    "dxva2": "DXVA2",
    "vdpau": "VDPAU",
    "vulkan": "Vulkan",
}
# devices whose decoding goes through a separate FFmpeg decoder rather than the software one's hwaccel
_DEDICATED = {"qsv": "{}_qsv"}


@dataclass(frozen=True)
class HwChoice:
    """The device chosen at start (None: software) and a sentence saying why."""

    device: str | None
    reason: str


_chosen: dict[str, HwChoice] = {}
_lock = threading.Lock()


def decoder_name(device: str, codec: str) -> str:
    return _DEDICATED.get(device, "{}").format(codec)


def _supports(device: str, codec: str) -> bool:
    try:
        decoder = av.Codec(decoder_name(device, codec), "r")
    except (av.error.FFmpegError, ValueError):
        return False
    return any(c.device_type.name == device and c.is_supported for c in decoder.hardware_configs)


def _unusable(device: str) -> str | None:
    """Why ``device`` cannot decode H.264 here, or None if it can (a device context opens)."""
    if device not in hwdevices_available():
        return "not in this PyAV's FFmpeg build"
    if not _supports(device, "h264"):
        return "FFmpeg has no H.264 decoder for it"
    try:
        HWAccel(device, allow_software_fallback=False).create(av.Codec(decoder_name(device, "h264"), "r"))
    except (av.error.FFmpegError, OSError, RuntimeError, NotImplementedError, ValueError) as exc:
        return f"no device opens ({getattr(exc, 'strerror', None) or exc})"
    return None


def _probe(setting: str) -> HwChoice:
    if setting == "off":
        return HwChoice(None, 'off (hwaccel = "off"): decoding in software')
    candidates = AUTO_ORDER if setting == "auto" else (setting,)
    refusals: list[str] = []
    for device in candidates:
        why = _unusable(device)
        if why is None:
            label = LABELS.get(device, device)
            rest = f" (before it: {'; '.join(refusals)})" if refusals else ""
            return HwChoice(device, f"{device} ({label}) chosen: a device opened{rest}")
        refusals.append(f"{device}: {why}")
    return HwChoice(None, f"none usable, decoding in software ({'; '.join(refusals)})")


def probe(setting: str) -> HwChoice:
    """The device for ``setting`` (``auto``, ``off`` or a device type), probed once per process and logged."""
    with _lock:
        choice = _chosen.get(setting)
        if choice is not None:
            return choice
        choice = _chosen[setting] = _probe(setting)
    if choice.device is not None:
        log.info("hardware decode: %s (%s)", choice.device, LABELS.get(choice.device, choice.device))
        log.debug("hardware decode: %s", choice.reason)
    elif setting not in ("auto", "off"):  # a device was asked for by name and cannot be had
        log.warning("hardware decode: %s", choice.reason)
    else:  # software, as on most machines: nothing to say unless asked (--debug)
        log.debug("hardware decode: %s", choice.reason)
    return choice


class Decoder:
    """Decodes one opened stream: on ``device`` when it can, else with the stream's own software decoder."""

    def __init__(self, stream: Any, device: str | None = None, source: str = "") -> None:
        self._software = stream.codec_context
        self._source = source
        self._stream = stream
        self.device: str | None = None
        self._ctx = self._software
        self._await_keyframe = False
        self._announced = device is None
        if device is not None:
            self._ctx = self._hardware(device)

    @property
    def codec_context(self) -> Any:
        return self._ctx

    def _hardware(self, device: str) -> Any:
        name = self._software.name
        if not _supports(device, name):
            log.info("source %s: %s has no %s decoder; decoding in software", self._source, device, name)
            self._announced = True
            return self._software
        try:
            hwaccel = HWAccel(device, allow_software_fallback=True)
            ctx: Any = CodecContext.create(decoder_name(device, name), "r", hwaccel=hwaccel)
            if self._software.extradata:
                ctx.extradata = self._software.extradata
            if self._software.width and self._software.height:
                ctx.width, ctx.height = self._software.width, self._software.height
            ctx.open()
        except (av.error.FFmpegError, OSError, RuntimeError, NotImplementedError, ValueError) as exc:
            log.warning(
                "source %s: hardware decode on %s failed to start for this %s stream (%s); decoding in software",
                self._source,
                device,
                name,
                getattr(exc, "strerror", None) or exc,
            )
            self._announced = True
            return self._software
        self.device = device
        return ctx

    def decode(self, packet: Any) -> list[Any]:
        """The frames ``packet`` completes. Corrupt data raises ``av.error.InvalidDataError`` as usual."""
        if self._await_keyframe:
            if not packet.is_keyframe and packet.size:
                return []
            self._await_keyframe = False
        try:
            frames: list[Any] = self._ctx.decode(packet)
        except av.error.InvalidDataError:
            raise
        except av.error.FFmpegError as exc:
            if self.device is None:
                raise
            self._fall_back(f"{exc.strerror or exc}")
            return self.decode(packet) if packet.is_keyframe else []
        if frames and not self._announced:
            self._announced = True
            where = self.device if self._ctx.is_hwaccel else "software (FFmpeg fell back for this stream)"
            log.info("source %s: decoding %s on %s", self._source, self._software.name, where)
        return frames

    def drain(self) -> list[Any]:
        """Everything still inside the decoder, then a reset so that decoding can go on (keyframe mode)."""
        frames: list[Any] = self._ctx.decode(None)
        self._ctx.flush_buffers()
        return frames

    def _fall_back(self, reason: str) -> None:
        log.warning(
            "source %s: hardware decode on %s failed (%s); decoding in software from the next keyframe",
            self._source,
            self.device,
            reason,
        )
        self.device = None
        self._ctx = self._software
        self._await_keyframe = True
