"""A frame's moments: count, min, max, mean and standard deviation, the mean and deviation in float64.

They scale a micrograph into the model's range (inference/intensity.py) and fill a denoised MRC file's header
(dmin, dmax, dmean, rms). The standard deviation is the population one, sqrt(mean((x - mean)^2)),
two passes as NumPy's std computes it; the order of the sums is the implementation's (NumPy's
pairwise sums, cuDNN's reductions), which moves the float64 results in their last bits only.
A stack's moments are its frames' combined (combine), so that no frame is read twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Moments:
    count: int
    minimum: float
    maximum: float
    mean: float
    std: float

    @classmethod
    def of(cls, x: np.ndarray) -> Moments:
        """The moments of a NumPy array."""
        return cls(int(x.size), float(x.min()), float(x.max()), float(x.mean(dtype=np.float64)),
                   float(x.std(dtype=np.float64)))


def combine(parts: list[Moments]) -> Moments:
    """The moments of the frames together: each frame's squared deviations about the overall
    mean are its own plus count * (its mean - the overall mean)^2."""
    if len(parts) == 1:
        return parts[0]
    count = sum(p.count for p in parts)
    mean = sum(p.count * p.mean for p in parts) / count
    squares = sum(p.count * (p.std ** 2 + (p.mean - mean) ** 2) for p in parts)
    return Moments(count, min(p.minimum for p in parts), max(p.maximum for p in parts), mean,
                   math.sqrt(squares / count))
