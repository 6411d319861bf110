"""Intensity statistics of a dataset's noisy inputs, estimated from evenly spaced samples, and the
noisy inputs' distance from their clean targets (input_mse).

Train stores them in the checkpoint manifest; denoise uses them to bring real micrographs into
the range the model was trained on. The samples are read with pread, not a memory map: a file
cut short meanwhile is a DataError naming it, where a mapped page past its end is SIGBUS.
"""

from __future__ import annotations

import os

import numpy as np

from .format import Dataset, iter_chunks, open_readonly, read_exact


def noisy_stats(dataset: Dataset, max_samples: int = 16) -> dict[str, float]:
    """mean, std, min, max of the noisy file over up to max_samples evenly spaced samples."""
    picks = np.unique(np.linspace(0, dataset.count - 1, min(max_samples, dataset.count)).astype(np.int64))
    sample = np.empty((len(picks), dataset.height * dataset.width), dataset.dtype)
    fd = open_readonly(dataset.noisy)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # the samples alone, no read-ahead
        for row, pick in zip(sample, picks):
            read_exact(fd, memoryview(row).cast("B"), int(pick) * dataset.sample_nbytes, dataset.noisy)
    finally:
        os.close(fd)
    sample = sample.astype(np.float64)
    return {"mean": float(sample.mean()), "std": float(sample.std()), "min": float(sample.min()),
            "max": float(sample.max()), "samples": int(len(picks))}


def input_mse(dataset: Dataset) -> float:
    """The mean squared difference of the noisy inputs from their clean targets over every pair:
    the loss of a model that returns its input, what a trained one must beat (float64 sums)."""
    total = 0.0
    for _, noisy, clean in iter_chunks(dataset):
        diff = noisy.astype(np.float64) - clean
        total += float(np.einsum("ij,ij->", diff, diff))
    return total / (dataset.count * dataset.height * dataset.width)
