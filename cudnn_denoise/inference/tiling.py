"""Exact tiling: cut a micrograph into windows the network sees whole, and put the outputs together.

The network is three 3x3 convolutions, each padding its own input with one zero pixel. An output
pixel depends on the input within HALO = 3 pixels of it, and on where the image ends, because each
layer's zero padding lies at the image border. Run on a window of the image, each layer is wrong
only next to a window side that lies inside the image (where the window pads with zeros but the
whole image has real values): layer 1 in 1 pixel, layer 2 in 2, layer 3 in 3 = HALO. At a window
side on the image border both runs pad with zeros, so nothing is wrong there. A window that holds
its output tile plus HALO pixels on every side where the image goes on therefore gives the
whole-image output inside the tile, whatever the tile size.

Every window of one image has the same shape, min(tile + 2 HALO, size) per axis: windows near the
border are slid inward rather than cut, so the cuDNN backend builds one model per image shape.
Tiles are evened out first (ceil(size / tile) tiles of nearly equal size). What this leaves to the
caller: memory and which library holds the arrays (forward and out decide that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HALO = 3  # pixels of receptive field on each side: three 3x3 convolutions


@dataclass(frozen=True)
class Span:
    """One tile along one axis: output pixels [start, stop), computed from the window
    [win_start, win_stop), which holds HALO pixels on each side or ends at the image border."""

    start: int
    stop: int
    win_start: int
    win_stop: int


@dataclass(frozen=True)
class Tile:
    """One tile of an image: out = image indices it fills, window = the network's input (image
    indices), crop = the tile within the window's output."""

    out: tuple[slice, slice]
    window: tuple[slice, slice]
    crop: tuple[slice, slice]


def spans(size: int, tile: int, halo: int = HALO) -> list[Span]:
    """The tiles along one axis of `size` pixels: at most `tile` output pixels each, or one tile
    of the whole axis when its window (size <= tile + 2 HALO) would cover it anyway."""
    if size < 1:
        raise ValueError(f"an image axis must have at least 1 pixel, not {size}")
    if tile < 1:
        raise ValueError(f"the tile size must be at least 1 pixel, not {tile}")
    if tile + 2 * halo >= size:  # one window covers the whole axis
        return [Span(0, size, 0, size)]
    count = math.ceil(size / tile)
    tile = math.ceil(size / count)  # even tiles: the last one is not a sliver
    window = tile + 2 * halo
    out = []
    for start in range(0, size, tile):
        stop = min(start + tile, size)
        win_start = min(max(start - halo, 0), size - window)  # slid inward at the border, never cut
        out.append(Span(start, stop, win_start, win_start + window))
    return out


def plan(height: int, width: int, tile: int, halo: int = HALO) -> list[Tile]:
    """The tiles of a height x width image, row by row; all windows have window_shape().

    halo is HALO for this network (the tests show that less is not exact)."""
    tiles = []
    for r in spans(height, tile, halo):
        for c in spans(width, tile, halo):
            tiles.append(Tile(
                out=(slice(r.start, r.stop), slice(c.start, c.stop)),
                window=(slice(r.win_start, r.win_stop), slice(c.win_start, c.win_stop)),
                crop=(slice(r.start - r.win_start, r.stop - r.win_start),
                      slice(c.start - c.win_start, c.stop - c.win_start))))
    return tiles


def window_shape(height: int, width: int, tile: int) -> tuple[int, int]:
    """The shape of every window of plan(height, width, tile)."""
    r, c = spans(height, tile)[0], spans(width, tile)[0]
    return r.win_stop - r.win_start, c.win_stop - c.win_start


def run_tiled(image, forward, tile: int, out, halo: int = HALO):
    """out[...] = the network's output of the 2-D `image`, computed window by window.

    forward(window) takes a 2-D view of `image` (not necessarily contiguous) and returns the
    network's output of that window alone, same shape; image and out may be NumPy or CuPy arrays.
    """
    height, width = image.shape
    for t in plan(height, width, tile, halo):
        out[t.out] = forward(image[t.window])[t.crop]
    return out


def tile_for_memory(free_bytes: int, height: int, width: int, *, window_pixel_bytes: int,
                    image_pixel_bytes: int, fixed_bytes: int) -> int:
    """The largest tile whose window fits in free_bytes: max(height, width) (one window) when the
    whole image fits, else a multiple of 32 (at least 32; an out-of-memory error halves it).

    window_pixel_bytes: memory per pixel of a window (the model's buffers); image_pixel_bytes: per
    pixel of the whole image (its input and output); fixed_bytes: workspaces and the like.
    """
    budget = free_bytes - fixed_bytes - image_pixel_bytes * height * width
    if budget >= window_pixel_bytes * height * width:
        return max(height, width)
    side = math.isqrt(max(budget, 0) // window_pixel_bytes) - 2 * HALO
    return max(32, side // 32 * 32)
