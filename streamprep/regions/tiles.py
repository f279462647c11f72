"""``tiles``: overlapping native-resolution squares that cover the whole frame.

The tile side is the model's input side times ``tile_scale`` in source pixels. With ``tile_scale = 1`` (the
default) the model sees source pixels one to one: a 100 px person stays 100 px in a 256² input, where the
whole 1080p frame squeezed into 256² makes it about 24 px tall and the bundled SSD misses it. A larger
``tile_scale`` takes fewer tiles at the price of shrinking objects by that factor.

Along each axis the tiles are spread evenly from the frame's first pixel to its last, with at least
``tile_overlap`` × side of overlap between neighbours (more where the count of tiles rounds up), so an
object narrower than the overlap is whole in at least one tile, and the edge tiles end exactly at the frame's
edges: nothing is padded. A frame smaller than a tile on some axis gets tiles of its shorter side (the model's
resize scales them up) rather than tiles that reach off the frame.
"""

from __future__ import annotations

import math

from streamprep.regions.values import Region, RegionKind, RegionPlan


def tile_side(model_side: int, tile_scale: float = 1.0) -> int:
    """The tile side in source pixels for a model whose input is ``model_side`` square: even, at least 2."""
    if not (model_side > 0 and tile_scale > 0 and math.isfinite(tile_scale)):
        raise ValueError(f"model side and tile scale must be positive, got {model_side!r} and {tile_scale!r}")
    return max(2, round(model_side * tile_scale / 2) * 2)


def starts(length: int, side: int, overlap: float) -> tuple[int, ...]:
    """Tile origins along one axis of ``length`` pixels: the first at 0, the last at ``length - side``, evenly
    spread (on even pixels) so that neighbours overlap by at least ``overlap`` × ``side``."""
    if side >= length:
        return (0,)
    stride = side * (1.0 - overlap)
    count = math.ceil((length - side) / stride - 1e-9) + 1
    last = length - side
    return tuple(sorted({min(last, round(i * last / (count - 1) / 2) * 2) for i in range(count - 1)} | {last}))


def tile_plan(
    width: int,
    height: int,
    model_side: int,
    tile_scale: float = 1.0,
    tile_overlap: float = 0.2,
    full_frame: bool = False,
) -> RegionPlan:
    """The tiles for a ``width`` × ``height`` frame (row by row, top-left first), after the whole frame as a
    :attr:`RegionKind.FULL` region when ``full_frame`` (it finds what is larger than a tile)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    if not 0.0 <= tile_overlap < 1.0:
        raise ValueError(f"tile_overlap must be in [0, 1), got {tile_overlap!r}")
    side = min(tile_side(model_side, tile_scale), width, height)
    tiles = tuple(
        Region(x, y, side, side, RegionKind.TILE)
        for y in starts(height, side, tile_overlap)
        for x in starts(width, side, tile_overlap)
    )
    full = (Region(0, 0, width, height, RegionKind.FULL),) if full_frame else ()
    return RegionPlan(width, height, full + tiles)
