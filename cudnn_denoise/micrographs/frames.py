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

    def read(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frame `index` as native float32 (H, W): into `out` if given (float32 files are read
        straight into it), else a new array."""
        if out is None:
            out = np.empty(self.shape, np.float32)
        if self.dtype == np.float32:  # native float32: the bytes are the values
            read_exact(self._fd, memoryview(out).cast("B"), self.offset + index * self.frame_bytes, self.path)
            return out
        buffer = np.empty(self.shape, self.dtype)
        read_exact(self._fd, memoryview(buffer).cast("B"), self.offset + index * self.frame_bytes, self.path)
        np.copyto(out, buffer, casting="unsafe")
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
