"""Intensity scaling: each micrograph into the range the model was trained on, and the output back.

train stores the noisy training inputs' statistics in the checkpoint (extra["data_stats"]: mean,
std, min, max). A micrograph (each frame of a stack, on its own) is standardised with its own mean
and standard deviation and given the training data's:

    x_model = (x - mean_x) * (std_train / std_x) + mean_train
    y       = (y_model - mean_train) * (std_x / std_train) + mean_x     (unless --normalize)

so the output is on the input's scale: same units, same offset. A constant frame (std_x = 0)
is taken as std_x = 1. The statistics (moments.py) are computed in float64; each map is an Affine,
(x + shift) * scale + offset with float32 terms and three float32 roundings in that order, which
NumPy (frame_math.HostMath) and cuDNN (device_math.DeviceMath) compute alike, bit for bit.
Without data_stats the map is the identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..checkpoint import MANIFEST_FILE, CheckpointError
from ..data.format import DataError
from ..micrographs.moments import Moments
from ..training import run_record


@dataclass(frozen=True)
class Affine:
    """y = (x + shift) * scale + offset, in float32: three roundings, in this order."""

    shift: np.float32
    scale: np.float32
    offset: np.float32

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The map of a NumPy float32 array (a new array)."""
        return (x + self.shift) * self.scale + self.offset


@dataclass(frozen=True)
class Scaling:
    """x_model = (x - mean_in) * (std_model / std_in) + mean_model, and its inverse."""

    mean_in: float = 0.0
    std_in: float = 1.0
    mean_model: float = 0.0
    std_model: float = 1.0

    @property
    def to_model(self) -> Affine:
        """The model's input from a frame (x - mean_in is x + (-mean_in), exactly)."""
        return Affine(-np.float32(self.mean_in), np.float32(self.std_model / self.std_in),
                      np.float32(self.mean_model))

    @property
    def from_model(self) -> Affine:
        """A model output on the input's scale."""
        return Affine(-np.float32(self.mean_model), np.float32(self.std_in / self.std_model),
                      np.float32(self.mean_in))


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


def scaling_for(moments: Moments, stats: TrainingStats | None) -> Scaling:
    """The map of a frame with these moments into the training data's range (IDENTITY without
    stats); call check_finite first."""
    if stats is None:
        return IDENTITY
    std = moments.std if moments.std > 0 else 1.0
    return Scaling(mean_in=moments.mean, std_in=std, mean_model=stats.mean, std_model=stats.std)


def check_finite(moments: Moments, frame: np.ndarray) -> None:
    """DataError when the frame (a host array, whose moments these are) holds NaN or infinity:
    its mean is then not finite, and its statistics and output would be NaN."""
    if not math.isfinite(moments.mean):
        raise DataError(f"holds {int(np.isnan(frame).sum())} NaN and {int(np.isinf(frame).sum())} "
                        "infinite values: no denoised output could be trusted")
