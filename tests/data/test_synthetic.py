"""synthetic.py and the make_dataset CLI: determinism, value range, noise model, dataset.json."""

import json
import subprocess
import sys

import numpy as np
import pytest

from cudnn_denoise.data.format import CLEAN_NAME, META_NAME, NOISY_NAME, DataError, check_values
from cudnn_denoise.data.synthetic import SyntheticPatches, write_dataset


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    first = write_dataset(tmp_path / "a", 3, size=64, seed=5)
    again = write_dataset(tmp_path / "b", 3, size=64, seed=5)
    other = write_dataset(tmp_path / "c", 3, size=64, seed=6)
    for name in (NOISY_NAME, CLEAN_NAME, META_NAME):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    for name in (NOISY_NAME, CLEAN_NAME):
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    assert first.count == again.count == other.count == 3


def test_a_sample_does_not_depend_on_how_many_are_made(tmp_path):
    write_dataset(tmp_path / "three", 3, size=32, seed=1)
    write_dataset(tmp_path / "five", 5, size=32, seed=1)
    for name in (NOISY_NAME, CLEAN_NAME):
        five = (tmp_path / "five" / name).read_bytes()
        assert (tmp_path / "three" / name).read_bytes() == five[: 3 * 32 * 32 * 4]
    noisy, clean = SyntheticPatches(32, seed=1).pair(4)
    np.testing.assert_array_equal(
        np.fromfile(tmp_path / "five" / CLEAN_NAME, "<f4").reshape(5, 32, 32)[4], clean)
    np.testing.assert_array_equal(
        np.fromfile(tmp_path / "five" / NOISY_NAME, "<f4").reshape(5, 32, 32)[4], noisy)


@pytest.mark.parametrize("ctf", [True, False])
def test_values_fill_zero_to_one(ctf):
    noisy, clean = SyntheticPatches(128, seed=2, ctf=ctf).pair(0)
    assert noisy.dtype == clean.dtype == np.float32
    assert noisy.shape == clean.shape == (128, 128)
    assert clean.min() == 0.0 and clean.max() == 1.0  # normalised, not merely clipped
    assert 0.0 <= noisy.min() and noisy.max() <= 1.0
    assert np.unique(clean).size > 1000  # particles, not a flat field


def test_noise_follows_poisson_plus_gaussian():
    # At a high dose clipping is rare and noisy - clean has variance clean/dose + sigma^2.
    dose, sigma = 400.0, 0.05
    noisy, clean = SyntheticPatches(256, seed=3, dose=dose, sigma=sigma).pair(0)
    middle = (clean > 0.3) & (clean < 0.7)
    residual = (noisy - clean)[middle]
    expected = (clean[middle] / dose + sigma**2).mean()
    assert abs(residual.mean()) < 0.01
    assert residual.var() == pytest.approx(expected, rel=0.1)


def test_more_dose_less_noise():
    clean = SyntheticPatches(128, seed=4, dose=2.0).pair(0)[1]
    errors = [np.mean((SyntheticPatches(128, seed=4, dose=dose).pair(0)[0] - clean) ** 2)
              for dose in (2.0, 20.0, 200.0)]
    assert errors[0] > errors[1] > errors[2]


def test_dataset_json_describes_the_data(tmp_path):
    write_dataset(tmp_path, 2, size=48, seed=9, dose=7.5, ctf=False)
    meta = json.loads((tmp_path / META_NAME).read_text())
    assert (meta["height"], meta["width"], meta["count"], meta["dtype"]) == (48, 48, 2, "float32")
    made_by = meta["made_by"]
    assert (made_by["generator"], made_by["seed"], made_by["dose"], made_by["ctf"]) == (
        "cudnn_denoise.data.synthetic", 9, 7.5, False)
    assert made_by["gaussian_sigma"] == 0.05
    assert (tmp_path / NOISY_NAME).stat().st_size == 2 * 48 * 48 * 4
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.tmp"))


def test_refuses_to_overwrite_unless_told(tmp_path):
    write_dataset(tmp_path, 2, size=32, seed=0)
    with pytest.raises(DataError, match=rf"{NOISY_NAME}: already exists"):
        write_dataset(tmp_path, 2, size=32, seed=1)
    write_dataset(tmp_path, 4, size=32, seed=1, overwrite=True)
    assert json.loads((tmp_path / META_NAME).read_text())["count"] == 4


def test_progress_is_reported_per_sample(tmp_path):
    calls = []
    write_dataset(tmp_path, 3, size=32, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cudnn_denoise.make_dataset", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_end_to_end(tmp_path):
    out = tmp_path / "ds"
    done = run_cli("--out", str(out), "--samples", "3", "--size", "64", "--seed", "2",
                   "--check-data")
    assert done.returncode == 0, done.stderr
    assert f"wrote 3 pairs of 64x64 float32 to {out}" in done.stdout
    assert "values checked" in done.stdout
    meta = json.loads((out / META_NAME).read_text())
    assert (meta["count"], meta["height"], meta["made_by"]["seed"]) == (3, 64, 2)
    same = write_dataset(tmp_path / "api", 3, size=64, seed=2)
    assert (out / NOISY_NAME).read_bytes() == same.noisy.read_bytes()
    check_values(same)

    again = run_cli("--out", str(out), "--samples", "3", "--size", "64")
    assert again.returncode == 2
    assert again.stderr.strip() == (
        f"python -m cudnn_denoise.make_dataset: error: {out / NOISY_NAME}: already exists "
        "(overwrite it with --overwrite)")


def test_cli_rejects_bad_numbers(tmp_path):
    done = run_cli("--out", str(tmp_path), "--samples", "0", "--quiet")
    assert done.returncode == 2
    assert "argument --samples: must be an integer >= 1, not '0'" in done.stderr
    assert not list(tmp_path.iterdir())


def test_parallel_workers_write_the_same_bytes(tmp_path):
    from cudnn_denoise.data.synthetic import write_dataset

    one = write_dataset(tmp_path / "one", samples=6, size=64, seed=3)
    two = write_dataset(tmp_path / "two", samples=6, size=64, seed=3, workers=2)
    assert one.noisy.read_bytes() == two.noisy.read_bytes()
    assert one.clean.read_bytes() == two.clean.read_bytes()
