"""TIFF micrographs through tifffile (the optional `tiff` extra): read one page at a time.

Each page of a TIFF file is one micrograph: a single-page file is one, a multi-page file a stack
(denoised, or cut into patches, page by page, as an .mrcs stack). Pages must be 2-D grey images
of one shape (no colour samples, no complex values); any integer or float type comes out as
float32. TIFF has no standard field for the pixel size in angstrom, so `header` is None and an
MRC written from a TIFF has a voxel size of 0 (unknown). tifffile reports much damage through the
`tifffile` logger rather than by raising (a broken chain of pages reads as a shorter file), so an
error it logs while the pages are listed or read makes the file a DataError with its words;
its warnings (odd but readable tags) are let pass.
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
                              "pip install 'cudnn_denoise[tiff]' (or pip install tifffile)"
                              ) from None
    return tifffile


class _Collect(logging.Handler):
    """Keeps the messages tifffile logs while a file is opened or read: errors and warnings."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        kept = self.errors if record.levelno >= logging.ERROR else self.warnings
        kept.append(record.getMessage())


@contextlib.contextmanager
def _tifffile_log():
    """tifffile's log messages collected (not printed) for the duration."""
    logger = logging.getLogger("tifffile")
    handler, propagate = _Collect(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
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
        with _tifffile_log() as log:
            try:
                self._tif = tifffile.TiffFile(path)
            # Only tifffile runs here: whatever it raises, the file is bad.
            except Exception as exc:  # noqa: BLE001
                raise DataError(f"{path}: not a readable TIFF file ({_named(exc)})") from None
            try:
                self._check(log)
            except Exception:
                self._tif.close()
                raise

    def _check(self, log: _Collect) -> None:
        pages = self._tif.pages
        self.frames = len(pages)  # lists every page: a broken chain is logged here
        if self.frames == 0 or log.errors:
            why = _first(log.errors + log.warnings) or "no image in it"
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

    def read(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        """Page `index` as float32 (H, W): into `out` if given, else a new array."""
        with _tifffile_log() as log:
            try:
                page = np.asarray(self._tif.pages[index].asarray(), dtype=np.float32)
            # A damaged page: its decoder raises its own error (zlib.error, ...).
            except Exception as exc:  # noqa: BLE001
                log.errors.insert(0, _named(exc))
            if log.errors:
                raise DataError(f"{self.path}: page {index} cannot be read ({_first(log.errors)})")
        if out is None:
            return page
        np.copyto(out, page)
        return out

    def close(self) -> None:
        self._tif.close()


def _first(messages: list[str], count: int = 2) -> str:
    """The first `count` messages, and how many more there were."""
    more = f"; and {len(messages) - count} more" if len(messages) > count else ""
    return "; ".join(messages[:count]) + more


def _named(exc: Exception) -> str:
    """An exception as `Type: message`, unless it is tifffile's own (its message says enough)."""
    kind = type(exc).__name__
    return str(exc) if kind == "TiffFileError" else f"{kind}: {exc}"
