"""Output folders: one writing command at a time (a lock), and a set of files replaced as a whole.

OutputLock(folder) holds an exclusive flock on FOLDER/.cudnn_denoise.lock while a command writes
into FOLDER; a second command gets FolderBusy at once, naming the holder. The kernel releases the
lock when its holder exits in any way (return, exception, signal, kill -9), so a crash never leaves
a stale lock. The file is removed on release (and FOLDER too, if the lock made it and it stayed
empty); a waiter that locked a file removed meanwhile locks the new one instead.

Staging(folder, marker) gives a hidden folder inside FOLDER (same file system) for a new set of
files; commit() moves them into FOLDER together: the marker (dataset.json, manifest.json: the file
that says the set is whole) is removed first and renamed in last, with SIGINT and SIGTERM held off,
so FOLDER holds the old set, or the new one, never a marker over a mix. Leaving the block removes
the staging folder (with the new set, unless committed); one left by a killed process is swept by
the next run (userio.sweep_partials).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import time
from pathlib import Path

from . import signals
from .files import UserFileError, fsync_dir, partial_name, sweep_partials

LOCK_NAME = ".cudnn_denoise.lock"


class FolderBusy(UserFileError):
    """Another command is writing into the output folder."""


def make_folder(folder: str | os.PathLike, flag: str) -> Path:
    """FOLDER, made with its parents if needed; UserFileError naming `flag` when it cannot be."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserFileError(f"{flag} {folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserFileError(f"{flag} {folder}: cannot be made ({exc.strerror})") from None
    return folder


class OutputLock:
    """`with OutputLock(folder, "train", "--out"):` one writer in `folder` (see the module)."""

    def __init__(
        self, folder: str | os.PathLike, command: str, flag: str = "--out", *, wait: bool = False
    ):
        self.folder, self.command, self.flag, self.wait = Path(folder), command, flag, wait
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self._made = False

    def __enter__(self) -> OutputLock:
        self._made = not self.folder.exists()
        while True:
            # (again after a holder removed the folder that its lock had made)
            make_folder(self.folder, self.flag)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise UserFileError(
                    f"{self.flag} {self.folder}: cannot write there ({exc.strerror})"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise FolderBusy(
                    f"{self.flag} {self.folder}: {holder or 'another command'} is "
                    "writing there; wait for it to end or choose another "
                    f"{self.flag}"
                ) from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the holder removed the file as we waited: lock the new one
        os.ftruncate(fd, 0)
        holder = (f"{self.command} (pid {os.getpid()} on {socket.gethostname()}, since "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S')})")
        os.write(fd, holder.encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still held: a waiter then sees a removed file
        os.close(self._fd)
        self._fd = None
        if self._made:  # a folder made for a command that wrote nothing goes again
            with contextlib.suppress(OSError):
                self.folder.rmdir()


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        return ""


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


class Staging:
    """`with Staging(folder, marker) as stage:` write files into stage.path, then stage.commit()."""

    def __init__(self, folder: str | os.PathLike, marker: str):
        self.folder, self.marker = Path(folder), marker
        self.path = partial_name(self.folder / "staging")

    def __enter__(self) -> Staging:
        sweep_partials(self.folder)  # staging folders of killed runs
        self.path.mkdir()
        return self

    def __exit__(self, *exc) -> None:
        # after commit() an empty folder; else the new set, which is dropped
        shutil.rmtree(self.path, ignore_errors=True)

    def commit(self) -> None:
        """Move every file of the staging folder into the folder, the marker last."""
        names = sorted(p.name for p in self.path.iterdir())
        if self.marker not in names:
            raise RuntimeError(f"{self.path}: the staged set has no {self.marker}")
        for name in names:
            with open(self.path / name, "rb+") as file:
                os.fsync(file.fileno())
        fsync_dir(self.path)
        with signals.held():
            (self.folder / self.marker).unlink(missing_ok=True)
            fsync_dir(self.folder)
            for name in names:
                if name != self.marker:
                    os.replace(self.path / name, self.folder / name)
            os.replace(self.path / self.marker, self.folder / self.marker)
            fsync_dir(self.folder)
