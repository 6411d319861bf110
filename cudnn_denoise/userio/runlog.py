"""run.log: what a command prints (stdout and stderr), kept in its output folder as well.

capture() tees sys.stdout and sys.stderr for the length of a command. Until attach(path) names the
file (once the command knows its output folder exists) the text is held in memory; attach writes
a header line (time, command line, version), then that text, then every later write, flushed at
once, appending to an existing run.log (a resumed run adds to its log). The progress bar, redrawn
in place with carriage returns and shown only on a terminal, is left out. A traceback that ends
the command is written to the log too. Outside capture(), attach() does nothing.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import threading
import time
import traceback
from pathlib import Path

from .. import __version__

LOG_NAME = "run.log"

_active: _Log | None = None  # the capture() in progress


class _Log:
    """The text of one command: held until attach(), then appended to the file."""

    def __init__(self, command: str):
        self.command = command
        self.lock = threading.Lock()  # denoise's reader thread may report too
        self.pending: list[str] = []
        self.file = None
        self.lost = False  # a write to the file failed: no more are tried

    def add(self, text: str) -> None:
        if "\r" in text or self.lost:  # the progress bar; a log that could not be written
            return
        with self.lock:
            if self.file is None:
                self.pending.append(text)
            else:
                try:
                    self.file.write(text)
                    self.file.flush()
                except OSError:  # a full disk: the log is a copy of the terminal, the work goes on
                    self.lost = True

    def attach(self, path: Path) -> None:
        with self.lock:
            if self.file is not None:
                return
            try:  # a full disk: the log is a copy of the terminal, the work goes on without it
                # Open for the whole command; close() closes it.
                self.file = open(path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
                self.file.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {self.command} "
                                f"(cudnn_denoise {__version__})\n" + "".join(self.pending))
                self.file.flush()
            except OSError:
                self.lost = True
            self.pending = []

    def close(self) -> None:
        with self.lock:
            if self.file is not None:
                with contextlib.suppress(OSError):  # what a full disk kept of the log stays
                    self.file.close()


class _Tee:
    """A text stream that writes to `stream` and to the log."""

    def __init__(self, stream, log: _Log):
        self._stream, self._log = stream, log

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        self._log.add(text)
        return written

    def __getattr__(self, name):  # flush, isatty, fileno, encoding...: the stream's own
        return getattr(self._stream, name)


@contextlib.contextmanager
def capture(prog: str, argv: list[str] | None):
    """Tee stdout and stderr into a run log for the duration (see the module's docstring).

    prog and argv (None: sys.argv[1:]) make the log's header line."""
    global _active
    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    log = _Log(" ".join([prog, shlex.join(args)]))
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(sys.stdout, log), _Tee(sys.stderr, log)
    _active = log
    try:
        yield log
    except Exception:  # an internal error: its traceback belongs in the log too
        log.add(traceback.format_exc())
        raise
    finally:
        _active = None
        sys.stdout, sys.stderr = saved
        log.close()


def attach(path: Path) -> None:
    """Start writing the captured text to `path` (no-op outside capture())."""
    if _active is not None:
        _active.attach(path)
