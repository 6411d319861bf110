"""Streaming: one file at a time, the next frames read while the current one is denoised.

One reader thread opens each input, reads its frames one by one and maps them into the model's
range (intensity.py). Between it and the caller's thread sits a queue of one frame, so host
memory holds about three frames whatever the number of files: the one being denoised, the one
waiting, the one being read. The caller's thread denoises, writes and yields one FileResult per
input. A bad input (unreadable, not 2-D, NaN) becomes a FileResult with its error; the run goes on.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..data.format import DataError
from ..userio import signals
from .files import Job, OutputError
from .intensity import Scaling, TrainingStats, scaling_for


@dataclass
class FileResult:
    """One input's outcome: frames written and their shape, or the error that made it skip."""

    job: Job
    frames: int = 0
    shape: tuple[int, int] | None = None
    seconds: float = 0.0
    tile: int | None = None
    error: str | None = None


@dataclass
class _Frame:
    job: Job
    source: object  # MrcSource or RawSource (closed by now: frames, height, width, header stay)
    index: int
    x: np.ndarray  # (H, W) float32 on the model's scale
    scaling: Scaling


@dataclass
class _Failed:
    job: Job
    message: str


@dataclass
class _Crashed:
    exc: BaseException


_END = object()


class Prefetcher:
    """The reader thread: iterate over it for _Frame, _Failed and _Crashed items, then the end."""

    def __init__(self, jobs: list[Job], open_source: Callable, stats: TrainingStats | None, depth: int = 1):
        self.jobs, self.open_source, self.stats = jobs, open_source, stats
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="denoise-prefetch", daemon=True)

    def start(self) -> Prefetcher:
        self._thread.start()
        return self

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Crashed):
                raise item.exc
            yield item

    def stop(self) -> None:
        """Stop reading and wait for the thread (it checks between frames)."""
        self._stop.set()
        self._thread.join()

    def _put(self, item) -> bool:
        """Queue item, waiting for room; False once stop() was called."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for job in self.jobs:
                if not self._read(job):
                    return
        except BaseException as exc:  # a bug, not a bad input: re-raised in the caller's thread
            self._put(_Crashed(exc))
        self._put(_END)

    def _read(self, job: Job) -> bool:
        """Queue the frames of one input (or why it cannot be read); False when stopped."""
        try:
            source = self.open_source(job.source)
        except (ValueError, OSError) as exc:  # DataError, or what a malformed file makes mrcfile raise
            return self._put(_Failed(job, _message(job, exc)))
        try:
            for index in range(source.frames):
                where = f"{job.source}" + (f" frame {index}" if source.frames > 1 else "")
                frame = source.read(index)
                try:
                    scaling = scaling_for(frame, self.stats)
                except DataError as exc:
                    raise DataError(f"{where}: {exc}") from None
                if not self._put(_Frame(job, source, index, scaling.to_model(frame), scaling)):
                    return False
                del frame
        except (ValueError, OSError) as exc:
            return self._put(_Failed(job, _message(job, exc)))
        finally:
            source.close()
        return True


def _message(job: Job, exc: BaseException) -> str:
    """exc as a line that names the input (DataErrors name it already)."""
    text = str(exc)
    return text if isinstance(exc, DataError) else f"{job.source}: {type(exc).__name__}: {text}"


@contextlib.contextmanager
def _writing(job: Job):
    """An OSError while writing job's output (a full disk, a folder gone) as an OutputError
    naming it: it ends the run, since every later output would fail the same way."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"{job.output}: cannot be written ({exc.strerror or exc}); the outputs "
                          "finished before it stay") from None


def denoise_files(jobs: list[Job], denoiser, *, open_source: Callable, open_writer: Callable,
                  stats: TrainingStats | None, normalize: bool,
                  on_frame: Callable[[], None] = lambda: None,
                  on_output: Callable | None = None) -> Iterator[FileResult]:
    """Denoise each job's input into its output; a FileResult per job, in order.

    open_source(path) and open_writer(job, source) come from files.py; normalize keeps the
    model's scale instead of restoring the input's. on_output(job, index, frames, x, y), if
    given, sees each frame's input (on the model's scale) and output (as written): the previews.
    Call close() on the iterator (or exhaust it) so that the reader thread stops and a partial
    output is removed.
    """
    prefetch = Prefetcher(jobs, open_source, stats).start()
    writer, started = None, 0.0
    try:
        for item in prefetch:
            signals.check()  # a signal whose Stopped C code dropped (signals.check)
            if isinstance(item, _Failed):
                if writer is not None:  # a stack that failed part way
                    writer.abort()
                    writer = None
                yield FileResult(item.job, error=item.message)
                continue
            source = item.source
            if item.index == 0:
                started = time.monotonic()
                with _writing(item.job):
                    writer = open_writer(item.job, source)
            y = denoiser.denoise(item.x, None if normalize else item.scaling.from_model)
            with _writing(item.job):
                writer.write(item.index, y)
            if on_output is not None:
                on_output(item.job, item.index, source.frames, item.x, y)
            on_frame()
            if item.index == source.frames - 1:
                with _writing(item.job):
                    writer.finish()
                writer = None
                yield FileResult(item.job, frames=source.frames, shape=(source.height, source.width),
                                 seconds=time.monotonic() - started,
                                 tile=denoiser.tile_for(source.height, source.width))
    finally:
        if writer is not None:
            writer.abort()
        prefetch.stop()
