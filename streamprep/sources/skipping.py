"""Leave undecoded the frames the sampler will not select, without changing which frames it selects.

The sampler (:mod:`streamprep.sources.sampling`) keeps the first frame, in presentation order, of each slot of
``1/fps`` seconds. Whether a frame can be that first frame is known from timestamps alone: if any other
frame of the stream has a timestamp in the same slot and earlier, it cannot. Packets arrive in decode
order, before their pictures, so the decision is made per packet, before decoding, from what has been
demuxed so far (a frame that might still be first is always decoded). A frame that cannot be selected
is left out when nothing else depends on it:

* a **non-reference** picture: H.264 ``nal_ref_idc == 0``, HEVC sub-layer non-reference NAL types at the
  highest temporal sub-layer (:mod:`streamprep.sources.nal`), or the demuxer's *disposable* flag;
* with look-ahead (files), the **tail of a closed GOP**: when the next keyframe is an IDR, nothing after
  it refers to anything before it, so every packet after the last one that can still be selected (or
  that carries parameter sets) is left out up to that keyframe, reference pictures included.

Where none of this can be told (other codecs without the flag, unparseable packets, missing timestamps)
every packet is decoded, as before. The skipper checks itself as frames come out: before the decoder has
produced its first frame, after timestamps go back (a new epoch), after a frame it expected never came
out (a corrupt packet) or a frame without a timestamp, it decodes everything until it is in step again.

``sample = "keyframes"`` is the opt-in sparse mode: only keyframes are decoded, and only those the
sampler keeps (the first keyframe at or after each slot boundary), each drained out of the decoder at
once so that live sources do not wait for the decoder's reorder delay.
"""

from __future__ import annotations

import bisect
import collections
import enum
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

from streamprep.sources.nal import UNKNOWN, NalReader, PacketInfo
from streamprep.sources.sampling import Sampler

log = logging.getLogger(__name__)

LOOKAHEAD_PACKETS = 600  # files: read ahead at most this many packets looking for the next keyframe
LOOKAHEAD_BYTES = 64 << 20
_MAX_TRACKED = 4096  # timestamps remembered without a frame coming out: past this, stop skipping
_REORDER_MAX = 16  # H.264/HEVC never hold more than 16 frames for reordering


class SampleMode(enum.StrEnum):
    EXACT = "exact"  # the first frame of each slot, exactly as decoding every frame would select
    KEYFRAMES = "keyframes"  # the first keyframe at or after each slot boundary; only keyframes are decoded


@dataclass(frozen=True)
class DecodeOptions:
    """How a source decodes: which frames it samples, whether it may leave frames undecoded, on what device."""

    sample: SampleMode = SampleMode.EXACT
    skip: bool = True  # leave out what the sampler will not select (exact mode); False decodes every frame
    hwaccel: str | None = None  # FFmpeg hardware device type chosen at start (streamprep.sources.hwdecode)


class Drain:
    """Marker in the packet sequence: drain the decoder now and reset it (keyframe mode)."""


DRAIN = Drain()


@dataclass(slots=True)
class _Item:
    packet: Any
    seq: int
    pts: int | None  # in the stream's time base
    key: bool
    info: PacketInfo
    countable: bool  # decoding every frame would output a frame with this pts
    size: int


class _Counts(Protocol):
    skipped: int


class Skipper:
    """Chooses, packet by packet, what the decoder of one opened stream gets.

    Use ``packets()`` on the demuxed packets (it may yield :data:`DRAIN`), and call ``presented()`` for
    every frame the decoder outputs, with the time the sampler sees for it, before asking for the next
    packet. ``lookahead`` (files only: it delays decoding) lets it skip the tails of closed GOPs. Each
    packet left out adds one to ``counts.skipped`` (and to ``self.skipped``).
    """

    def __init__(
        self,
        stream: Any,
        sampler: Sampler,
        mode: SampleMode = SampleMode.EXACT,
        *,
        skip: bool = True,
        lookahead: bool = False,
        source: str = "",
        counts: _Counts | None = None,
    ) -> None:
        ctx = stream.codec_context
        self._tb = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
        self._sampler = sampler
        self.mode = mode
        self._source = source
        self._reader = NalReader(ctx.name, ctx.extradata)
        self.active = mode is SampleMode.KEYFRAMES or (skip and sampler.fps is not None)
        self._lookahead = lookahead and self._reader.supported
        self.skipped = 0  # packets left undecoded
        self._counts = counts
        self._seq = 0
        # where sampler time stands against stream time (sampler pts - stream pts); learnt from frames
        self._offset: Fraction | None = None
        self._synced = False
        self._resync: set[int] = set()  # pts demuxed since the last loss of step
        self._counted: list[int] = []  # sorted pts of frames decoding everything would output, not yet out
        self._in_flight: list[int] = []  # sorted pts of counted packets sent to the decoder, not yet out
        self._last_out: int | None = None
        self._skipped_pts: list[int] = []  # sorted pts of skipped frames not yet passed by the output
        self._tail: tuple[int, int] | None = None  # (first seq to leave out, seq of the IDR ending it)
        self._unsynced_reason = ""

    # -- the packet side
    def packets(self, demuxed: Iterable[Any]) -> Iterator[Any]:
        """The packets to decode, in order, with :data:`DRAIN` where the decoder must be drained."""
        if not self.active:
            yield from demuxed
        elif self.mode is SampleMode.KEYFRAMES:
            yield from self._keyframes(demuxed)
        else:
            yield from self._exact(demuxed)

    def _item(self, packet: Any) -> _Item:
        self._seq += 1
        size = int(packet.size)
        if not size:
            return _Item(packet, self._seq, None, False, UNKNOWN, False, 0)
        info = self._reader.read(bytes(packet)) if self._reader.supported else UNKNOWN
        if info.reference is None and not self._reader.supported and packet.is_disposable:
            info = PacketInfo(reference=False)
        pts = packet.pts
        countable = pts is not None and not packet.is_discard and not info.may_be_dropped
        item = _Item(packet, self._seq, pts, bool(packet.is_keyframe), info, countable, size)
        if pts is None:
            return item
        if not self._synced:
            if len(self._resync) < _MAX_TRACKED:
                self._resync.add(pts)
        elif self._last_out is not None and pts <= self._last_out:
            self._lose_step(f"timestamps go back at pts {pts}")
            self._resync.add(pts)
        elif countable:
            bisect.insort(self._counted, pts)
            if len(self._counted) > _MAX_TRACKED:
                self._lose_step("no frame came out for too long")
        return item

    def _exact(self, demuxed: Iterable[Any]) -> Iterator[Any]:
        source = iter(demuxed)
        buffer: collections.deque[_Item] = collections.deque()
        keys: collections.deque[int] = collections.deque()  # seqs of the keyframes in the buffer
        buffered = 0
        ended = False
        while True:
            if not buffer:
                packet = next(source, None)
                if packet is None:
                    return
                item = self._item(packet)
                buffer.append(item)
                buffered += item.size
                if item.key:
                    keys.append(item.seq)
            head = buffer[0]
            if self._lookahead and head.info.reference and head.pts is not None:
                # read ahead to the next keyframe: is the rest of this GOP needed at all?
                while not ended and not (keys and keys[-1] > head.seq):
                    if len(buffer) >= LOOKAHEAD_PACKETS or buffered >= LOOKAHEAD_BYTES:
                        break
                    packet = next(source, None)
                    if packet is None:
                        ended = True
                        break
                    item = self._item(packet)
                    buffer.append(item)
                    buffered += item.size
                    if item.key:
                        keys.append(item.seq)
            buffer.popleft()
            buffered -= head.size
            while keys and keys[0] <= head.seq:
                keys.popleft()
            if self._needed(head, buffer, keys, ended):
                if self._synced and head.countable and head.pts is not None:
                    bisect.insort(self._in_flight, head.pts)
                    if len(self._in_flight) > _MAX_TRACKED:
                        self._lose_step("no frame came out for too long")
                yield head.packet
            else:
                self._skip(head.pts)

    def _needed(self, item: _Item, rest: collections.deque[_Item], keys: collections.deque[int], ended: bool) -> bool:
        if not item.size or item.pts is None or not self._synced or not item.countable:
            return True
        if item.info.parameter_sets:
            return True
        if item.info.reference is False and not self._selectable(item.pts):
            return False
        return not (self._lookahead and self._in_tail(item, rest, keys, ended))

    def _selectable(self, pts: int) -> bool:
        """False only if another frame decoding everything outputs is earlier in the same slot."""
        assert self._offset is not None
        slot = self._sampler.slot(pts * self._tb + self._offset)
        if slot is None:
            return True
        i = bisect.bisect_left(self._counted, pts)
        if i == 0:
            return True
        return self._sampler.slot(self._counted[i - 1] * self._tb + self._offset) != slot

    def _in_tail(self, item: _Item, rest: collections.deque[_Item], keys: collections.deque[int], ended: bool) -> bool:
        """Is ``item`` after the last packet of its closed GOP that is still needed?"""
        if self._tail is not None and item.seq < self._tail[1]:
            return item.seq >= self._tail[0]
        if keys:
            end = keys[0]
            boundary = next(x for x in rest if x.seq == end)
            if not (boundary.info.idr and boundary.info.reference is not None):
                self._tail = (end, end)  # an open GOP, or a keyframe that cannot be told: decode it all
                return False
        elif ended:
            end = self._seq + 1  # the end of the stream closes the last GOP
        else:
            return False  # the next keyframe is beyond the look-ahead
        last_needed = item.seq - 1
        for x in (item, *rest):
            if x.seq >= end:
                break
            if x.size and (
                x.pts is None
                or not x.countable
                or x.info.parameter_sets
                or x.info.reference is None
                or self._selectable(x.pts)
            ):
                last_needed = x.seq
        self._tail = (last_needed + 1, end)
        return item.seq > last_needed

    def _skip(self, pts: int | None) -> None:
        self.skipped += 1
        if self._counts is not None:
            self._counts.skipped += 1
        if pts is not None:
            bisect.insort(self._skipped_pts, pts)
            if len(self._skipped_pts) > _MAX_TRACKED:
                self._skipped_pts.clear()

    def _keyframes(self, demuxed: Iterable[Any]) -> Iterator[Any]:
        """Each keyframe the sampler keeps, drained out of the decoder as soon as the packets demuxed after
        it show that no frame earlier than it is still to come (decode timestamp past its pts), so that
        frames left out before it are counted before it."""
        pending: int | None = None  # pts of the keyframe in the decoder, not drained yet
        waited = 0
        for packet in demuxed:
            if pending is not None and (
                not packet.size
                or packet.is_keyframe
                or waited >= _REORDER_MAX
                or (packet.dts is not None and packet.dts >= pending)
            ):
                yield DRAIN
                pending = None
            if not packet.size:
                yield packet
                continue
            pts = packet.pts
            waited += 1
            if not packet.is_keyframe or (
                pts is not None
                and self._offset is not None
                and not self._sampler.would_keep(pts * self._tb + self._offset)
            ):
                self._skip(pts)
                continue
            yield packet
            pending, waited = (pts if pts is not None else -(1 << 62)), 0
        if pending is not None:
            yield DRAIN

    # -- the frame side
    def presented(self, frame: Any, pts: Fraction) -> int:
        """Note a frame the decoder output and the time the sampler sees for it (``pts``, seconds).

        Returns how many of the frames left out so far come after it in presentation order: the frame's
        position among all frames of the stream, decoded or not, is frames decoded + frames left out - that.
        """
        raw: int | None = frame.pts
        if raw is not None:
            if self._last_out is not None and raw <= self._last_out:
                self._skipped_pts.clear()  # a new epoch reached the output: all left out came before it
            else:
                del self._skipped_pts[: bisect.bisect_left(self._skipped_pts, raw)]
        ahead = len(self._skipped_pts)
        if not self.active:
            return ahead
        offset = pts - raw * self._tb if raw is not None else None
        if self.mode is SampleMode.KEYFRAMES:
            self._offset = offset
            return ahead
        if raw is None or offset is None:
            self._lose_step("a frame without a timestamp")
        elif not self._synced:
            if raw in self._resync:
                self._sync(raw, offset)
            self._last_out = raw
        elif offset != self._offset or (self._last_out is not None and raw <= self._last_out):
            self._lose_step(f"timestamps jump at pts {raw}")
            self._last_out = raw
        else:
            i = bisect.bisect_left(self._in_flight, raw)
            missing = i > 0
            if i < len(self._in_flight) and self._in_flight[i] == raw:
                del self._in_flight[i]
            self._last_out = raw
            if missing:
                self._lose_step(f"a frame before pts {raw} never came out (corrupt packet?)")
            else:
                del self._counted[: bisect.bisect_left(self._counted, raw)]
        return ahead

    def _sync(self, raw: int, offset: Fraction) -> None:
        self._synced = True
        self._offset = offset
        self._counted = sorted(p for p in self._resync if p >= raw)
        self._resync = set()
        self._in_flight = []
        self._tail = None
        if self._unsynced_reason:
            log.info("source %s: frame skipping in step again at pts %d", self._source, raw)

    def _lose_step(self, reason: str) -> None:
        """Decode everything until a frame demuxed from now on comes out."""
        if self._synced:
            log.info("source %s: decoding every frame for now: %s", self._source, reason)
        self._synced = False
        self._unsynced_reason = reason
        self._resync = set()
        self._counted = []
        self._in_flight = []
        self._tail = None
