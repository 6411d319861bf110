"""Preview binning (cudnn_denoise/inference/preview.py): the strided sums are the block means."""

from __future__ import annotations

import numpy as np
import pytest

from cudnn_denoise.inference import preview


@pytest.mark.parametrize(("shape", "factor"), [((64, 64), 4), ((37, 53), 3), ((50, 41), 5), ((9, 7), 1)])
def test_binned_is_the_block_mean(shape, factor):
    x = np.random.default_rng(0).normal(1000.0, 40.0, shape).astype(np.float32)
    h, w = shape[0] // factor, shape[1] // factor
    blocks = x[: h * factor, : w * factor].astype(np.float64).reshape(h, factor, w, factor)
    np.testing.assert_array_equal(preview.binned(x, factor), blocks.mean(axis=(1, 3)))
