"""train --overwrite: the earlier run in OUT is kept aside until the new one has a checkpoint.

EarlierRun(out, patterns) moves the earlier run's files (those matching the glob patterns:
checkpoint/, what a crashed save left beside it, the logs) into the hidden folder
OUT/.earlier-run. discard() removes it once the new run's first checkpoint is complete; leaving the block without that (an error, a NaN at the first step, a signal) removes
what the new run wrote and moves the earlier run back. A run killed with the earlier run aside
leaves the folder; recover() at the next start on OUT puts it back, or drops it if OUT holds a
checkpoint (the new run's: the kill came after its first save).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .. import checkpoint
from ..userio import signals
from ..userio.files import fsync_dir

ASIDE_NAME = ".earlier-run"
RESTORING = ".restoring"  # in the aside folder: the new run's files are gone, the earlier come back


class _Nothing:
    """No earlier run to keep (no --overwrite, or a rank that writes nothing)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def discard(self) -> None:
        pass


NONE = _Nothing()


class EarlierRun:
    """`with EarlierRun(out, patterns) as earlier:` train, calling earlier.discard() at each save."""

    def __init__(self, out: Path, patterns: tuple[str, ...]):
        self.out, self.patterns = out, patterns
        self.aside = out / ASIDE_NAME
        self._kept = False

    def __enter__(self) -> EarlierRun:
        recover(self.out, self.patterns)
        present = _matching(self.out, self.patterns)
        if present:
            with signals.held():
                self.aside.mkdir()
                for path in present:
                    os.replace(path, self.aside / path.name)
                fsync_dir(self.out)
            self._kept = True
        return self

    def discard(self) -> None:
        """The new run has a complete checkpoint: the earlier one goes."""
        if self._kept:
            shutil.rmtree(self.aside, ignore_errors=True)
            self._kept = False

    def __exit__(self, *exc) -> None:
        if self._kept:
            _restore(self.out, self.patterns)
            self._kept = False
            print(f"--out {self.out}: the earlier run is kept (the new one wrote no checkpoint)")


def recover(out: Path, patterns: tuple[str, ...]) -> None:
    """Deal with an earlier run left aside by a killed --overwrite (see the module)."""
    aside = out / ASIDE_NAME
    if not aside.is_dir():
        return
    if checkpoint.exists(out / checkpoint.RUN_SUBFOLDER):
        shutil.rmtree(aside, ignore_errors=True)
    else:
        _restore(out, patterns)


def _restore(out: Path, patterns: tuple[str, ...]) -> None:
    """Remove what the new run wrote, then move the earlier run back, its checkpoint last. Marked
    as begun inside the folder, so that a restore killed half-way is finished by the next one
    without removing what came back already."""
    aside = out / ASIDE_NAME
    begun = aside / RESTORING
    with signals.held(raise_pending=False):  # also on the way out of a Ctrl-C
        if not begun.exists():
            for path in _matching(out, patterns):
                _remove(path)  # what the new run wrote
            begun.touch()
            fsync_dir(aside)
        back = [aside / path.name for path in _matching(aside, patterns)]
        for path in back[1:] + back[:1]:  # the checkpoint (the first) last
            os.replace(path, out / path.name)
        fsync_dir(out)
        shutil.rmtree(aside, ignore_errors=True)


def _matching(out: Path, patterns: tuple[str, ...]) -> list[Path]:
    """In the patterns' order: the checkpoint's first, so that a kill between two moves leaves OUT
    without a checkpoint, which recover() reads as "put the earlier run back"."""
    return [path for pattern in patterns for path in sorted(out.glob(pattern))]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
