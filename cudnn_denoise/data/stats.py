"""Intensity statistics of a dataset's noisy inputs, estimated from evenly spaced samples.

Train stores them in the checkpoint manifest; denoise uses them to bring real micrographs into
the range the model was trained on.
"""

from __future__ import annotations

import numpy as np

from .format import Dataset


def noisy_stats(dataset: Dataset, max_samples: int = 16) -> dict[str, float]:
    """mean, std, min, max of the noisy file over up to max_samples evenly spaced samples."""
    picks = np.unique(np.linspace(0, dataset.count - 1, min(max_samples, dataset.count)).astype(np.int64))
    values = np.memmap(dataset.noisy, dtype=dataset.dtype, mode="r",
                       shape=(dataset.count, dataset.height * dataset.width))
    sample = np.asarray(values[picks], dtype=np.float64)
    return {"mean": float(sample.mean()), "std": float(sample.std()), "min": float(sample.min()),
            "max": float(sample.max()), "samples": int(len(picks))}
