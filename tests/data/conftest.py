"""Datasets whose values encode their identity: pixel p of noisy sample i holds i*H*W + p, clean
holds the same plus 0.5 (float32-exact below 2**23, float16-exact below 2**10), so any mix-up of
samples, pairs or pixels shows in the values."""

import numpy as np
import pytest

from cudnn_denoise.data.format import CLEAN_NAME, FILE_DTYPES, NOISY_NAME, open_dir, write_meta


def identity_pairs(indices, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) that an identity dataset holds for `indices`, each (B, 1, H, W) float32."""
    pixels = height * width
    base = np.asarray(indices, np.int64)[:, None] * pixels + np.arange(pixels)
    assert base.max(initial=0) < 2**23, "identity values must stay float32-exact"
    noisy = base.astype(np.float32).reshape(-1, 1, height, width)
    return noisy, noisy + np.float32(0.5)


@pytest.fixture
def identity_dataset(tmp_path):
    """Factory: write an identity dataset of `count` samples into tmp_path and open it."""

    def make(count: int, height: int = 8, width: int = 6, name: str = "identity",
             dtype: str = "float32"):
        out = tmp_path / name
        out.mkdir()
        for values, file_name in zip(identity_pairs(range(count), height, width),
                                     (NOISY_NAME, CLEAN_NAME)):
            stored = values.astype(FILE_DTYPES[dtype])
            assert np.array_equal(stored.astype(np.float32), values), f"not {dtype}-exact"
            stored.tofile(out / file_name)
        write_meta(out, height, width, count, {"generator": "tests/data/conftest.py"},
                   dtype=dtype)
        return open_dir(out)

    return make


@pytest.fixture
def pairs():
    """identity_pairs, for tests to compute what a batch must hold."""
    return identity_pairs
