"""SIGINT and SIGTERM in the command-line programs, in three modes, each restoring the handlers it
found when its block ends:

raising(): a signal raises Stopped(signum) in the main thread wherever it is: for work that can
    stop at any point and cleans up on the way out (the programs' default, from their first line).
flag(): a signal only sets flag.received: for a loop that must finish its step first (training).
held(): a signal waits until the block ends, then acts as the surrounding mode says: for a few
    renames that must all happen (outdir.Staging.commit).

exit_quietly(): until then, a signal ends the process at once with one line: the package sets it
    on import when it is started as a program, for the imports before main().

Outside the main thread (where Python cannot set handlers) raising() and flag() change nothing.

A Stopped raised inside C code can be dropped by it: an extension module's initialisation (NumPy
imports some lazily), CPython's at-fork hooks. So raising() also records the signal, and check()
raises it again at the next safe point: on entering flag() or held(), and in the loops that
write a dataset or denoise micrographs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, as KeyboardInterrupt: `except Exception` lets it
    through to the program's top, where it becomes exit code 128 + signum."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    def handled(self) -> int:
        """The exit code, 128 + signum, once a program has dealt with the signal (check() then
        has nothing left to raise)."""
        global _pending
        _pending = None
        return 128 + self.signum


def exit_quietly() -> None:
    """Until a program sets its own handlers (raising(), from main()'s first line): SIGINT and
    SIGTERM end the process at once with one line. For the imports before main() (NumPy's take a
    tenth of a second), where Python's KeyboardInterrupt would print a traceback; nothing has
    been written then."""
    for sig in SIGNALS:
        signal.signal(sig, _exit_now)


def _exit_now(signum, frame):
    os.write(2, f"stopped by {signal.Signals(signum).name} while starting: nothing was "
                "written\n".encode())
    os._exit(128 + signum)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _handling(handler):
    if not _on_main_thread():
        yield
        return
    old = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


_pending: int | None = None  # the last signal raising() raised: it may have been dropped


def _raise(signum, frame):
    global _pending
    _pending = signum
    raise Stopped(signum)


def check() -> None:
    """Raise Stopped again for a signal whose Stopped C code dropped (see the module)."""
    global _pending
    if _pending is not None:
        signum, _pending = _pending, None
        raise Stopped(signum)


@contextlib.contextmanager
def raising():
    """SIGINT / SIGTERM raise Stopped inside the block. A Stopped that leaves the block is the
    signal dealt with; one that C code dropped is raised when the block ends, at the latest."""
    global _pending
    try:
        with _handling(_raise):
            yield
    except Stopped:
        _pending = None
        raise
    check()


class flag:
    """`with signals.flag() as stop:` SIGINT / SIGTERM set stop.received (the last signal)."""

    def __init__(self):
        self.received: int | None = None
        self._block = None

    def _set(self, signum, frame):
        self.received = signum

    def __enter__(self) -> flag:
        check()
        self._block = _handling(self._set)
        self._block.__enter__()
        return self

    def __exit__(self, *exc):
        return self._block.__exit__(*exc)


@contextlib.contextmanager
def held(*, raise_pending: bool = True):
    """SIGINT / SIGTERM received inside the block are raised again when it ends (on the handlers
    it found). Python runs every handler in the main thread, whichever thread the kernel chose, so
    swapping the handlers holds them off where blocking the main thread's signal mask would not.
    raise_pending=False: for clean-up while a Stopped is on its way out (check() would raise it
    again before the block)."""
    if raise_pending:
        check()
    caught = flag()
    with _handling(caught._set):
        yield
    if caught.received is not None:
        signal.raise_signal(caught.received)
