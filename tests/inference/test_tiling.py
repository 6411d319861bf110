"""Exact tiling (cudnn_denoise/inference/tiling.py): the plan's geometry, tiled == whole image bit
for bit with a forward whose rounding does not depend on a pixel's position, and the NumPy
reference model tiled against whole within float32 rounding.

Why the denoiser's reference path is reference.forward_fixed_order, not ReferenceModel.forward:
the latter computes each convolution as one BLAS matrix product, and OpenBLAS rounds an output
column differently depending on the matrix's width and the column's place in it
(A @ B[:, j:k] is not bitwise (A @ B)[:, j:k]). forward_fixed_order sums every pixel's products in
one fixed order, so any difference between tiled and whole is the tiling's; the controls with a
halo of 2 and 0 show that the test sees one. "Whole" is the network on the whole image extended
by mirrored pixels (tiling.extended), less the ring: a flat micrograph stays flat to its edges.
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


def whole(flat, x: np.ndarray) -> np.ndarray:
    """The network's output of the whole extended image, less the ring: what tiles must give."""
    h = tiling.HALO
    return forward_fixed_order(flat, tiling.extended(x))[h:-h, h:-h]


def rel_max_error(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(ours.astype(np.float64) - ref).max() / np.abs(ref).max())


# -- the plan --------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [1, 2, 6, 7, 12, 13, 37, 53, 100])
@pytest.mark.parametrize("tile", [1, 2, 3, 5, 8, 16, 31, 64, 200])
def test_spans_cover_each_pixel_once_with_a_full_halo(size, tile):
    spans = tiling.spans(size, tile)
    halo = tiling.HALO
    assert [s.start for s in spans] == [0] + [s.stop for s in spans[:-1]]  # in order, no gap, no overlap
    assert spans[-1].stop == size
    assert (len(spans) == 1) == (tile >= size)
    for s in spans:
        assert s.win_stop - s.win_start == min(tile, size) + 2 * halo or len(spans) > 1
        assert 0 <= s.win_start and s.win_stop <= size + 2 * halo  # inside the extended image
        assert s.stop - s.start <= tile
        # HALO real or mirrored pixels before and after the tile (extended index = image index + HALO)
        assert s.win_start <= s.start and s.win_stop >= s.stop + 2 * halo
    assert len({s.win_stop - s.win_start for s in spans}) == 1  # one window shape: one cuDNN model


def test_plan_windows_share_one_shape():
    tiles = tiling.plan(300, 517, 64)
    assert {(t.window[0].stop - t.window[0].start, t.window[1].stop - t.window[1].start) for t in tiles} \
        == {tiling.window_shape(300, 517, 64)}
    covered = np.zeros((300, 517), dtype=int)
    for t in tiles:
        covered[t.out] += 1
    assert (covered == 1).all()
    assert tiling.window_shape(300, 517, 600) == (306, 523)  # a tile as large as the image: one window, extended


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
    np.testing.assert_array_equal(tiled(forward, x, tile), whole(flat, x))


@pytest.mark.parametrize("halo", [0, 2])
def test_a_smaller_halo_is_not_exact(halo):
    """The control: with fewer than 3 pixels of halo the tile borders show."""
    flat = init_params(1)
    x = image(37, 53)
    forward = lambda window: forward_fixed_order(flat, window)  # noqa: E731
    assert rel_max_error(tiled(forward, x, 8, halo=halo), whole(flat, x)) > 1e-4


@pytest.mark.parametrize("tile", [8, 64])
def test_a_flat_micrograph_stays_flat_to_its_edges(tile):
    """No dark border: the outermost rows and columns are the interior's value. With zero padding
    at the image's own edges they were 1-4 units darker (the control)."""
    flat = init_params(1)
    x = np.full((37, 53), 0.6, np.float32)
    out = Denoiser("reference", flat, tile=tile).denoise(x)
    np.testing.assert_allclose(out, out[18, 26], rtol=1e-6)
    zero_padded = forward_fixed_order(flat, x)
    assert np.abs(zero_padded[0] - out[18, 26]).max() > 1e-3  # the test sees a border


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("tile", [8, 16, 64])
def test_reference_backend_tiled_matches_whole(size, tile):
    """The denoiser's reference path, tiled, is the whole-image output bit for bit."""
    flat = init_params(1)
    x = image(*size, seed=2)
    denoiser = Denoiser("reference", flat, tile=tile)
    out = denoiser.denoise(x)
    assert denoiser.tile_for(*size) == tile
    np.testing.assert_array_equal(out, whole(flat, x))
    # and the fast BLAS forward of the training model agrees to float32 rounding
    h = tiling.HALO
    blas = ReferenceModel(flat).forward(tiling.extended(x)[None, None])[0, 0, h:-h, h:-h]
    assert rel_max_error(out, blas) < 1e-6


@pytest.mark.parametrize("size", SIZES)
def test_reference_backend_one_window_is_the_fixed_order_forward(size):
    flat = init_params(1)
    x = image(*size, seed=3)
    out = Denoiser("reference", flat, tile=max(size)).denoise(x)
    np.testing.assert_array_equal(out, whole(flat, x))
