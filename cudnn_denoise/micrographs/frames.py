"""Frames read from a file with pread, not a memory map: a file that another program shrinks
while it is read gives a short read, a DataError naming it (the input is skipped); touching a
mapped page past the new end would kill the whole process with SIGBUS.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.format import open_readonly, read_exact


class FrameFile:
    """Frames of height x width `dtype` values, one after another from byte `offset` of `path`."""

    def __init__(self, path: Path, offset: int, dtype: np.dtype, height: int, width: int):
        self.path, self.offset, self.dtype = path, offset, np.dtype(dtype)
        self.shape = (height, width)
        self.frame_bytes = height * width * self.dtype.itemsize
        self._fd = open_readonly(path)

    def read(self, index: int) -> np.ndarray:
        """Frame `index` as a new native float32 array (H, W)."""
        buffer = bytearray(self.frame_bytes)
        read_exact(self._fd, memoryview(buffer), self.offset + index * self.frame_bytes, self.path)
        return np.frombuffer(buffer, self.dtype).reshape(self.shape).astype(np.float32)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
