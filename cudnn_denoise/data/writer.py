"""Writing a dataset: (noisy, clean) samples streamed to noisy.bin and clean.bin, dataset.json last.

Every maker of datasets (synthetic.py, the micrograph conversion, recast.py) hands its samples to
write_pairs, which streams them in constant memory into a staging folder beside the old files
(outdir.Staging) and moves the set in only when all were written, dataset.json last: a
dataset.json means a whole dataset. An old dataset in the folder stays as it was until then; an
error, a full disk or a signal part way leaves the folder as it was. ordered_map runs a maker's
per-item function in worker processes, results in order.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from ..userio import signals
from ..userio.outdir import Staging, make_folder
from ..userio.progress import format_bytes
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


def check_target(out_dir: str | os.PathLike, overwrite: bool, nbytes: int | None = None) -> Path:
    """Make out_dir if needed; DataError when it already holds a dataset and overwrite is not set,
    or (nbytes: what the new set needs) when its file system has less room free.

    Makers call it before their first expensive step, so a refusal costs nothing."""
    out_dir = make_folder(out_dir, "--out")
    existing = [path for path in (out_dir / NOISY_NAME, out_dir / CLEAN_NAME, out_dir / META_NAME)
                if os.path.lexists(path)]
    if existing and not overwrite:
        raise DataError(f"{existing[0]}: already exists (overwrite it with --overwrite)")
    free = shutil.disk_usage(out_dir).free
    if nbytes is not None and nbytes > free:
        beside = ("; the new set is written beside the old one, which stays until the new one is "
                  "whole") if existing else ""
        raise DataError(f"{out_dir}: the dataset needs {format_bytes(nbytes)}, only "
                        f"{format_bytes(free)} are free{beside}")
    return out_dir


def write_pairs(out_dir: str | os.PathLike, chunks: Iterable[tuple[np.ndarray, np.ndarray]],
                height: int, width: int, made_by: dict, *, overwrite: bool = False,
                meta: Callable[[], dict] | None = None, dtype: str = "float32",
                origin: str = "--dtype float16") -> Dataset:
    """Write every (noisy, clean) of `chunks` to out_dir and return the opened Dataset.

    A chunk is two arrays of one shape (..., height, width): one sample or several. The files
    store them as `dtype` (a FILE_DTYPES name; float32 values stored as float16 are rounded to
    nearest). made_by goes into dataset.json as it is; meta(), called after the last chunk, gives
    more top-level keys (a maker learns some of them, e.g. its sources, while it writes).
    DataError when no sample came, a value is beyond the stored dtype's range (named as a sample
    of `origin`), or the disk is full (nothing is changed then). One writer per folder: the
    command holds its outdir.OutputLock.
    """
    stored = FILE_DTYPES[dtype]
    out_dir = check_target(out_dir, overwrite)
    kept = ("the dataset there is unchanged" if (out_dir / META_NAME).exists()
            else "nothing was left there")
    count = 0
    try:
        with Staging(out_dir, META_NAME) as stage:
            with open(stage.path / NOISY_NAME, "wb") as noisy_file, \
                    open(stage.path / CLEAN_NAME, "wb") as clean_file:
                for noisy, clean in chunks:
                    signals.check()  # a signal whose Stopped C code dropped (signals.check)
                    if noisy.shape != clean.shape or noisy.shape[-2:] != (height, width):
                        raise ValueError(f"a chunk of shapes {noisy.shape} and {clean.shape} in a "
                                         f"dataset of {height}x{width}")  # a maker's bug
                    for file, which, values in ((noisy_file, "noisy", noisy),
                                                (clean_file, "clean", clean)):
                        file.write(_stored(values, stored, count, f"{origin}: {which}", kept).data)
                    count += noisy.size // (height * width)
            if count == 0:
                raise DataError(f"{out_dir}: no samples to write")
            extra = meta() if meta is not None else {}
            write_meta(stage.path, height, width, count, made_by, extra, dtype=dtype)
            stage.commit()
    except OSError as exc:
        raise DataError(f"{out_dir}: cannot write the dataset ({exc.strerror or exc}); "
                        f"{kept}") from None
    return open_dir(out_dir)


def _stored(values: np.ndarray, stored: np.dtype, first: int, what: str, kept: str) -> np.ndarray:
    """values as stored (little-endian, C order); DataError naming the first sample (numbered
    from `first`) holding a finite value that the stored dtype cannot hold (float16: inf)."""
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(values, stored)
    lost = np.isinf(out) & np.isfinite(values)
    if lost.any():
        at = int(np.argmax(lost.reshape(-1)))
        size = values.shape[-2] * values.shape[-1]
        largest = np.finfo(stored).max
        raise DataError(f"{what} sample {first + at // size} holds {values.reshape(-1)[at]:g}, "
                        f"beyond {stored.name}'s range ({largest:g} at most): store it as "
                        f"float32 or scale the values; {kept}")
    return out


@contextlib.contextmanager
def ordered_map(function: Callable, items: Iterable, workers: int) -> Iterator[Iterator]:
    """Yields an iterator over function(item) for each item, in order, from `workers` processes
    (in this one when workers <= 1). The function must depend only on its item for the bytes to
    be the same for any number of workers.

    Worker r computes items r, r + workers, ... and sends each result through its own pipe, which
    holds a few results at most: the workers run ahead of the consumer by that much. Leaving the
    block kills the workers and reads nothing more (multiprocessing.Pool's terminate() could hang
    reading a result that a killed worker had half sent, after a Ctrl-C); a worker whose parent
    died ends on its broken pipe.
    """
    if workers <= 1:
        yield map(function, items)
        return
    items = list(items)
    context = multiprocessing.get_context("fork")
    pipes = [context.Pipe(duplex=False) for _ in range(workers)]  # (reader, writer) per worker
    procs = [context.Process(target=_work, args=(function, items, rank, pipes), daemon=True)
             for rank in range(workers)]
    try:
        # A signal handler that raises while a fork runs CPython's at-fork hooks has its exception
        # printed and dropped (the signal is lost): hold signals until the workers are started.
        with signals.held():
            for proc in procs:
                proc.start()
        for _, writer in pipes:
            writer.close()
        yield (_receive(pipes[i % workers][0]) for i in range(len(items)))
    finally:
        for proc in procs:
            if proc.pid is not None:
                proc.kill()
                proc.join()
        for reader, _ in pipes:
            reader.close()


def _work(function: Callable, items: list, rank: int, pipes) -> None:
    """A worker of ordered_map: function(item) of items rank, rank + workers, ..., sent in order."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the parent acts
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for reader, _ in pipes:
        reader.close()  # so that the parent's end going away breaks this worker's pipe
    writer = pipes[rank][1]
    try:
        for item in items[rank::len(pipes)]:
            try:
                result = function(item)
            except Exception:  # a maker's bug: its traceback, for the parent to raise
                writer.send(_Failed(traceback.format_exc()))
                return
            writer.send(result)
    except BrokenPipeError:  # the parent is gone
        pass


class _Failed:
    def __init__(self, text: str):
        self.text = text


def _receive(reader):
    try:
        result = reader.recv()
    except EOFError:
        raise RuntimeError("a worker process ended early") from None
    if isinstance(result, _Failed):
        raise RuntimeError(f"a worker process failed:\n{result.text}")
    return result
