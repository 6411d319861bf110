"""What the programs print: output that outlives its reader, and the error line.

console.survive_lost_output()    # first thing in a program's main()
console.error(prog, console.describe(exc))    # `PROG: error: FILE: what happened` on stderr
print(f"done: {console.plural(steps, 'step')} ({console.rate(steps, seconds, 'batches')})")
"""

from __future__ import annotations

import errno
import os
import sys

# A write to the terminal fails with these when its reader is gone (EPIPE: `| head -1` exited) or a
# redirect's disk is full (ENOSPC, EFBIG, EDQUOT); EIO when the terminal itself went away.
_LOST = (errno.EPIPE, errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO)


def error(prog: str, message: str) -> None:
    """Print the one error line of every program, argparse's own form: `PROG: error: MESSAGE`,
    PROG the name the user typed (cli.prog)."""
    print(f"{prog}: error: {message}", file=sys.stderr)


def plural(count: int, noun: str, plural: str | None = None) -> str:
    """`1 pair`, `2 pairs`: the count and its noun, which takes an s unless `plural` is given
    (`patch`, `patches`): the programs' output never says `1 pairs` or `pair(s)`."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def rate(count: float, seconds: float, unit: str, digits: int = 1) -> str:
    """`12.3 batches/s`, or `— batches/s` when no time was measured (a rate of 0 would be wrong)."""
    return f"{count / seconds:.{digits}f} {unit}/s" if seconds > 0 else f"— {unit}/s"


def describe(exc: BaseException) -> str:
    """An exception as the error line's text: an OSError as `FILE: what happened`."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename is not None else exc.strerror
    return str(exc)


class _Survivor:
    """A text stream whose writes never fail: on a lost reader (see _LOST) its file descriptor is
    pointed at /dev/null and the program goes on, its files written in full."""

    def __init__(self, stream):
        self._stream = stream
        self.lost = False

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            self._lose(exc)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            self._lose(exc)

    def _lose(self, exc: OSError) -> None:
        if exc.errno not in _LOST:
            raise exc
        self.lost = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
            self._stream.flush()  # what the buffer still holds goes to /dev/null
        except (OSError, ValueError, AttributeError):
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def survive_lost_output() -> None:
    """Make sys.stdout and sys.stderr _Survivors (once): losing the terminal (a closed pipe, a full
    disk under a redirect) must not lose the work."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _Survivor):
            setattr(sys, name, _Survivor(stream))
