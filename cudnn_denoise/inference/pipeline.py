"""Streaming: micrographs read ahead, denoised on the GPU in the caller's thread, written behind.

Three stages overlap: a few reader threads read and scale the next frames (reading.py), the
caller's thread runs the network on the current one (the GPU, or the NumPy reference), a few
writer threads write and preview the frames before it (writing.py). Each stage holds at most a
few frames, so host memory stays bounded whatever the number of files. Results come in input
order, one FileResult per input, as soon as that input and all before it are done. A bad input
(unreadable, not 2-D, NaN) becomes a FileResult with its error; the run goes on.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass

from ..userio import signals
from .files import Job
from .intensity import TrainingStats
from .reading import Failed, ReadAhead
from .writing import WriteBehind

READERS = min(6, len(os.sched_getaffinity(0)))  # frames read and scaled side by side (~0.2 s each for 4096^2)
WRITERS = min(6, len(os.sched_getaffinity(0)))  # frames written (~0.2 s for 4096^2) and previewed (~0.25 s)
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
                  on_output: Callable | None = None,
                  readers: int = READERS, writers: int = WRITERS) -> Iterator[FileResult]:
    """Denoise each job's input into its output; a FileResult per job, in order.

    open_source(path) and open_writer(job, source) come from files.py; normalize keeps the
    model's scale instead of restoring the input's. on_output(job, index, frames, x, y), if
    given, sees each frame's input (on the model's scale) and output (as written), in a writer
    thread: the previews. on_frame() is called in this thread after each frame's denoising.
    Call close() on the iterator (or exhaust it) so that the threads stop and partial outputs
    are removed.
    """
    reading = ReadAhead(jobs, open_source, stats, workers=readers, depth=readers + AHEAD)
    writing = WriteBehind(open_writer, on_output, workers=writers, depth=writers + AHEAD)
    pending: deque[tuple[FileResult, Future | None]] = deque()  # in input order; the future of seconds
    output = None
    try:
        for item in reading:
            signals.check()  # a signal whose Stopped C code dropped (signals.check)
            if isinstance(item, Failed):
                if output is not None:  # a stack that failed part way
                    writing.abort(output)
                    output = None
                pending.append((FileResult(item.job, error=item.message), None))
            else:
                source = item.source
                if item.index == 0:
                    output = writing.open(item.job, source)
                y = denoiser.denoise(item.x, None if normalize else item.scaling.from_model)
                writing.write(output, item.index, source.frames, item.x, y)
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


def _settled(result: FileResult, seconds: Future | None) -> FileResult:
    """result with its seconds, once its output is finished (a writer's error is raised here)."""
    if seconds is not None:
        result.seconds = seconds.result()
    return result
