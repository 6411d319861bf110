"""Stream (noisy, clean) batches of a Dataset into pinned host buffers and, optionally, the GPU.

Public API::

    reader = PairReader(dataset, batch_size=4, shuffle=True, seed=0, drop_last=True,
                        device=False, workers=4, prefetch=4, drop_cache=True, part=None)
    reader.batches_per_epoch          # batches that one epoch yields
    reader.order(epoch)               # that epoch's sample order (int64 array)
    for batch in reader.epoch(epoch, start=position):
        batch.wait(stream)            # GPU: `stream` waits for this batch's copy (host: no-op)
        batch.x, batch.y              # (B, 1, H, W) float32, noisy and clean; CuPy when device=True
        batch.indices                 # sample index of each row: x[k] is sample indices[k]
        batch.epoch, batch.position   # to resume after this batch: epoch(epoch, start=position + 1)
    reader.close()                    # or: with PairReader(...) as reader:

Order: shuffled, an epoch visits `np.random.default_rng((seed, epoch)).permutation(count)`;
sequential, 0 .. count-1. Batch p is order[p*B : (p+1)*B]; with drop_last the final partial batch
is skipped, else it comes with fewer rows. `start` resumes at batch `start` of the same order.
part=(start, stop) reads only rows [start, stop) of each batch (one rank's share of a global batch
in data-parallel training, cudnn_denoise.distributed.world): same order, same batch positions, fewer rows.

How it works: `workers` threads keep `prefetch` batches in flight (4 and 4 by default: with 2
workers, warm reads into the H100 machine's GPU measured 9-10 GB/s, with 4 about 13.6). Each reads
its samples with os.preadv straight into its slot's host buffers (pinned when device=True: no
intermediate copy) and, on the GPU path, queues the copy to the slot's device buffers on the
reader's own CUDA stream, then records the slot's `copied` event. batch.wait(stream) makes the
training stream wait on that event, so a step waits for data only when the disk falls behind. A
batch's buffers go back to the reader when the loop asks for the next batch (or leaves): copy
anything you keep. On the GPU the reader then records a `released` event on the stream that waited
(the current stream if none did); the next read into that slot's pinned buffers waits (on the
host) for the previous copy out of them, and the next copy into its device buffers waits (on the
host, in the worker) until `released` has completed, so neither buffer is overwritten while still
in use.

A step never waits longer than its own data needs: batch.wait comes after the worker that filled
the batch has returned, so the event it waits on is that batch's own copy, already queued; and a
copy is queued only once its slot is free, so the copy stream never holds a wait that a later step
could be stuck behind (a wait there for a slot whose step still runs would hold up every copy
queued after it on that in-order stream, batches due sooner included, whenever the workers finish
out of order).

Files of float16 (dataset.json's dtype) are read as they are, 2 bytes a value, into buffers of
that type: on the host path NumPy widens them into the float32 batch; on the GPU path the float16
bytes are copied to the device and one cudnnTransformTensor per file (legacy 4-d descriptors, HALF
to FLOAT) widens them into the float32 batch on the reader's stream, before `copied` is recorded.
The model always receives float32.

Page cache: with drop_cache each range is dropped from the cache once read (posix_fadvise
DONTNEED), so memory stays bounded whatever the file size. Shuffled, the files are advised RANDOM
(the kernel reads only what is asked) and at most the reads in flight stay cached. Sequential, the
kernel's readahead stays on, for speed; the stretch behind the batches in flight is dropped once
more, so at most the reads in flight, a few batches behind them and two of the disk's readahead
windows (read_ahead_kb) ahead of them stay cached. drop_cache=False lets a dataset that fits in
memory stay cached across epochs (train --cache, data/cache.py): the kernel's cache, not a copy in
the process, whose memory stays the batch buffers. A short read is continued, and at end of file
raised as DataError naming the file and offset: a batch is never returned with missing or
mismatched samples.

Without a GPU (device=False) everything is the same but the buffers are NumPy arrays, which is
what the tests and the NumPy reference use. CuPy is imported only on the GPU path.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cudnn_denoise.data.cache import drop_cached
from cudnn_denoise.data.format import (
    DTYPE,
    DataError,
    Dataset,
    open_readonly,
    read_exact,
)

DROP_BEHIND_MIN = 16 * 2**20  # _drop_behind's stretch: past the largest page-cache folio (2 MiB)


@dataclass
class _Slot:
    """One batch's buffers: what the files are read into, the float32 batch, and on the GPU path
    the events guarding them."""

    host_x: np.ndarray  # (B, 1, H, W) noisy, the files' dtype (pinned on the GPU path)
    host_y: np.ndarray  # (B, 1, H, W) clean
    x: Any  # (B, 1, H, W) float32 noisy batch: host_x itself for float32 files on the host path,
    y: Any  # else a NumPy array (host) or a cupy.ndarray (GPU) the reader fills from host_x/y
    copied: Any = None  # cupy Event: the batch is in x and y, and host_x/host_y are read out
    released: Any = None  # cupy Event: the consumer's work on x and y is done


class Batch:
    """B pairs of samples: x (noisy), y (clean), their indices, and their place in the epoch."""

    def __init__(self, slot: _Slot, indices: np.ndarray, epoch: int, position: int):
        self._slot = slot
        self._stream = None  # the stream that waited, on which the release event is recorded
        self.indices = indices
        self.epoch = epoch
        self.position = position

    @property
    def x(self):
        """Noisy samples, (B, 1, H, W) float32: a NumPy array, or a CuPy array on the GPU path."""
        return self._slot.x[: len(self.indices)]

    @property
    def y(self):
        """Clean samples, (B, 1, H, W) float32, row k paired with x's row k."""
        return self._slot.y[: len(self.indices)]

    def wait(self, stream=None) -> None:
        """Make `stream` (default: CuPy's current stream) wait for this batch's copy to the GPU.

        Call it before launching work that reads x or y on the GPU; host batches need no wait.
        """
        if self._slot.copied is None:
            return
        import cupy

        self._stream = stream if stream is not None else cupy.cuda.get_current_stream()
        self._stream.wait_event(self._slot.copied)


class PairReader:
    """Batches of (noisy, clean) pairs from a Dataset, read ahead by threads (module docstring)."""

    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = True, device: bool = False, workers: int = 4,
                 prefetch: int = 4, drop_cache: bool = True,
                 part: tuple[int, int] | None = None):
        if batch_size < 1 or workers < 1 or prefetch < 1:
            raise ValueError(f"batch_size ({batch_size}), workers ({workers}) and prefetch "
                             f"({prefetch}) must all be at least 1")
        if dataset.count < batch_size:
            raise DataError(f"{dataset.noisy}: holds {dataset.count} samples, fewer than one "
                            f"batch of {batch_size}")
        part = (0, batch_size) if part is None else tuple(part)
        if not 0 <= part[0] < part[1] <= batch_size:
            raise ValueError(f"part {part} is not a range of rows [start, stop) within a batch "
                             f"of {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.part = part
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.drop_cache = drop_cache
        self.prefetch = prefetch
        full, rest = divmod(dataset.count, batch_size)
        self.batches_per_epoch = full + (1 if rest and not drop_last else 0)
        self._fds: dict[Path, int] = {}
        self._gpu: _GpuCopier | None = None
        self._free: deque[_Slot] = deque()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="PairReader")
        self._epoch_running = False
        try:
            for path in (dataset.noisy, dataset.clean):
                self._fds[path] = open_readonly(path)
                # Sequential: the kernel's readahead (measured ~20% faster cold than RANDOM on
                # the H100 machine); _drop_behind catches what it leaves. Shuffled: none, since
                # pages read ahead past a sample would stay cached until that neighbour's turn.
                advice = os.POSIX_FADV_RANDOM if shuffle else os.POSIX_FADV_NORMAL
                os.posix_fadvise(self._fds[path], 0, 0, advice)
            if device:
                self._gpu = _GpuCopier(dataset.dtype)
            # prefetch slots in flight plus the one the consumer holds.
            self._free.extend(self._new_slot() for _ in range(prefetch + 1))
        except BaseException:
            self.close()
            raise

    def order(self, epoch: int) -> np.ndarray:
        """The sample order of `epoch`: a seeded permutation when shuffling, else 0 .. count-1."""
        if not self.shuffle:
            return np.arange(self.dataset.count, dtype=np.int64)
        return np.random.default_rng((self.seed, epoch)).permutation(self.dataset.count)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of `epoch` from batch position `start` (0 .. batches_per_epoch) on."""
        if not 0 <= start <= self.batches_per_epoch:
            raise ValueError(f"start {start} is outside 0..{self.batches_per_epoch} "
                             "(batches_per_epoch)")
        if self._epoch_running:
            raise RuntimeError("PairReader streams one epoch at a time; finish or close the "
                               "previous epoch's loop first")
        self._epoch_running = True
        return self._stream(epoch, start)

    def _stream(self, epoch: int, start: int) -> Iterator[Batch]:
        order = self.order(epoch)
        todo = iter(range(start, self.batches_per_epoch))
        pending: deque = deque()  # (position, indices, slot, future), in epoch order

        def submit_next() -> None:
            position = next(todo, None)
            if position is not None:
                indices = order[position * self.batch_size: (position + 1) * self.batch_size]
                indices = indices[self.part[0]: self.part[1]]
                slot = self._free.popleft()
                future = self._pool.submit(self._fill, slot, indices, position)
                pending.append((position, indices, slot, future))

        try:
            for _ in range(self.prefetch):
                submit_next()
            while pending:
                position, indices, slot, future = pending.popleft()
                try:
                    future.result()  # raises the worker's DataError, if any
                except BaseException:
                    self._free.append(slot)
                    raise
                submit_next()
                batch = Batch(slot, indices.copy(), epoch, position)
                try:
                    yield batch
                finally:
                    self._give_back(slot, batch)
        finally:
            for _, _, slot, future in pending:
                if not future.cancel():
                    future.exception()  # wait: a worker may still be writing into the slot
                self._free.append(slot)
            self._epoch_running = False

    def close(self) -> None:
        """Stop the workers and close the files; the reader cannot be used afterwards."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._gpu is not None:
            self._gpu.close()  # after the copies that may still read pinned memory are done
        self._free.clear()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> PairReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _new_slot(self) -> _Slot:
        shape = (self.part[1] - self.part[0], 1, self.dataset.height, self.dataset.width)
        if self._gpu is not None:
            return self._gpu.new_slot(shape)
        host_x, host_y = np.empty(shape, self.dataset.dtype), np.empty(shape, self.dataset.dtype)
        if self.dataset.dtype == DTYPE:
            return _Slot(host_x, host_y, host_x, host_y)
        return _Slot(host_x, host_y, np.empty(shape, DTYPE), np.empty(shape, DTYPE))

    def _fill(self, slot: _Slot, indices: np.ndarray, position: int) -> None:
        """Worker: read batch `position` (samples `indices`) into the slot, then queue its copy
        to the GPU."""
        if self._gpu is not None:
            slot.copied.synchronize()  # the previous copy out of these pinned buffers is done
        nbytes = self.dataset.sample_nbytes
        for path, host in ((self.dataset.noisy, slot.host_x), (self.dataset.clean, slot.host_y)):
            fd = self._fds[path]
            view = memoryview(host).cast("B")
            for row, first, length in _runs(indices):
                offset, size = first * nbytes, length * nbytes
                read_exact(fd, view[row * nbytes: row * nbytes + size], offset, path)
                if self.drop_cache:
                    drop_cached(fd, offset, size)
        if self.drop_cache and not self.shuffle:
            self._drop_behind(position)
        rows = len(indices)
        if self._gpu is not None:
            self._gpu.copy(slot, rows)
        elif slot.x is not slot.host_x:  # float16 files: widened exactly to float32
            np.copyto(slot.x[:rows], slot.host_x[:rows])
            np.copyto(slot.y[:rows], slot.host_y[:rows])

    def _drop_behind(self, position: int) -> None:
        """Sequential: drop again the stretch of both files that ends with batch position-prefetch.

        The first drop misses pages that readahead put in large folios straddling two batches, or
        that were still under I/O. Batches up to position-prefetch are complete (the loop waited
        for that one before submitting this one), so nothing still needed is dropped.
        """
        batch_bytes = self.batch_size * self.dataset.sample_nbytes
        end = (position - self.prefetch + 1) * batch_bytes
        start = max(0, end - max(2 * batch_bytes, DROP_BEHIND_MIN))
        if end > 0:
            for fd in self._fds.values():
                drop_cached(fd, start, end - start)

    def _give_back(self, slot: _Slot, batch: Batch) -> None:
        """Return a slot to the free list; on the GPU, once the consumer's queued work is done."""
        if self._gpu is not None:
            self._gpu.record_release(slot, batch._stream)
        self._free.append(slot)


class _GpuCopier:
    """The GPU path's CuPy parts: pinned and device buffers, the copy stream, the events; for
    float16 files the device staging buffers and the cuDNN handle that widens them."""

    def __init__(self, file_dtype: np.dtype):
        from cudnn_denoise.bindings.device import require_gpu

        require_gpu()
        import cupy
        import cupyx

        self._cupy = cupy
        self._cupyx = cupyx
        self.file_dtype = file_dtype
        self._device = cupy.cuda.Device()  # the current device when the reader was made
        with self._device:
            self._stream = cupy.cuda.Stream(non_blocking=True)
        # One batch's calls stay together on the stream: the workers share the staging buffers.
        self._lock = threading.Lock()
        self._ctx = None  # float16 files: the cuDNN handle on the copy stream
        self._staging = None  # float16 files: device (x, y) in the files' dtype, one batch each
        self._widen: dict[int, Any] = {}  # rows -> precision.Convert HALF -> FLOAT

    def new_slot(self, shape: tuple[int, ...]) -> _Slot:
        cupy, cupyx = self._cupy, self._cupyx
        with self._device:
            if self.file_dtype != DTYPE and self._staging is None:
                from cudnn_denoise.layers.context import Context

                self._ctx = Context(self._stream, algorithm_cache=False)
                self._staging = tuple(cupy.empty(shape, self.file_dtype) for _ in "xy")
            return _Slot(
                host_x=cupyx.empty_pinned(shape, self.file_dtype),
                host_y=cupyx.empty_pinned(shape, self.file_dtype),
                x=cupy.empty(shape, DTYPE),
                y=cupy.empty(shape, DTYPE),
                # Events never recorded count as complete: the first fill waits for nothing.
                copied=cupy.cuda.Event(disable_timing=True),
                released=cupy.cuda.Event(disable_timing=True),
            )

    def copy(self, slot: _Slot, rows: int) -> None:
        """Queue host -> device of the first `rows` rows (and the widening of float16) on the
        copy stream, then record `copied`. Waits first, here on the host, until the last step
        that read the slot's device buffers is done: the copy stream itself never waits, so no
        copy queued on it is held up by another slot's step (module docstring)."""
        slot.released.synchronize()
        with self._device, self._lock:
            if self._staging is None:
                slot.x[:rows].set(slot.host_x[:rows], stream=self._stream)
                slot.y[:rows].set(slot.host_y[:rows], stream=self._stream)
            else:
                widen = self._widener(rows)
                for host, staging, out in ((slot.host_x, self._staging[0], slot.x),
                                           (slot.host_y, self._staging[1], slot.y)):
                    staging[:rows].set(host[:rows], stream=self._stream)
                    widen(staging, out)  # in stream order: before the next copy into staging
            slot.copied.record(self._stream)

    def _widener(self, rows: int):
        """cudnnTransformTensor HALF -> FLOAT of `rows` samples (a batch, or the last partial)."""
        if rows not in self._widen:
            from cudnn_denoise.layers.precision import FLOAT, HALF, Convert

            shape = self._staging[0].shape
            self._widen[rows] = Convert(self._ctx, (rows, *shape[1:]), HALF, FLOAT)
        return self._widen[rows]

    def record_release(self, slot: _Slot, stream) -> None:
        """Mark the slot free once the work queued so far on `stream` (default: current) is done."""
        with self._device:
            if stream is None:
                stream = self._cupy.cuda.get_current_stream()
            slot.released.record(stream)

    def close(self) -> None:
        """Wait until every copy queued on the copy stream is done; release the cuDNN parts."""
        self._stream.synchronize()
        for convert in self._widen.values():
            convert.close()
        self._widen.clear()
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None


def _runs(indices: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """(row, first sample, length) for each run of consecutive sample indices, so that a
    sequential batch is one read per file and a shuffled one a read per sample."""
    row = 0
    while row < len(indices):
        length = 1
        while row + length < len(indices) and indices[row + length] == indices[row] + length:
            length += 1
        yield row, int(indices[row]), length
        row += length
