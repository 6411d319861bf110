"""Thread-pool tasks run one after another per file, and named when they fail.

A file's steps (its frames read in turn; its frames written, then the file finished) must not
overlap: a TIFF or MRC handle is read with one file position, and a file is finished only when
all its frames are in. after(pool, previous, step) submits a task that waits for `previous` first.
ThreadPoolExecutor starts tasks in the order they were submitted, so `previous` is already running
or done when the wait begins: it never waits for a task that no thread has taken.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path


def after(pool: ThreadPoolExecutor, previous: Future | None, step: Callable[[], object]) -> Future:
    """A future of step(), run in `pool` once `previous` (if any) has finished; a previous
    failure is step's failure too (it is not run)."""

    def run():
        if previous is not None:
            previous.result()
        return step()

    return pool.submit(run)


def done(value) -> Future:
    """A future that already holds value: for results known in the caller's thread."""
    future = Future()
    future.set_result(value)
    return future


@contextlib.contextmanager
def naming(path: Path, doing: str):
    """An unexpected exception inside (a bug, not a bad input) carries a note naming the file:
    it surfaces in the caller's thread, far from where it happened."""
    try:
        yield
    except Exception as exc:
        exc.add_note(f"while {doing} {path}")
        raise
