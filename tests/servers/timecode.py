"""A wall-clock time code burnt into video frames, and read back from a frame or from a model's input tensor.

The code is a band of ``CELLS`` vertical bars across the full width of the frame, at its top: a white guard
cell, ``TIME_BITS`` bits of the time in milliseconds (modulo 2**TIME_BITS, most significant first), a
CRC-8 of those bits, and a black guard cell. White is luma 235, black luma 16, both achromatic, so any
colour channel, any colour order and any linear scaling of the values keep it readable. Bars span the
band's full height, so every row of the band carries the whole code: it survives H.264 (bars of 32 pixels
at 1280 wide) and being shrunk to 256 pixels wide (6.4 pixels a bar), stretched or letterboxed, because
the reader only assumes that the band spans the full width of what it is given and looks for it in every
row.

The writer is pure Python (``clock_rtsp_server.py`` runs it under Debian's interpreter, which has no
numpy); the reader needs numpy.
"""

from __future__ import annotations

from typing import Any

CELLS = 40
TIME_BITS = 30
CRC_BITS = 8
WHITE = 235
BLACK = 16
MODULO_MS = 1 << TIME_BITS  # about 12.4 days: the reader resolves the full time from a reference clock
assert CELLS == 1 + TIME_BITS + CRC_BITS + 1


def crc8(value: int, bits: int = TIME_BITS) -> int:
    """CRC-8 (polynomial 0x07) of the ``bits`` low bits of ``value``, most significant first."""
    crc = 0
    for i in range(bits - 1, -1, -1):
        bit = (value >> i) & 1
        top = (crc >> 7) & 1
        crc = (crc << 1) & 0xFF
        if bit ^ top:
            crc ^= 0x07
    return crc


def cell_bits(ms: int) -> list[int]:
    """The level of every cell (1 white, 0 black) for a time in milliseconds."""
    value = ms % MODULO_MS
    data = [(value >> i) & 1 for i in range(TIME_BITS - 1, -1, -1)]
    check = crc8(value)
    crc = [(check >> i) & 1 for i in range(CRC_BITS - 1, -1, -1)]
    return [1, *data, *crc, 0]


def cell_edges(width: int) -> list[int]:
    """Column where each cell starts, plus ``width`` at the end."""
    return [round(i * width / CELLS) for i in range(CELLS + 1)]


def luma_row(ms: int, width: int) -> bytes:
    """One row of the band in 8-bit luma."""
    edges = cell_edges(width)
    row = bytearray(width)
    for i, bit in enumerate(cell_bits(ms)):
        row[edges[i] : edges[i + 1]] = bytes([WHITE if bit else BLACK]) * (edges[i + 1] - edges[i])
    return bytes(row)


def band_height(height: int) -> int:
    """Rows of the band: a sixth of the frame, even (whole chroma rows in 4:2:0)."""
    return max(2, (height // 6) & ~1)


# -- reading (numpy)


def read_ms(luma: Any, min_rows: int = 2, max_rows: int = 256) -> int | None:
    """The time code (milliseconds modulo ``MODULO_MS``) in a 2-D image of any numeric type, or None.

    Every row is tried (at most ``max_rows`` of them, evenly spaced, to keep full frames cheap): the mean
    of the middle half of each cell, a threshold halfway between the two guard cells, every data cell
    clearly on one side of it, and the CRC must match. The value most rows agree on wins if at least
    ``min_rows`` rows give it.
    """
    import numpy as np

    image = np.asarray(luma)
    if image.ndim != 2 or image.shape[1] < 2 * CELLS:
        raise ValueError(f"need a 2-D image at least {2 * CELLS} pixels wide, got shape {image.shape}")
    if image.shape[0] > max_rows:
        image = image[np.linspace(0, image.shape[0] - 1, max_rows).astype(int)]
    width = image.shape[1]
    edges = np.asarray(cell_edges(width), dtype=np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    half = np.maximum((edges[1:] - edges[:-1]) / 4, 0.5)
    lo = np.clip(np.round(centres - half).astype(int), 0, width - 1)
    hi = np.clip(np.round(centres + half).astype(int), lo + 1, width)
    bounds = np.stack([lo, hi], axis=1).ravel()  # sum over [lo, hi) at the even positions
    sums = np.add.reduceat(image, bounds[bounds < width], axis=1, dtype=np.float64)[:, ::2][:, :CELLS]
    cells = sums / (hi - lo)  # rows x CELLS
    span = float(image.max()) - float(image.min())
    white, black = cells[:, 0], cells[:, -1]
    contrast = white - black
    threshold = (white + black) / 2
    data = cells[:, 1:-1]
    margin = np.abs(data - threshold[:, None]) >= 0.25 * contrast[:, None]
    usable = (contrast > 0.3 * (span or 1.0)) & margin.all(axis=1)
    bits = (data > threshold[:, None]).astype(np.int64)
    weights = 1 << np.arange(TIME_BITS + CRC_BITS - 1, -1, -1, dtype=np.int64)
    words = bits @ weights
    counts: dict[int, int] = {}
    for word in words[usable].tolist():
        value, check = word >> CRC_BITS, word & 0xFF
        if crc8(value) == check:
            counts[value] = counts.get(value, 0) + 1
    if not counts:
        return None
    value, rows = max(counts.items(), key=lambda kv: kv[1])
    return value if rows >= min_rows else None


def unwrap(ms: int, reference: float) -> float:
    """The Unix time (seconds) closest to ``reference`` whose milliseconds modulo ``MODULO_MS`` are ``ms``."""
    ref_ms = reference * 1000.0
    k = round((ref_ms - ms) / MODULO_MS)
    return (ms + k * MODULO_MS) / 1000.0


def read_time(luma: Any, reference: float) -> float | None:
    """The Unix time burnt into ``luma``, resolved against ``reference`` (e.g. ``time.time()``), or None."""
    ms = read_ms(luma)
    return None if ms is None else unwrap(ms, reference)


def tensor_luma(tensor: Any, layout: str = "nchw") -> Any:
    """A 2-D image from one model input (``CHW``/``HWC`` or a batch of one): the mean over colour channels.

    The code is achromatic, so any colour order, mean/std or [0, 1] scaling keeps it readable.
    """
    import numpy as np

    array = np.asarray(tensor, dtype=np.float64)
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise ValueError(f"one image at a time: batch of {array.shape[0]}")
        array = array[0]
    if array.ndim == 2:
        return array
    if array.ndim != 3:
        raise ValueError(f"expected an image tensor, got shape {array.shape}")
    return array.mean(axis=0 if layout == "nchw" else 2)
