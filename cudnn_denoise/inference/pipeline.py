"""Streaming: micrographs read ahead, denoised on the GPU in the caller's thread, written behind.

Three stages overlap: a few reader threads read the next frames (reading.py), the caller's thread
takes each through the network (Denoiser.run_frame: on the GPU its moments, maps and the
preview's block means too, so the CPU threads only read and write), a few writer threads write
and preview the frames before it (writing.py). Each stage holds at most a few frames, so host
memory stays bounded whatever the number of files. Results come in input order, one FileResult
per input, as soon as that input and all before it are done. A bad input (unreadable, not 2-D,
NaN) becomes a FileResult with its error; the run goes on.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass

from ..data.format import DataError
from ..userio import signals
from .files import Job
from .intensity import TrainingStats
from .reading import Failed, Frame, ReadAhead
from .writing import WriteBehind

# Threads, mostly waiting on the disk. On the H200 machine (16 cores, NVMe), 24 cold 4096^2 MRC
# micrographs went through at 13.8/s with 6 + 6, 14.6/s with 8 + 12 (11.9/s with previews, 10.2 with 6 + 6).
READERS = min(8, len(os.sched_getaffinity(0)))  # frames read side by side (~0.05 s each for 4096^2, cold)
WRITERS = min(12, len(os.sched_getaffinity(0)))  # frames written and synced (~0.1 s for 4096^2), previews
AHEAD = 2  # frames queued per stage beyond one per thread


@dataclass
class FileResult:
    """One input's outcome: frames written and their shape, or the error that made it skip."""

    job: Job
    frames: int = 0
    shape: tuple[int, int] | None = None
    seconds: float = 0.0
    tile: int | None = None
    error: str | None = None


def denoise_files(jobs: list[Job], denoiser, *, open_source: Callable, open_writer: Callable,
                  stats: TrainingStats | None, normalize: bool,
                  on_frame: Callable[[], None] = lambda: None,
                  on_output: Callable | None = None, preview_size: int | None = None,
                  readers: int = READERS, writers: int = WRITERS) -> Iterator[FileResult]:
    """Denoise each job's input into its output; a FileResult per job, in order.

    open_source(path) and open_writer(job, source) come from files.py; normalize keeps the
    model's scale instead of restoring the input's. on_output(job, index, frames, panels), if
    given with preview_size, sees each frame's block means (the model's input and the output,
    each binned to at most preview_size pixels a side), in a writer thread: the previews.
    on_frame() is called in this thread after each frame's denoising. Call close() on the
    iterator (or exhaust it) so that the threads stop and partial outputs are removed.
    """
    reading = ReadAhead(jobs, open_source, denoiser.frame_buffer, workers=readers, depth=readers + AHEAD)
    writing = WriteBehind(open_writer, on_output, workers=writers, depth=writers + AHEAD)
    pending: deque[tuple[FileResult, Future | None]] = deque()  # in input order; the future of seconds
    output, dropped = None, None  # the output being written; a job whose remaining frames are dropped
    try:
        for item in reading:
            signals.check()  # a signal whose Stopped C code dropped (signals.check)
            if item.job is dropped:
                continue
            done = _run(item, denoiser, stats, normalize, preview_size) if isinstance(item, Frame) else item
            if isinstance(done, Failed):
                dropped = done.job
                if output is not None:  # a stack that failed part way
                    writing.abort(output)
                    output = None
                pending.append((FileResult(done.job, error=done.message), None))
            else:
                source = item.source
                if item.index == 0:
                    output = writing.open(item.job, source)
                writing.write(output, item.index, source.frames, done)
                on_frame()
                if item.index == source.frames - 1:
                    result = FileResult(item.job, frames=source.frames, shape=(source.height, source.width),
                                        tile=denoiser.tile_for(source.height, source.width))
                    pending.append((result, writing.finish(output)))
                    output = None
            while pending and (pending[0][1] is None or pending[0][1].done()):
                yield _settled(*pending.popleft())
        while pending:
            yield _settled(*pending.popleft())
    finally:
        writing.close()
        reading.close()


def _run(item: Frame, denoiser, stats, normalize: bool, preview_size: int | None):
    """Frame `item` denoised (a Denoised), or a Failed naming it when it holds NaN or infinity."""
    try:
        return denoiser.run_frame(item.x, stats, normalize=normalize, preview_size=preview_size)
    except DataError as exc:
        where = f"{item.job.source}" + (f" frame {item.index}" if item.source.frames > 1 else "")
        return Failed(item.job, f"{where}: {exc}")


def _settled(result: FileResult, seconds: Future | None) -> FileResult:
    """result with its seconds, once its output is finished (a writer's error is raised here)."""
    if seconds is not None:
        result.seconds = seconds.result()
    return result
