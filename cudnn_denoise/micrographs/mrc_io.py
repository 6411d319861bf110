"""MRC files through mrcfile (the optional `mrc` extra): micrographs read one frame at a time
(the header through mrcfile's memory map, the frames with pread: frames.py says why), denoised
ones written as fresh float32 (mode 2) files.

mrcfile is imported on first use; without it, require_mrcfile() raises MrcfileMissing with the
install command. Reading is permissive (mrcfile.mmap(..., permissive=True)), so headers that
other programs write slightly off are accepted; a file whose data cannot be mapped is a DataError
naming it. Frames come out as float32 whatever the mode (int8, int16, uint16, float16, float32).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.format import DataError
from ..userio.files import partial_name
from .frames import FrameFile
from .moments import Moments, combine

MAX_LABELS = 10  # an MRC header holds ten labels of 80 printable ASCII characters
LABEL_CHARS = 80


class MrcfileMissing(RuntimeError):
    """mrcfile is not installed."""


def require_mrcfile():
    """The mrcfile module; MrcfileMissing (with the install command) when it is not installed."""
    try:
        import mrcfile
    except ImportError as exc:
        raise MrcfileMissing(f"MRC files need the mrcfile package ({exc}); "
                             "pip install 'cudnn_denoise[mrc]' (or pip install mrcfile)") from None
    return mrcfile


@dataclass(frozen=True)
class MrcHeader:
    """What a denoised file keeps of its input's header."""

    voxel_size: tuple[float, float, float] = (0.0, 0.0, 0.0)  # angstrom, x y z
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    labels: tuple[str, ...] = field(default_factory=tuple)

    @property
    def pixel_size(self) -> list[float] | None:
        """[x, y] in angstrom, to the 6 digits a float32 holds; None when the header has none (0)."""
        x, y, _ = self.voxel_size
        return [float(f"{x:.6g}"), float(f"{y:.6g}")] if x > 0 and y > 0 else None


class MrcSource:
    """A 2-D micrograph or an image stack: read(i) gives frame i as float32 (H, W).

    A 3-D file is a stack when it is named .mrcs or its header says so (ISPG 0); with nz = 1 it is
    one micrograph whatever ISPG says. Anything else (a volume, a volume stack, complex data) is a
    DataError.
    """

    kind = "mrc"

    def __init__(self, path: Path):
        mrcfile = require_mrcfile()
        self.path = path
        with warnings.catch_warnings(record=True) as caught:  # permissive reading warns instead of raising
            warnings.simplefilter("always")
            try:
                mrc = mrcfile.mmap(path, mode="r", permissive=True)
            except (OSError, ValueError, EOFError) as exc:
                raise DataError(f"{path}: not a readable MRC file ({exc})") from None
        try:
            self._check(mrc, caught)
            header = mrc.header
            voxel = mrc.voxel_size
            self.header = MrcHeader(
                voxel_size=(float(voxel.x), float(voxel.y), float(voxel.z)),
                origin=(float(header.origin.x), float(header.origin.y), float(header.origin.z)),
                labels=tuple(label.rstrip() for label in mrc.get_labels()))
            data = mrc.data
            self._file = FrameFile(path, data.offset, data.dtype, self.height, self.width)
        finally:  # the header read, the map goes: frames are read with pread (frames.py)
            mrc.close()

    def _check(self, mrc, caught) -> None:
        data = mrc.data
        if data is None:
            why = "; ".join(str(w.message) for w in caught) or "no data block"
            raise DataError(f"{self.path}: not a readable MRC file ({why})")
        if np.iscomplexobj(data):
            raise DataError(f"{self.path}: holds complex values (mode {int(mrc.header.mode)}), not an image")
        if data.ndim == 2:
            self.frames, self.stack = 1, False
        elif data.ndim == 3 and data.shape[0] == 1:
            self.frames, self.stack = 1, False
        elif data.ndim == 3 and (mrc.is_image_stack() or self.path.suffix.lower() == ".mrcs"):
            self.frames, self.stack = data.shape[0], True
        else:
            raise DataError(f"{self.path}: a {data.ndim}-D volume of shape {data.shape} (ISPG "
                            f"{int(mrc.header.ispg)}), not a micrograph or an image stack "
                            "(.mrcs, or ISPG 0)")
        self.height, self.width = data.shape[-2:]
        if self.height == 0 or self.width == 0:
            raise DataError(f"{self.path}: holds no pixels (shape {data.shape})")

    def read(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frame `index` as float32 (H, W): into `out` if given, else a new array."""
        return self._file.read(index, out)

    def close(self) -> None:
        self._file.close()


class MrcWriter:
    """A fresh float32 (mode 2) MRC file written frame by frame, then finished or aborted.

    Written under a hidden temporary name in the output folder and renamed into place by finish(),
    so an output that exists is complete. mrcfile makes the file and its header; the frames go in
    with pwrite (the GIL released, unlike a copy into a memory map) and the header's statistics
    (dmin, dmax, dmean, rms) come from each frame's moments as the denoiser computed them, so
    that no frame is read back. finish() sets the kept header fields and our label.
    """

    def __init__(self, path: Path, frames: int, height: int, width: int, *, stack: bool,
                 header: MrcHeader | None, label: str):
        mrcfile = require_mrcfile()
        self.path = path
        self.tmp = partial_name(path)  # one per process
        shape = (frames, height, width) if stack else (height, width)
        self._mrc = mrcfile.new_mmap(self.tmp, shape=shape, mrc_mode=2, overwrite=True)
        self._fd = None
        try:
            _allocate(self.tmp)
            self._fd = os.open(self.tmp, os.O_WRONLY)
        except BaseException:
            self.abort()
            raise
        self._dtype, self._offset = self._mrc.data.dtype, self._mrc.data.offset
        self._frame_bytes = height * width * self._dtype.itemsize
        self._moments: list[Moments] = []
        self.stack = stack
        self.header, self.label = header or MrcHeader(), label

    def write(self, index: int, frame, moments: Moments) -> None:
        """Frame `index` (frames come in order) and its moments."""
        data = np.ascontiguousarray(frame, dtype=self._dtype)
        write_exact(self._fd, memoryview(data).cast("B"), self._offset + index * self._frame_bytes)
        self._moments.append(moments)

    def finish(self) -> None:
        mrc = self._mrc
        if self.stack:
            mrc.set_image_stack()
        mrc.voxel_size = self.header.voxel_size
        mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = self.header.origin
        mrc.header.label[:] = b""  # new_mmap wrote mrcfile's own "Created by" label
        mrc.header.nlabl = 0
        for label in self.header.labels[: MAX_LABELS - 1]:  # the last slot is ours
            mrc.add_label(label[:LABEL_CHARS])
        mrc.add_label(self.label)
        stats = combine(self._moments)
        mrc.header.dmin, mrc.header.dmax = np.float32(stats.minimum), np.float32(stats.maximum)
        mrc.header.dmean, mrc.header.rms = np.float32(stats.mean), np.float32(stats.std)
        os.fsync(self._fd)  # the GIL released: close()'s msync (mmap.flush holds the GIL) finds nothing to write
        os.close(self._fd)
        self._fd = None
        mrc.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Drop the partial file."""
        try:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._mrc.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def write_exact(fd: int, data: memoryview, offset: int) -> None:
    """All of `data` at `offset` of `fd` (pwrite may write less than asked)."""
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)


def _allocate(path: Path) -> None:
    """Give the (sparse) new file its blocks now: a full disk is then an OSError here, instead of
    a SIGBUS that kills the process when a page of the memory map is first written."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def label(head: str, tail: str) -> str:
    """head + tail as an MRC label: printable ASCII (others become '?'), at most 80 characters;
    a long tail (e.g. a checkpoint's path) is cut from the left, so that its end stays."""
    head, tail = (_printable(text) for text in (head, tail))
    room = LABEL_CHARS - len(head)
    return head + (tail if len(tail) <= room else "..." + tail[-(room - 3):])


def _printable(text: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text)
