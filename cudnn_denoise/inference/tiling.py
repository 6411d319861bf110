"""Exact tiling: cut a micrograph into windows the network sees whole, and put the outputs together.

The network is three 3x3 convolutions, each padding its own input with one zero pixel, so an output
pixel depends on the input within HALO = 3 pixels of it. Zero padding at the micrograph's own edges
would darken its outermost rows and columns (the input is scaled around a positive mean), so the
image is first extended by HALO pixels mirrored at each edge (mode "reflect": x[1], x[2], x[3]
before x[0]) and the output is the network's output of that extended image, less its HALO ring.

Run on a window of the extended image, each layer is wrong only next to a window side (where it
pads with zeros instead of seeing the pixels beyond): layer 1 in 1 pixel, layer 2 in 2, layer 3 in
3 = HALO. A window that holds its output tile plus HALO pixels on every side therefore gives the
whole extended image's output inside the tile, whatever the tile size; at the extended image's own
border the wrong pixels are the ring, which no tile keeps.

Tiles are evened out (ceil(size / tile) tiles of nearly equal size per axis), and every window of
one image has the same shape, the evened tile + 2 HALO per axis (the whole extended axis when
tile >= size): the last windows are slid inward rather than cut, so the cuDNN backend builds one
model per image shape. What this leaves to the caller:
memory and which library holds the arrays (forward and out decide that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HALO = 3  # pixels of receptive field on each side: three 3x3 convolutions


@dataclass(frozen=True)
class Span:
    """One tile along one axis: output pixels [start, stop) (image indices), computed from the
    window [win_start, win_stop) of the extended image (image index + HALO), which holds at least
    HALO pixels on each side of the tile."""

    start: int
    stop: int
    win_start: int
    win_stop: int


@dataclass(frozen=True)
class Tile:
    """One tile of an image: out = image indices it fills, window = the network's input (indices
    of the extended image), crop = the tile within the window's output."""

    out: tuple[slice, slice]
    window: tuple[slice, slice]
    crop: tuple[slice, slice]


def spans(size: int, tile: int, halo: int = HALO) -> list[Span]:
    """The tiles along one axis of `size` pixels: at most `tile` output pixels each, or one tile
    of the whole axis (its window the whole extended axis) when tile >= size."""
    if size < 1:
        raise ValueError(f"an image axis must have at least 1 pixel, not {size}")
    if tile < 1:
        raise ValueError(f"the tile size must be at least 1 pixel, not {tile}")
    extent = size + 2 * halo  # the extended axis
    if tile >= size:
        return [Span(0, size, 0, extent)]
    count = math.ceil(size / tile)
    tile = math.ceil(size / count)  # even tiles: the last one is not a sliver
    window = tile + 2 * halo
    out = []
    for start in range(0, size, tile):
        stop = min(start + tile, size)
        win_start = min(start, extent - window)  # the tile's halo begins at start; slid inward at the end
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
                crop=(slice(r.start + halo - r.win_start, r.stop + halo - r.win_start),
                      slice(c.start + halo - c.win_start, c.stop + halo - c.win_start))))
    return tiles


def window_shape(height: int, width: int, tile: int) -> tuple[int, int]:
    """The shape of every window of plan(height, width, tile)."""
    r, c = spans(height, tile)[0], spans(width, tile)[0]
    return r.win_stop - r.win_start, c.win_stop - c.win_start


def extended(image, halo: int = HALO):
    """The 2-D `image` (NumPy or CuPy) with `halo` pixels mirrored beyond each edge (a new array)."""
    if isinstance(image, np.ndarray):
        return np.pad(image, halo, mode="reflect")
    import cupy

    return cupy.pad(image, halo, mode="reflect")


def run_tiled(image, forward, tile: int, out, halo: int = HALO):
    """out[...] = the network's output of the 2-D `image` extended (extended()), less the ring,
    computed window by window.

    forward(window) takes a 2-D view of the extended image (not necessarily contiguous) and returns
    the network's output of that window alone, same shape; image and out may be NumPy or CuPy arrays.
    """
    height, width = image.shape
    ext = extended(image, halo)
    for t in plan(height, width, tile, halo):
        out[t.out] = forward(ext[t.window])[t.crop]
    return out


def tile_for_memory(free_bytes: int, height: int, width: int, *, window_pixel_bytes: int,
                    image_pixel_bytes: int, fixed_bytes: int) -> int:
    """The largest tile whose window fits in free_bytes: max(height, width) (one window) when the
    whole image fits, else a multiple of 32 (at least 32; an out-of-memory error halves it).

    window_pixel_bytes: memory per pixel of a window (the model's buffers); image_pixel_bytes: per
    pixel of the whole image (its input, extended copy and output); fixed_bytes: workspaces and
    the like.
    """
    budget = free_bytes - fixed_bytes - image_pixel_bytes * height * width
    if budget >= window_pixel_bytes * (height + 2 * HALO) * (width + 2 * HALO):
        return max(height, width)
    side = math.isqrt(max(budget, 0) // window_pixel_bytes) - 2 * HALO
    return max(32, side // 32 * 32)
