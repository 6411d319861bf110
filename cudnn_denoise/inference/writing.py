"""Writing behind: denoised frames written, and previewed, by a few threads while the GPU goes on.

open(), write() and finish() queue an output's steps, which run in order (tasks.after): the
file created, each frame written and handed to on_output (the previews), then the file finished
(header statistics) and renamed into place. write() waits while `depth` frames
are queued already, so host memory stays bounded. An OSError while writing is an OutputError
naming the output: it ends the run, since every later output would fail the same way. close()
waits for the steps under way, drops the rest and removes every output not finished, so only
complete outputs stay.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from .files import Job, OutputError
from .tasks import after, naming


@dataclass
class Output:
    """One output being written: its writer and its last queued step."""

    job: Job
    writer: object | None  # MrcWriter or RawWriter, once created
    started: float  # time.monotonic() when it was opened
    last: Future | None = None
    settled: bool = False  # finished (renamed into place) or aborted: nothing left to remove


class WriteBehind:
    """open_writer(job, source) makes a writer; on_output(job, index, frames, panels), if given,
    sees each frame's preview panels (engine.Denoised.panels), in a writer thread."""

    def __init__(self, open_writer: Callable, on_output: Callable | None, *, workers: int, depth: int):
        self.open_writer, self.on_output, self.depth = open_writer, on_output, depth
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="denoise-write")
        self._frames: deque[Future] = deque()  # queued frame steps, oldest first
        self._outputs: list[Output] = []

    def open(self, job: Job, source) -> Output:
        """Queue the creation of job's output (a few ms: the file's blocks are allocated)."""
        output = Output(job, None, time.monotonic())

        def step():
            with _writing(job), naming(job.output, "creating"):
                output.writer = self.open_writer(job, source)

        output.last = after(self._pool, None, step)
        self._outputs.append(output)
        return output

    def write(self, output: Output, index: int, frames: int, done) -> None:
        """Queue frame `index` of `frames` (done: an engine.Denoised, whose panels go to
        on_output); wait for room first."""
        while self._frames and (len(self._frames) >= self.depth or self._frames[0].done()):
            self._frames.popleft().result()  # a writer's error is raised here, or by finish's future

        def step():
            with naming(output.job.output, "writing"):
                with _writing(output.job):
                    output.writer.write(index, done.y, done.moments)
                if self.on_output is not None and done.panels is not None:  # its own errors name its own files
                    self.on_output(output.job, index, frames, done.panels)

        output.last = after(self._pool, output.last, step)
        self._frames.append(output.last)

    def finish(self, output: Output) -> Future:
        """Queue the output's completion; a future of the seconds since it was opened."""

        def step():
            with _writing(output.job), naming(output.job.output, "finishing"):
                output.writer.finish()
            output.settled = True
            return time.monotonic() - output.started

        output.last = after(self._pool, output.last, step)
        return output.last

    def abort(self, output: Output) -> None:
        """Queue the removal of a partial output (a stack whose input failed part way)."""
        previous = output.last

        def step():
            with contextlib.suppress(Exception):  # its frames first, whether or not they were written
                previous.result()
            output.settled = True
            if output.writer is not None:
                output.writer.abort()

        self._pool.submit(step)

    def close(self) -> None:
        """Wait for the steps under way, drop the others, remove the outputs not finished."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        for output in self._outputs:
            if not output.settled and output.writer is not None:
                output.settled = True
                output.writer.abort()


@contextlib.contextmanager
def _writing(job: Job):
    """An OSError while writing job's output (a full disk, a folder gone) as an OutputError
    naming it."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"{job.output}: cannot be written ({exc.strerror or exc}); the outputs "
                          "finished before it stay") from None
