"""Helpers of the CLI tests: poisoning a dataset, reading samples, the batches a run must have seen,
and a plain training loop to compare a CLI run's parameters with."""

from __future__ import annotations

import numpy as np

from cudnn_denoise.data.format import DTYPE, open_dir
from cudnn_denoise.network.reference import ReferenceModel


def poison(dataset, sample: int, pixel: int = 5, value: float = np.nan):
    """Put one bad value (NaN unless told) into sample `sample` of the noisy file (the clean targets
    stay); reopen it."""
    values = np.memmap(dataset.noisy, dtype=DTYPE, mode="r+", shape=(dataset.count, dataset.height * dataset.width))
    values[sample, pixel] = value
    values.flush()
    del values
    return open_dir(dataset.noisy.parent)


def samples(dataset, indices) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) of the given samples, each (len(indices), 1, H, W) float32 (float16 files
    widened)."""
    shape = (dataset.count, 1, dataset.height, dataset.width)
    noisy = np.fromfile(dataset.noisy, dtype=dataset.dtype).reshape(shape)
    clean = np.fromfile(dataset.clean, dtype=dataset.dtype).reshape(shape)
    return noisy[indices].astype(DTYPE), clean[indices].astype(DTYPE)


def expected_batches(count: int, batch: int, steps: int, *, shuffle: bool, seed: int = 0,
                     drop_last: bool = False) -> list[np.ndarray]:
    """The sample indices of each of the first `steps` steps, as the train CLI promises them:
    sequential, batch k of an epoch is samples kB..kB+B-1; shuffled, epoch e visits
    np.random.default_rng((seed, e)).permutation(count). Written out here, not taken from the reader."""
    out, epoch = [], 0
    while len(out) < steps:
        order = np.random.default_rng((seed, epoch)).permutation(count) if shuffle else np.arange(count)
        stops = range(batch, count + 1, batch) if drop_last else range(batch, count + batch, batch)
        for stop in stops:
            out.append(order[stop - batch: min(stop, count)])
        epoch += 1
    return out[:steps]


def plain_loop(params, dataset, batches, lr: float) -> np.ndarray:
    """The parameters after SGD steps on `batches` (lists of sample indices) with the NumPy model."""
    model = ReferenceModel(params)
    for indices in batches:
        x, y = samples(dataset, indices)
        model.train_step(x, y, lr)
    return model.get_params()
