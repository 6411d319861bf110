"""A user's files, read and written safely: regular files only, JSON errors that name the file,
atomic replacement, and temporary names that a later run can sweep.

Reading: open_regular opens without blocking (O_NONBLOCK) and refuses anything but a regular file
(a FIFO, a device, a folder) by name, so that a FIFO given as an input is refused at once instead
of waiting for a writer forever. read_json turns every failure (not UTF-8, not JSON, nested too
deeply for Python's parser, NaN) into one error naming the file.

Writing: write_atomic(path, data) writes path's partial name, fsyncs it, renames it over path and
fsyncs the folder: a reader sees the old content or the new, never half of either. A partial name
is `.NAME.HOST.PID.partial` beside NAME; sweep_partials(folder) removes those of processes of this
host that are gone (killed, or the machine lost power), never a live process's nor another host's
(a shared file system).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
from pathlib import Path

PARTIAL = ".partial"
_PARTIAL_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.partial$")
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class UserFileError(ValueError):
    """A file the user named cannot be used: the message names it and says why."""


def open_regular(path: str | os.PathLike, error: type[Exception] = UserFileError) -> int:
    """os.open(path, O_RDONLY) of a regular file, without blocking; `error` names what is wrong."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a file")
            raise error(f"{path}: is not a regular file ({kind})")
        os.set_blocking(fd, True)  # no effect on a regular file's reads; ordinary from here on
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(path: str | os.PathLike, error: type[Exception] = UserFileError) -> bytes:
    """The whole content of a regular file (open_regular's checks)."""
    fd = open_regular(path, error)
    try:
        with os.fdopen(fd, "rb", closefd=False) as file:
            return file.read()
    except OSError as exc:
        raise error(f"{path}: read failed: {exc.strerror}") from None
    finally:
        os.close(fd)


def read_json(path: str | os.PathLike, error: type[Exception] = UserFileError):
    """The parsed content of a JSON file; `error` names the file and what is wrong with it."""
    data = read_bytes(path, error)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"{path}: is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}): not a JSON file?"
        ) from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: is not valid JSON ({exc})") from None
    except RecursionError:
        raise error(f"{path}: is not usable JSON (nested too deeply)") from None
    except ValueError as exc:  # _refuse_constant
        raise error(f"{path}: is not valid JSON ({exc})") from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def partial_name(path: str | os.PathLike) -> Path:
    """The hidden name under which `path` is written by this process: .NAME.HOST.PID.partial."""
    path = Path(path)
    return path.with_name(f".{path.name}.{_host()}.{os.getpid()}{PARTIAL}")


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Replace `path` by a file holding `data`, atomically and durably (see the module)."""
    path = Path(path)
    tmp = partial_name(path)
    try:
        with open(tmp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk: the error names the file, not its partial name
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a folder's entries (created, renamed, removed files) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep_partials(folder: str | os.PathLike, *, mine: bool = False) -> list[Path]:
    """Remove the partial files and folders in `folder` left by processes of this host that are
    gone (and, with mine, this process's own); return what was removed."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _PARTIAL_NAME.match(entry.name)
        if match is None or match["host"] != _host():
            continue
        pid = int(match["pid"])
        if (pid == os.getpid() and mine) or (pid != os.getpid() and not _alive(pid)):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _host() -> str:
    """This machine's name as it appears in partial names (letters, digits and '-' only)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"
