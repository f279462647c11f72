"""What an H.264 or HEVC packet says about itself, read from its NAL unit headers only.

Enough to decide, before decoding, whether any other picture can depend on a packet's picture
(H.264 ``nal_ref_idc == 0``; HEVC sub-layer non-reference NAL types at the highest temporal sub-layer),
whether it starts a closed GOP (IDR: nothing after it refers to anything before it), and whether it
carries parameter sets (never left out: later pictures need them). Packets are either length-prefixed
(MP4/MKV: ``avcC``/``hvcC`` extradata gives the length size) or Annex B byte streams (MPEG-TS, RTSP, raw).
Anything this reader cannot make sense of is reported as "unknown", and unknown means "decode it".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

_H264_VCL = frozenset(range(1, 6))  # non-IDR slice, data partitions A/B/C, IDR slice
_H264_IDR = 5
_H264_PARAMETER_SETS = frozenset({7, 8, 13, 15})  # SPS, PPS, SPS extension, subset SPS
_H264_EXTENSIONS = frozenset({14, 20, 21})  # prefix NAL, SVC/MVC and 3D slice extensions
_HEVC_VCL_MAX = 31
_HEVC_IDR = frozenset({19, 20})  # IDR_W_RADL, IDR_N_LP
_HEVC_SUBLAYER_NON_REF = frozenset({0, 2, 4, 6, 8, 10, 12, 14})  # TRAIL_N, TSA_N, STSA_N, RADL_N, RASL_N, RSV_N
_HEVC_RASL = frozenset({8, 9})  # may be dropped by the decoder after a random access
_HEVC_VPS, _HEVC_SPS, _HEVC_PPS = 32, 33, 34


class Codec(enum.Enum):
    H264 = "h264"
    HEVC = "hevc"


@dataclass(frozen=True, slots=True)
class PacketInfo:
    """What the headers say. ``reference`` is None when it cannot be told (then the packet is decoded)."""

    reference: bool | None
    idr: bool = False
    parameter_sets: bool = False
    may_be_dropped: bool = False  # HEVC RASL: not output when decoding starts at the CRA before it


UNKNOWN = PacketInfo(reference=None)


class NalReader:
    """Reads packets of one stream. ``codec`` is FFmpeg's decoder name; other codecs give ``UNKNOWN``."""

    def __init__(self, codec: str, extradata: bytes | None) -> None:
        self.codec = {"h264": Codec.H264, "hevc": Codec.HEVC}.get(codec)
        self.length_size = 0  # 0: Annex B start codes
        self.max_temporal_id: int | None = None  # HEVC: from the SPS (sps_max_sub_layers_minus1)
        data = extradata or b""
        if self.codec is Codec.H264 and len(data) >= 7 and data[0] == 1:
            self.length_size = (data[4] & 3) + 1
        elif self.codec is Codec.HEVC and len(data) >= 23 and data[0] == 1:
            self.length_size = (data[21] & 3) + 1
            self._read_hvcc_arrays(data)
        elif self.codec is Codec.HEVC and data:
            for unit in self._units(data, 0) or []:
                self._note_hevc(unit)

    @property
    def supported(self) -> bool:
        return self.codec is not None

    def read(self, data: bytes) -> PacketInfo:
        if self.codec is None:
            return UNKNOWN
        units = self._units(data, self.length_size)
        if not units:
            return UNKNOWN
        return self._h264(units) if self.codec is Codec.H264 else self._hevc(units)

    def _h264(self, units: list[bytes]) -> PacketInfo:
        vcl_ref: list[bool] = []
        idr = params = False
        for unit in units:
            header = unit[0]
            if header & 0x80:  # forbidden_zero_bit: not H.264
                return UNKNOWN
            kind = header & 0x1F
            if kind in _H264_VCL:
                vcl_ref.append(bool(header & 0x60))
                idr = idr or kind == _H264_IDR
            elif kind in _H264_PARAMETER_SETS:
                params = True
            elif kind in _H264_EXTENSIONS or kind > 23:  # SVC/MVC or unspecified: unknown territory
                return UNKNOWN
        if not vcl_ref:
            return PacketInfo(reference=None, parameter_sets=params)
        return PacketInfo(reference=any(vcl_ref), idr=idr, parameter_sets=params)

    def _hevc(self, units: list[bytes]) -> PacketInfo:
        refs: list[bool | None] = []
        idr = params = rasl = False
        for unit in units:
            if len(unit) < 2 or unit[0] & 0x80:
                return UNKNOWN
            kind = (unit[0] >> 1) & 0x3F
            layer = ((unit[0] & 1) << 5) | (unit[1] >> 3)
            temporal_id = (unit[1] & 7) - 1
            if layer != 0 or temporal_id < 0:  # multi-layer (scalable/3D) HEVC: not handled
                return UNKNOWN
            if kind in (_HEVC_VPS, _HEVC_SPS, _HEVC_PPS):
                params = True
                self._note_hevc(unit)
            elif kind <= _HEVC_VCL_MAX:
                idr = idr or kind in _HEVC_IDR
                rasl = rasl or kind in _HEVC_RASL
                if kind not in _HEVC_SUBLAYER_NON_REF:
                    refs.append(True)
                elif self.max_temporal_id is None or temporal_id > self.max_temporal_id:
                    refs.append(None)  # no SPS seen, or inconsistent with it
                else:
                    # non-reference for its own sub-layer; higher sub-layers may still use it
                    refs.append(temporal_id < self.max_temporal_id)
        if not refs:
            return PacketInfo(reference=None, parameter_sets=params)
        reference: bool | None = True if True in refs else (None if None in refs else False)
        return PacketInfo(reference=reference, idr=idr, parameter_sets=params, may_be_dropped=rasl)

    def _note_hevc(self, unit: bytes) -> None:
        """Remember the highest temporal sub-layer an SPS allows."""
        if len(unit) >= 3 and (unit[0] >> 1) & 0x3F == _HEVC_SPS:
            max_sub_layers = ((unit[2] >> 1) & 7) + 1
            self.max_temporal_id = max(self.max_temporal_id or 0, max_sub_layers - 1)

    def _read_hvcc_arrays(self, data: bytes) -> None:
        pos, count = 23, data[22]
        for _ in range(count):
            if pos + 3 > len(data):
                return
            units = int.from_bytes(data[pos + 1 : pos + 3], "big")
            pos += 3
            for _ in range(units):
                if pos + 2 > len(data):
                    return
                size = int.from_bytes(data[pos : pos + 2], "big")
                self._note_hevc(data[pos + 2 : pos + 2 + size])
                pos += 2 + size

    @staticmethod
    def _units(data: bytes, length_size: int) -> list[bytes] | None:
        """The first bytes (header, and a little of the payload) of each NAL unit; None if malformed."""
        units: list[bytes] = []
        if length_size:
            pos, end = 0, len(data)
            while pos < end:
                if pos + length_size > end:
                    return None
                size = int.from_bytes(data[pos : pos + length_size], "big")
                pos += length_size
                if size == 0 or pos + size > end:
                    return None
                units.append(data[pos : pos + min(size, 3)])
                pos += size
            return units
        start = data.find(b"\x00\x00\x01")
        while start >= 0:
            head = start + 3
            nxt = data.find(b"\x00\x00\x01", head)
            stop = len(data) if nxt < 0 else nxt
            if stop > head:
                units.append(data[head : min(stop, head + 3)])
            start = nxt
        return units or None
