"""Intensity scaling: each micrograph into the range the model was trained on, and the output back.

train stores the noisy training inputs' statistics in the checkpoint (extra["data_stats"]: mean,
std, min, max). A micrograph (each frame of a stack, on its own) is standardised with its own mean
and standard deviation and given the training data's:

    x_model = (x - mean_x) * (std_train / std_x) + mean_train
    y       = (y_model - mean_train) * (std_x / std_train) + mean_x     (unless --normalize)

so the output is on the input's scale: same units, same offset. A constant frame (std_x = 0)
is taken as std_x = 1. The statistics are computed in float64; the maps run in float32, on
NumPy or CuPy arrays alike. Without data_stats the map is the identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..checkpoint import MANIFEST_FILE, CheckpointError
from ..data.format import DataError
from ..training import run_record


@dataclass(frozen=True)
class Scaling:
    """x_model = (x - mean_in) * (std_model / std_in) + mean_model, and its inverse."""

    mean_in: float = 0.0
    std_in: float = 1.0
    mean_model: float = 0.0
    std_model: float = 1.0

    def to_model(self, x):
        """The model's input from a float32 frame (a new float32 array)."""
        scale = np.float32(self.std_model / self.std_in)
        return (x - np.float32(self.mean_in)) * scale + np.float32(self.mean_model)

    def from_model(self, y):
        """A model output on the input's scale (a new float32 array)."""
        scale = np.float32(self.std_in / self.std_model)
        return (y - np.float32(self.mean_model)) * scale + np.float32(self.mean_in)


IDENTITY = Scaling()


@dataclass(frozen=True)
class TrainingStats:
    """The mean and standard deviation of the noisy training inputs, from a checkpoint."""

    mean: float
    std: float

    @classmethod
    def from_checkpoint(cls, saved) -> TrainingStats | None:
        """The checkpoint's data_stats, or None when it has none; CheckpointError when malformed."""
        stats = run_record.read(saved).data_stats  # type-checked: finite numbers
        if not stats:  # absent, or {} from a run that stored none
            return None
        where = saved.path / MANIFEST_FILE
        for key in ("mean", "std"):
            if key not in stats:
                raise CheckpointError(f"{where}: extra.data_stats.{key} is missing, expected a "
                                      "finite number")
        if stats["std"] <= 0:
            raise CheckpointError(f"{where}: extra.data_stats.std is {stats['std']}, expected > 0")
        return cls(stats["mean"], stats["std"])


def scaling_for(frame: np.ndarray, stats: TrainingStats | None) -> Scaling:
    """The map of one float32 frame into the training data's range (IDENTITY without stats).

    DataError when the frame holds NaN or infinity: its statistics, and the output, would be NaN.
    """
    if stats is None:
        if not np.isfinite(frame).all():
            raise DataError(_non_finite(frame))
        return IDENTITY
    mean = float(frame.mean(dtype=np.float64))
    if not math.isfinite(mean):
        raise DataError(_non_finite(frame))
    std = float(frame.std(dtype=np.float64))
    return Scaling(mean_in=mean, std_in=std if std > 0 else 1.0, mean_model=stats.mean, std_model=stats.std)


def _non_finite(frame: np.ndarray) -> str:
    return (f"holds {int(np.isnan(frame).sum())} NaN and {int(np.isinf(frame).sum())} infinite values: "
            "no denoised output could be trusted")
