"""Progress output for long work: a bar redrawn in place on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
import time


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_bytes(count: int) -> str:
    """A byte count for people: 512 B, 3.0 KiB, 1.5 MiB, 117.2 GiB."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


class Progress:
    """`update(done)` redraws a bar at most every `interval` seconds on a terminal; `line()` prints
    a permanent line (clearing the bar first); nothing is drawn when the stream is not a terminal."""

    def __init__(self, total: int, unit: str, stream=None, interval: float = 0.25):
        self.total, self.unit = total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval
        self.start = time.monotonic()
        self._drawn = 0.0
        self._done = 0

    def rate(self, done: int | None = None) -> float:
        elapsed = time.monotonic() - self.start
        return (self._done if done is None else done) / elapsed if elapsed > 0 else 0.0

    def update(self, done: int, suffix: str = "") -> None:
        self._done = done
        now = time.monotonic()
        if not self.tty or (now - self._drawn < self.interval and done < self.total):
            return
        self._drawn = now
        frac = done / self.total if self.total else 1.0
        bar = "#" * int(30 * frac)
        rate = self.rate(done)  # 0 until time is measured: shown as —, not as a rate of 0
        speed, eta = (f"{rate:.1f}", format_duration((self.total - done) / rate)) if rate > 0 else ("—", "—")
        self.stream.write(f"\r[{bar:<30}] {done}/{self.total} {self.unit} {speed}/s "
                          f"ETA {eta} {suffix}\x1b[K")
        self.stream.flush()

    def line(self, text: str, out=None) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        print(text, file=out if out is not None else sys.stdout, flush=True)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
