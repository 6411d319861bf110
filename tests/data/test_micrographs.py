"""data/micrographs.py: the percentile scaling, the patch grid at the edges, the noise model against
its flags, and the even/odd name matching. Expected values are worked out by hand here."""

from pathlib import Path

import numpy as np
import pytest

from cudnn_denoise.data.format import DataError
from cudnn_denoise.data.micrographs import (
    Preprocessing,
    corners,
    cut,
    grid,
    half_of,
    match_halves,
    noisy_patches,
    robust_range,
    to_unit,
)


def test_robust_range_is_the_default_percentiles_of_the_pixels():
    # 0..1000: the 0.1th percentile lies 1 pixel up the sorted values, the 99.9th 1 pixel down.
    frame = np.arange(1001, dtype=np.float32)[::-1].reshape(7, 143)
    assert robust_range([frame]) == pytest.approx((1.0, 999.0), rel=1e-12)
    assert robust_range([frame], (10.0, 90.0)) == pytest.approx((100.0, 900.0), rel=1e-12)


def test_even_and_odd_share_the_percentiles_of_both_together():
    # Pooled, 0..500 and 501..1000 are 0..1000; each alone, or their mean, would give other numbers.
    even, odd = np.arange(501, dtype=np.float32), np.arange(501, 1001, dtype=np.float32)
    assert robust_range([even.reshape(3, 167), odd.reshape(4, 125)]) == pytest.approx((1.0, 999.0),
                                                                                    rel=1e-12)


def test_scaling_maps_the_range_to_zero_one_and_clips_beyond():
    frame = np.array([[-5.0, 10.0, 15.0, 20.0, 99.0]], np.float32)
    unit = to_unit(frame, 10.0, 20.0)
    assert unit.dtype == np.float32
    np.testing.assert_array_equal(unit, [[0.0, 0.0, 0.5, 1.0, 1.0]])


@pytest.mark.parametrize("frame, why", [
    (np.full((8, 8), 3.0, np.float32), "nothing to scale"),
    (np.pad(np.full((1, 1), 7.0, np.float32), (0, 39), constant_values=2.0), "nothing to scale"),
    (np.array([[1.0, np.nan], [np.inf, 2.0]], np.float32), "1 NaN and 1 infinite"),
])
def test_frames_that_cannot_be_scaled_are_refused(frame, why):
    # The second: one hot pixel in 1600 lies beyond the 99.9th percentile, so both are 2.0.
    with pytest.raises(DataError, match=why):
        robust_range([frame])


@pytest.mark.parametrize("length, size, step, border, edges, expected", [
    (100, 32, 32, 0, "drop", [0, 32, 64]),  # 4 pixels left at the end: dropped
    (100, 32, 32, 0, "cover", [0, 32, 64, 68]),  # ... or one more patch, flush with the edge
    (96, 32, 32, 0, "cover", [0, 32, 64]),  # nothing left over: nothing added
    (100, 32, 32, 5, "drop", [5, 37]),  # a border of 5: pixels 5..94 are used
    (100, 32, 32, 5, "cover", [5, 37, 63]),
    (100, 32, 16, 0, "drop", [0, 16, 32, 48, 64]),  # a stride below the size overlaps
    (100, 32, 40, 0, "drop", [0, 40]),  # one above leaves gaps
    (31, 32, 32, 0, "cover", []),  # shorter than a patch
    (70, 32, 32, 20, "cover", []),  # 30 pixels inside the borders
    (32, 32, 32, 0, "drop", [0]),
])
def test_patch_corners_at_the_edges(length, size, step, border, edges, expected):
    assert corners(length, size, step, border, edges) == expected


def test_patches_are_cut_row_by_row_where_the_grid_says():
    height, width, size = 70, 100, 32
    image = np.arange(height * width, dtype=np.float32).reshape(height, width)  # (r, c) = r*W + c
    p = Preprocessing(size=size, edges="cover")
    at = grid(height, width, p)
    assert at == [(r, c) for r in (0, 32, 38) for c in (0, 32, 64, 68)]
    patches = cut(image, at, size)
    assert patches.shape == (12, size, size) and patches.dtype == np.float32
    for (r, c), patch in zip(at, patches):
        np.testing.assert_array_equal(patch, image[r:r + size, c:c + size])


def test_noise_follows_the_flags():
    # Poisson(dose * clean) / dose + Normal(0, sigma): mean clean, variance clean / dose + sigma^2.
    clean = np.full((2, 256, 256), 0.4, np.float32)
    for dose, sigma in ((400.0, 0.05), (50.0, 0.0), (2000.0, 0.1)):
        noisy = noisy_patches(clean, Preprocessing(dose=dose, sigma=sigma, seed=1), 0, 0)
        residual = (noisy - clean).astype(np.float64)
        assert abs(residual.mean()) < 3 * np.sqrt((0.4 / dose + sigma**2) / residual.size)
        assert residual.var() == pytest.approx(0.4 / dose + sigma**2, rel=0.03)


def test_without_gaussian_noise_the_input_is_counts_over_dose_clipped_to_one():
    clean = np.full((1, 64, 64), 0.6, np.float32)
    noisy = noisy_patches(clean, Preprocessing(dose=5.0, sigma=0.0), 0, 0)
    counts = noisy * 5.0
    np.testing.assert_allclose(counts, np.rint(counts), atol=1e-5)  # k / 5
    assert noisy.min() >= 0.0 and noisy.max() == 1.0  # Poisson(3) often exceeds 5: clipped


def test_each_patch_has_its_own_seeded_noise():
    clean = np.full((3, 16, 16), 0.5, np.float32)
    p = Preprocessing(dose=5.0, seed=7)
    three = noisy_patches(clean, p, number=2, frame=1)
    np.testing.assert_array_equal(noisy_patches(clean[:2], p, number=2, frame=1), three[:2])
    assert not np.array_equal(three[0], three[1])
    for other in (noisy_patches(clean, Preprocessing(dose=5.0, seed=8), 2, 1),
                  noisy_patches(clean, p, 3, 1), noisy_patches(clean, p, 2, 0)):
        assert not np.array_equal(other[0], three[0])


@pytest.mark.parametrize("kwargs, flag", [
    ({"size": 0}, "--size"), ({"stride": 0}, "--stride"), ({"border": -1}, "--border"),
    ({"seed": -1}, "--seed"), ({"edges": "wrap"}, "--edges"),
    ({"percentiles": (50.0, 50.0)}, "--percentiles"),
    ({"percentiles": (-1.0, 99.0)}, "--percentiles"),
    ({"dose": 0.0}, "--dose"), ({"dose": float("inf")}, "--dose"), ({"sigma": -0.1}, "--sigma"),
])
def test_bad_settings_name_their_flag(kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        Preprocessing(**kwargs)


@pytest.mark.parametrize("name, expected", [
    ("x_EVN.mrc", ("x", "even")), ("x_ODD.mrc", ("x", "odd")), ("x.even.tif", ("x", "even")),
    ("x-odd.mrcs", ("x", "odd")), ("x_Even.mrc", ("x", "even")), ("x.mrc", ("x", None)),
    ("x_odd_DW.mrc", ("x_odd_DW", None)), ("evenly.mrc", ("evenly", None)),
    ("odd.mrc", ("odd", None)),
])
def test_the_half_is_read_from_the_end_of_the_name(name, expected):
    assert half_of(Path("sums") / name) == expected


def test_halves_are_matched_by_movie_name():
    folder = [Path(f"sums/{name}") for name in
              ("a_EVN.mrc", "a_ODD.mrc", "b_EVN.mrc", "b_ODD.mrc", "c_EVN.mrc", "d_ODD.mrc")]
    pairs, problems = match_halves(folder, folder)  # one folder given to both flags
    assert pairs == [(Path("sums/a_EVN.mrc"), Path("sums/a_ODD.mrc")),
                     (Path("sums/b_EVN.mrc"), Path("sums/b_ODD.mrc"))]
    assert problems == ["sums/c_EVN.mrc: no odd sum of movie 'c' among --odd",
                        "sums/d_ODD.mrc: no even sum of movie 'd' among --even"]

    evens = [Path("even/m1.mrc"), Path("even/m2.mrc")]
    odds = [Path("odd/m2.mrc"), Path("odd/m1.mrc")]
    assert match_halves(evens, odds) == ([(evens[0], odds[1]), (evens[1], odds[0])], [])


def test_ambiguous_halves_are_named_not_guessed(tmp_path):
    same = tmp_path / "m.mrc"
    pairs, problems = match_halves([same], [same])
    assert pairs == []
    assert problems == [f"{same}: given as both the even and the odd sum of movie 'm'"]
    evens = [Path("even/m.mrc"), Path("even/m.tif"), Path("even/n.mrc")]
    odds = [Path("odd/m.mrc"), Path("odd/n.mrc")]
    pairs, problems = match_halves(evens, odds)
    assert pairs == [(Path("even/n.mrc"), Path("odd/n.mrc"))]
    assert problems == [
        "even/m.mrc and even/m.tif: --even holds two files of movie 'm'; both skipped"]
