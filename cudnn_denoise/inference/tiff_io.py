"""TIFF micrographs through tifffile (the optional `tiff` extra): read one page at a time.

Each page of a TIFF file is one micrograph: a single-page file is one, a multi-page file a stack
(denoised, or cut into patches, page by page, as an .mrcs stack). Pages must be 2-D grey images
of one shape (no colour samples, no complex values); any integer or float type comes out as
float32. TIFF has no standard field for the pixel size in angstrom, so `header` is None and an
MRC written from a TIFF has a voxel size of 0 (unknown). tifffile reports damaged files through
the `tifffile` logger rather than by raising; those messages become the DataError's text.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np

from ..data.format import DataError


class TifffileMissing(RuntimeError):
    """tifffile is not installed."""


def require_tifffile():
    """The tifffile module; TifffileMissing (with the install command) when it is not installed."""
    try:
        import tifffile
    except ImportError as exc:
        raise TifffileMissing(f"TIFF files need the tifffile package ({exc}); "
                              "pip install 'cudnn_denoise[tiff]' (or pip install tifffile)") from None
    return tifffile


class _Collect(logging.Handler):
    """Keeps the messages tifffile logs while a file is opened or read."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _tifffile_log():
    """tifffile's log messages collected (not printed) for the duration."""
    logger = logging.getLogger("tifffile")
    handler, propagate = _Collect(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


class TiffSource:
    """The pages of a TIFF file: read(i) gives page i as float32 (H, W)."""

    kind = "tiff"
    header = None  # no voxel size, origin or MRC labels

    def __init__(self, path: Path):
        tifffile = require_tifffile()
        self.path = path
        with _tifffile_log() as messages:
            try:
                self._tif = tifffile.TiffFile(path)
            except (OSError, ValueError, EOFError) as exc:  # TiffFileError is a ValueError
                raise DataError(f"{path}: not a readable TIFF file ({exc})") from None
            try:
                self._check(messages)
            except Exception:
                self._tif.close()
                raise

    def _check(self, messages: list[str]) -> None:
        pages = self._tif.pages
        self.frames = len(pages)
        if self.frames == 0:
            why = "; ".join(messages) or "no image in it"
            raise DataError(f"{self.path}: not a readable TIFF file ({why})")
        shapes = {tuple(page.shape) for page in pages}
        if len(shapes) > 1:
            raise DataError(f"{self.path}: its pages differ in shape ({sorted(shapes)}); "
                            "a stack needs one shape")
        shape, dtype = shapes.pop(), np.dtype(pages[0].dtype)
        if len(shape) != 2:
            raise DataError(f"{self.path}: pages of shape {shape} are not 2-D grey images "
                            "(colour, or a volume in one page)")
        if dtype.kind not in "uif":
            raise DataError(f"{self.path}: holds {dtype} values, not a real-valued image")
        self.height, self.width = shape
        if self.height == 0 or self.width == 0:
            raise DataError(f"{self.path}: holds no pixels (shape {shape})")
        self.stack = self.frames > 1

    def read(self, index: int) -> np.ndarray:
        """Page `index` as a new float32 array (H, W)."""
        with _tifffile_log() as messages:
            try:
                return np.asarray(self._tif.pages[index].asarray(), dtype=np.float32)
            except (OSError, ValueError, EOFError) as exc:  # a truncated or damaged page
                detail = "; ".join([str(exc), *messages])
                raise DataError(f"{self.path}: page {index} cannot be read ({detail})") from None

    def close(self) -> None:
        self._tif.close()
