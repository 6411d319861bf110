"""Exact tiling (cudnn_denoise/inference/tiling.py): the plan's geometry, tiled == whole image bit
for bit with a forward whose rounding does not depend on a pixel's position, and the NumPy
reference model tiled against whole within float32 rounding.

Why the denoiser's reference path is reference.forward_fixed_order, not ReferenceModel.forward:
the latter computes each convolution as one BLAS matrix product, and OpenBLAS rounds an output
column differently depending on the matrix's width and the column's place in it
(A @ B[:, j:k] is not bitwise (A @ B)[:, j:k]). forward_fixed_order sums every pixel's products in
one fixed order, so any difference between tiled and whole is the tiling's; the controls with a
halo of 2 and 0 show that the test sees one.
"""

from __future__ import annotations

import numpy as np
import pytest

from cudnn_denoise.inference import tiling
from cudnn_denoise.inference.engine import Denoiser
from cudnn_denoise.params import LAYERS, init_params, views
from cudnn_denoise.network.reference import ReferenceModel, forward_fixed_order

SIZES = [(37, 53), (300, 517)]


def image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((height, width), dtype=np.float32)


def tiled(forward, x: np.ndarray, tile: int, halo: int = tiling.HALO) -> np.ndarray:
    return tiling.run_tiled(x, forward, tile, np.full_like(x, np.nan), halo=halo)


def rel_max_error(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(ours.astype(np.float64) - ref).max() / np.abs(ref).max())


# -- the plan --------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [1, 2, 6, 7, 12, 13, 37, 53, 100])
@pytest.mark.parametrize("tile", [1, 2, 3, 5, 8, 16, 31, 64, 200])
def test_spans_cover_each_pixel_once_with_a_full_halo(size, tile):
    spans = tiling.spans(size, tile)
    assert [s.start for s in spans] == [0] + [s.stop for s in spans[:-1]]  # in order, no gap, no overlap
    assert spans[-1].stop == size
    for s in spans:
        assert s.win_stop - s.win_start <= min(tile + 2 * tiling.HALO, size)
        assert 0 <= s.win_start and s.win_stop <= size
        assert s.stop - s.start <= tile or len(spans) == 1  # one window of <= tile + 2 HALO: whole axis
        # HALO real pixels before and after the tile, or the image border
        assert s.win_start == 0 or s.win_start <= s.start - tiling.HALO
        assert s.win_stop == size or s.win_stop >= s.stop + tiling.HALO
    assert len({s.win_stop - s.win_start for s in spans}) == 1  # one window shape: one cuDNN model


def test_plan_windows_share_one_shape():
    tiles = tiling.plan(300, 517, 64)
    assert {(t.window[0].stop - t.window[0].start, t.window[1].stop - t.window[1].start) for t in tiles} \
        == {tiling.window_shape(300, 517, 64)}
    covered = np.zeros((300, 517), dtype=int)
    for t in tiles:
        covered[t.out] += 1
    assert (covered == 1).all()
    assert tiling.window_shape(300, 517, 600) == (300, 517)  # a tile as large as the image: one window


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="tile size"):
        tiling.spans(10, 0)
    with pytest.raises(ValueError, match="at least 1 pixel"):
        tiling.spans(0, 8)


def test_tile_for_memory():
    kw = dict(window_pixel_bytes=272, image_pixel_bytes=8, fixed_bytes=1 << 30)
    assert tiling.tile_for_memory(80 << 30, 4096, 4096, **kw) == 4096  # the whole micrograph fits
    tile = tiling.tile_for_memory(3 << 30, 4096, 4096, **kw)
    assert 32 <= tile < 4096 and tile % 32 == 0
    assert (tile + 6) ** 2 * 272 + (1 << 30) + 4096 * 4096 * 8 <= 3 << 30  # its window fits
    assert tiling.tile_for_memory(1 << 20, 4096, 4096, **kw) == 32  # the floor: out of memory then halves it


# -- tiled == whole -------------------------------------------------------------------------------

@pytest.mark.parametrize(("size", "tile"), [((37, 53), 1), ((37, 53), 3), ((37, 53), 8), ((37, 53), 16),
                                            ((37, 53), 64), ((300, 517), 16), ((300, 517), 64),
                                            ((300, 517), 600)])
def test_tiled_equals_whole_bit_for_bit(size, tile):
    flat = init_params(1)
    x = image(*size)
    forward = lambda window: forward_fixed_order(flat, window)  # noqa: E731
    np.testing.assert_array_equal(tiled(forward, x, tile), forward_fixed_order(flat, x))


@pytest.mark.parametrize("halo", [0, 2])
def test_a_smaller_halo_is_not_exact(halo):
    """The control: with fewer than 3 pixels of halo the tile borders show."""
    flat = init_params(1)
    x = image(37, 53)
    forward = lambda window: forward_fixed_order(flat, window)  # noqa: E731
    whole = forward_fixed_order(flat, x)
    assert rel_max_error(tiled(forward, x, 8, halo=halo), whole) > 1e-4


def test_zeros_beyond_the_border_are_not_exact():
    """The other control: padding a border window out to full size with zeros is not the whole
    image's padding (each layer pads its own input, and layer 2's input beyond the border would be
    ReLU(bias), not 0): windows must be slid inward instead."""
    flat = init_params(1)
    x = image(37, 53)
    halo, tile = tiling.HALO, 8
    padded = np.pad(x, halo)  # zeros beyond the border, as a cut window padded to full size sees
    out = np.full_like(x, np.nan)
    for r0 in range(0, 37, tile):
        for c0 in range(0, 53, tile):
            r1, c1 = min(r0 + tile, 37), min(c0 + tile, 53)
            y = forward_fixed_order(flat, padded[r0 : r1 + 2 * halo, c0 : c1 + 2 * halo])
            out[r0:r1, c0:c1] = y[halo : halo + r1 - r0, halo : halo + c1 - c0]
    whole = forward_fixed_order(flat, x)
    interior = (slice(halo, -halo), slice(halo, -halo))
    np.testing.assert_array_equal(out[interior], whole[interior])  # inside, the halo is real pixels
    assert rel_max_error(out, whole) > 1e-4  # at the border it is not


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("tile", [8, 16, 64])
def test_reference_backend_tiled_matches_whole(size, tile):
    """The denoiser's reference path, tiled, is the whole-image output bit for bit."""
    flat = init_params(1)
    x = image(*size, seed=2)
    denoiser = Denoiser("reference", flat, tile=tile)
    out = denoiser.denoise(x)
    assert denoiser.tile_for(*size) == tile
    np.testing.assert_array_equal(out, forward_fixed_order(flat, x))
    # and the fast BLAS forward of the training model agrees to float32 rounding
    assert rel_max_error(out, ReferenceModel(flat).forward(x[None, None])[0, 0]) < 1e-6


@pytest.mark.parametrize("size", SIZES)
def test_reference_backend_one_window_is_the_fixed_order_forward(size):
    flat = init_params(1)
    x = image(*size, seed=3)
    out = Denoiser("reference", flat, tile=max(size)).denoise(x)
    np.testing.assert_array_equal(out, forward_fixed_order(flat, x))
