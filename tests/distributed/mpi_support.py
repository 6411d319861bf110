"""Helpers of the distributed tests: the mpirun next to this Python (the mpich wheel's), the skip
where MPI is not installed, and the time limit of every launch."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

MPIRUN = Path(sys.executable).parent / "mpirun"
TIMEOUT = 120  # seconds for any one launch: a hang fails the test instead of the CI job


def _missing() -> str | None:
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install 'cudnn_denoise[mpi]')"
    if not MPIRUN.is_file():
        return f"no mpirun next to {sys.executable} (the mpich wheel: pip install 'cudnn_denoise[mpi]')"
    return None


needs_mpi = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")
