"""Helpers of the distributed tests: the mpirun to use (the mpich wheel's next to this Python, or
$CUDNN_DENOISE_MPIRUN), the skip where MPI is not installed, and launches with a time limit."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

MPIRUN = Path(os.environ.get("CUDNN_DENOISE_MPIRUN") or Path(sys.executable).parent / "mpirun")
TIMEOUT = 120  # seconds for any one launch: a hang fails the test instead of the CI job


def _missing() -> str | None:
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install 'cudnn_denoise[mpi]')"
    if not MPIRUN.is_file():
        return (
            f"no mpirun at {MPIRUN} (the mpich wheel: pip install 'cudnn_denoise[mpi]', or set "
            "CUDNN_DENOISE_MPIRUN)"
        )
    return None


needs_mpi = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


def run_launch(
    command: list[str], cwd, timeout: float = TIMEOUT, env=None
) -> subprocess.CompletedProcess:
    """Run `command` in a session of its own; on timeout kill the whole session (the launcher, its
    proxies and every rank: none is left running) and raise subprocess.TimeoutExpired."""
    proc = subprocess.Popen(
        [str(c) for c in command],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
