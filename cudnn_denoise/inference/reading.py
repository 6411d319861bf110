"""Reading ahead: the inputs' frames read by a few threads, handed over in input order.

Each frame is a task of a thread pool (pread releases the GIL, so the threads read files side by
side, straight into the buffers that buffer(shape) gives: pinned memory on the GPU); a file's
frames are read in turn (tasks.after). At most `depth` frames
are read ahead of the caller, so host memory stays bounded whatever the number of files. Sources
are opened in the caller's thread as their first frame is queued (a header read) and closed once
their last frame is handed over. A bad input (unreadable, not 2-D) becomes a Failed item in
place of the frame that failed; the caller drops the input's frames after it (pipeline.py drops a
job's frames after any failure, a NaN frame's too).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np

from ..data.format import DataError
from .files import Job
from .tasks import after, done, naming


@dataclass
class Frame:
    job: Job
    source: object  # MrcSource, TiffSource or RawSource (closed once its last frame is handed over)
    index: int
    x: np.ndarray  # (H, W) float32 as read


@dataclass
class Failed:
    job: Job
    message: str


@dataclass
class _Queued:
    job: Job
    source: object | None  # None when it could not be opened
    last: bool  # the source's last frame: close it once handed over
    future: Future  # of a Frame or a Failed


class ReadAhead:
    """Iterate for the Frame and Failed items of `jobs`, in order; close() when done (or stopped)."""

    def __init__(self, jobs: list[Job], open_source: Callable, buffer: Callable, *, workers: int, depth: int):
        self.open_source, self.buffer, self.depth = open_source, buffer, depth
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="denoise-read")
        self._plan = self._queue(jobs)
        self._queued: deque[_Queued] = deque()
        self._open: list = []  # sources not closed yet

    def __iter__(self) -> Iterator[Frame | Failed]:
        self._fill()
        while self._queued:
            queued = self._queued.popleft()
            item = queued.future.result()  # a reader's unexpected exception is raised here
            if queued.last:
                self._close(queued.source)
            self._fill()
            yield item

    def close(self) -> None:
        """Stop reading: wait for the reads under way (the rest are dropped), close the sources."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        while self._open:
            self._close(self._open[0])

    def _fill(self) -> None:
        while len(self._queued) < self.depth:
            queued = next(self._plan, None)
            if queued is None:
                return
            self._queued.append(queued)

    def _queue(self, jobs: list[Job]) -> Iterator[_Queued]:
        """A _Queued per frame of each job (or one Failed when it cannot be opened), as needed."""
        for job in jobs:
            try:
                source = self.open_source(job.source)
            except (ValueError, OSError) as exc:  # DataError, or what a malformed file makes mrcfile raise
                yield _Queued(job, None, False, done(Failed(job, _message(job, exc))))
                continue
            self._open.append(source)
            if source.frames == 0:
                self._close(source)
            previous = None
            for index in range(source.frames):
                previous = after(self._pool, previous, partial(self._read, job, source, index))
                yield _Queued(job, source, index == source.frames - 1, previous)

    def _read(self, job: Job, source, index: int) -> Frame | Failed:
        with naming(job.source, "reading"):
            try:
                frame = source.read(index, self.buffer((source.height, source.width)))
            except (ValueError, OSError) as exc:
                return Failed(job, _message(job, exc))
            return Frame(job, source, index, frame)

    def _close(self, source) -> None:
        self._open.remove(source)
        source.close()


def _message(job: Job, exc: BaseException) -> str:
    """exc as a line that names the input (DataErrors name it already)."""
    text = str(exc)
    return text if isinstance(exc, DataError) else f"{job.source}: {type(exc).__name__}: {text}"
