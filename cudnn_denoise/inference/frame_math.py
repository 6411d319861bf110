"""A micrograph's arithmetic around the network on the CPU, in NumPy (the reference backend's):
its moments, the intensity maps and the previews' block means. device_math.DeviceMath makes the
same calls' worth on the GPU; the maps agree bit for bit, the moments in their last bits.
"""

from __future__ import annotations

import numpy as np

from ..micrographs.moments import Moments
from .intensity import Affine
from .preview import binned


class HostMath:
    """The same interface as DeviceMath, on host arrays (upload and download are copies)."""

    def upload(self, frame: np.ndarray) -> np.ndarray:
        return frame

    def download(self, y: np.ndarray, out: np.ndarray) -> None:
        np.copyto(out, y)

    def to_host(self, y: np.ndarray) -> np.ndarray:
        return y

    def moments(self, x: np.ndarray) -> Moments:
        return Moments.of(x)

    def affine(self, x: np.ndarray, f: Affine) -> np.ndarray:
        return f(x)

    def block_means(self, x: np.ndarray, factor: int) -> np.ndarray:
        return binned(x, factor)

    def close(self) -> None:
        pass
