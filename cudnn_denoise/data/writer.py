"""Writing a dataset: (noisy, clean) samples streamed to noisy.bin and clean.bin, dataset.json last.

Every maker of datasets (synthetic.py, the micrograph conversion, recast.py) hands its samples to
write_pairs,
which streams them to `.partial` files in constant memory and renames them into place only when
all were written, dataset.json last: a dataset.json means a whole dataset. An old dataset in the
folder stays as it was until then; an error or a signal part way removes the partial files.
ordered_map runs a maker's per-item function in worker processes, results in order.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from .format import (
    CLEAN_NAME,
    FILE_DTYPES,
    META_NAME,
    NOISY_NAME,
    DataError,
    Dataset,
    open_dir,
    write_meta,
)


def check_target(out_dir: str | os.PathLike, overwrite: bool) -> Path:
    """Make out_dir if needed; DataError when it already holds a dataset and overwrite is not set.

    Makers call it before their first expensive step, so a refusal costs nothing."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    if not overwrite:
        for path in (out_dir / NOISY_NAME, out_dir / CLEAN_NAME, out_dir / META_NAME):
            if path.exists():
                raise DataError(f"{path}: already exists (overwrite it with --overwrite)")
    return out_dir


def write_pairs(out_dir: str | os.PathLike, chunks: Iterable[tuple[np.ndarray, np.ndarray]],
                height: int, width: int, made_by: dict, *, overwrite: bool = False,
                meta: Callable[[], dict] | None = None, dtype: str = "float32") -> Dataset:
    """Write every (noisy, clean) of `chunks` to out_dir and return the opened Dataset.

    A chunk is two arrays of one shape (..., height, width): one sample or several. The files
    store them as `dtype` (a FILE_DTYPES name; float32 values stored as float16 are rounded to
    nearest). made_by goes into dataset.json as it is; meta(), called after the last chunk, gives
    more top-level keys (a maker learns some of them, e.g. its sources, while it writes).
    DataError when no sample came (nothing is written then).
    """
    stored = FILE_DTYPES[dtype]
    out_dir = check_target(out_dir, overwrite)
    finals = [out_dir / NOISY_NAME, out_dir / CLEAN_NAME]
    partial = [path.with_name(path.name + ".partial") for path in finals]
    count = 0
    try:
        with open(partial[0], "wb") as noisy_file, open(partial[1], "wb") as clean_file:
            for noisy, clean in chunks:
                if noisy.shape != clean.shape or noisy.shape[-2:] != (height, width):
                    raise ValueError(f"a chunk of shapes {noisy.shape} and {clean.shape} in a "
                                     f"dataset of {height}x{width}")  # a maker's bug
                # The bytes as stored: little-endian, C order.
                noisy_file.write(np.ascontiguousarray(noisy, stored).data)
                clean_file.write(np.ascontiguousarray(clean, stored).data)
                count += noisy.size // (height * width)
        if count == 0:
            raise DataError(f"{out_dir}: no samples to write")
        extra = meta() if meta is not None else {}
    except BaseException:
        for path in partial:
            path.unlink(missing_ok=True)
        raise
    (out_dir / META_NAME).unlink(missing_ok=True)  # no old description of the new files
    for path, final in zip(partial, finals):
        os.replace(path, final)
    write_meta(out_dir, height, width, count, made_by, extra, dtype=dtype)
    return open_dir(out_dir)


@contextlib.contextmanager
def ordered_map(function: Callable, items: Iterable, workers: int,
                chunksize: int = 1) -> Iterator[Iterator]:
    """Yields an iterator over function(item) for each item, in order, from `workers` processes
    (in this one when workers <= 1). The function must depend only on its item for the bytes to
    be the same for any number of workers."""
    if workers <= 1:
        yield map(function, items)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield pool.imap(function, items, chunksize=chunksize)
