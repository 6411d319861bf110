"""Raw float32 micrographs in the dataset format (docs/formats.md, "Dataset"): read and written
one frame at a time.

A raw file is little-endian float32, sample-major (N, H, W), no header: N micrographs of H x W
(float16 where a dataset.json beside it says so; read as float32). H and W come from
--height/--width, else from a dataset.json beside the file; both given and different is an error.
Output files are float32 in the same layout.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.format import DTYPE, META_NAME, DataError, file_dtype, open_readonly, read_meta
from ..userio.files import partial_name
from .frames import FrameFile


def raw_shape(path: Path, height: int | None, width: int | None) -> tuple[int, int]:
    """(H, W) of a raw file: from the flags, else its folder's dataset.json."""
    meta_path = path.parent / META_NAME
    meta = read_meta(meta_path)  # checked: positive integer height and width
    from_meta = (meta["height"], meta["width"]) if meta else None
    if height is None and width is None:
        if from_meta is None:
            raise DataError(f"{path}: a raw file needs --height and --width, or a {META_NAME} beside it")
        return from_meta
    if height is None or width is None:
        raise DataError(f"{path}: give both --height and --width for raw files")
    if from_meta is not None and from_meta != (height, width):
        raise DataError(f"{path}: --height {height} --width {width} contradict {meta_path} "
                        f"({from_meta[0]}x{from_meta[1]})")
    return height, width


class RawSource:
    """N frames of H x W float32 (or float16) in one raw file: read(i) gives frame i."""

    kind = "raw"
    header = None  # raw files carry no voxel size, origin or labels
    stack = True  # the dataset format is a stack, even of one frame

    def __init__(self, path: Path, height: int | None, width: int | None):
        self.path = path
        self.height, self.width = raw_shape(path, height, width)
        self.dtype = file_dtype(read_meta(path.parent / META_NAME), path.parent / META_NAME)
        if self.height < 1 or self.width < 1:
            raise DataError(f"{path}: height and width must be positive, not {self.height}x{self.width}")
        fd = open_readonly(path)
        try:
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        frame_bytes = self.height * self.width * self.dtype.itemsize
        if size == 0 or size % frame_bytes:
            raise DataError(f"{path}: size {size} bytes is not a positive multiple of one "
                            f"{self.height}x{self.width} {self.dtype.name} frame "
                            f"({frame_bytes} bytes)")
        self.frames = size // frame_bytes
        self._file = FrameFile(path, 0, self.dtype, self.height, self.width)

    def read(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frame `index` as float32 (H, W): into `out` if given, else a new array."""
        return self._file.read(index, out)

    def close(self) -> None:
        self._file.close()


class RawWriter:
    """A raw float32 file (N, H, W) written frame by frame under a hidden temporary name, renamed
    into place by finish()."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = partial_name(path)  # one per process
        self._file = open(self.tmp, "wb")

    def write(self, index: int, frame, moments=None) -> None:
        """Frame `index`; frames come in order (a raw file has no header for their moments)."""
        np.ascontiguousarray(frame, dtype=DTYPE).tofile(self._file)

    def finish(self) -> None:
        self._file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self._file.close()
        finally:
            self.tmp.unlink(missing_ok=True)
