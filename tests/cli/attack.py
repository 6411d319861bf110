"""Helpers of the tests that attack the command-line programs as a hostile world would: a process to
signal once it has printed a known line, a file size limit that stands for a full disk, a program
whose reader goes away."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cudnn_denoise import cli


def start(
    module: str,
    *args,
    cwd=None,
    env=None,
    limit_bytes: int | None = None,
    new_session: bool = False,
) -> subprocess.Popen:
    """`python -u -m cudnn_denoise.<module> args...`, stdout and stderr piped as text. limit_bytes:
    writes past that file size fail with EFBIG, as on a full disk (SIGXFSZ ignored)."""
    command = [sys.executable, "-u", "-m", f"cudnn_denoise.{module}", *(str(a) for a in args)]
    environment = dict(os.environ, **(env or {}))
    preexec = None if limit_bytes is None else _file_size_limit(limit_bytes)
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=environment,
        preexec_fn=preexec,
        start_new_session=new_session,
    )


def run(module: str, *args, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """start() and wait: the CompletedProcess (a hang fails the test after `timeout` seconds)."""
    proc = start(module, *args, **kwargs)
    code, out, err = finish(proc, timeout)
    return subprocess.CompletedProcess(proc.args, code, out, err)


def _file_size_limit(nbytes: int):
    def limit():
        # ignored is inherited across exec: a write past the limit fails with EFBIG, no death
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return limit


def wait_until(
    condition, proc: subprocess.Popen, timeout: float = 60, what: str = "the condition"
) -> None:
    """Poll `condition()` until it holds; fail if the process ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(
                f"the process ended (code {proc.returncode}) before {what}:\n{out}\n{err}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {what} after {timeout} s")
        time.sleep(0.02)


def read_line_with(proc: subprocess.Popen, text: str, timeout: float = 60) -> list[str]:
    """Read proc's stdout line by line until one holds `text`; the lines read."""
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(
                f"stdout ended before a line with {text!r}: {lines}\n{proc.stderr.read()}"
            )
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no line with {text!r} after {timeout} s: {lines}")


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    """(code, rest of stdout, stderr) once proc ends."""
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def error(module: str, message: str) -> str:
    """The error line `python -m cudnn_denoise.<module>` prints for message."""
    return f"{cli.prog(module)}: error: {message}"


def no_traceback(err: str) -> None:
    assert "Traceback" not in err and "Exception ignored" not in err, err


def partials(folder: Path) -> list[str]:
    """The hidden partial files and folders (userio.partial_name) in a folder."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name.endswith(".partial"))


def children(pid: int) -> list[int]:
    """The pids of the processes that a process's main thread started (Linux /proc; skips the
    test on a kernel built without CONFIG_PROC_CHILDREN)."""
    listing = Path(f"/proc/{pid}/task/{pid}/children")
    if not listing.exists():
        pytest.skip(f"{listing} is missing: this kernel does not list a process's children")
    return [int(p) for p in listing.read_text().split()]


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
