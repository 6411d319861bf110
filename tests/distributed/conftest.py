"""Fixtures of the distributed tests: a dataset with an uneven last batch, and a launcher with a
timeout (mpi_support.py holds the plain helpers; data32 comes from tests/conftest.py)."""

from __future__ import annotations

import sys

import pytest

from cudnn_denoise.data.synthetic import write_dataset
from mpi_support import MPIRUN, TIMEOUT, run_launch


@pytest.fixture(scope="session")
def data42(tmp_path_factory):
    """42 pairs: the last global batch of 4 has 2 samples."""
    return write_dataset(tmp_path_factory.mktemp("data42"), 42, 32, seed=2)


@pytest.fixture
def launch(tmp_path):
    """launch(ranks, *args, timeout=TIMEOUT, env=None) -> CompletedProcess: mpirun -n ranks python
    *args in tmp_path; ranks 0 runs python without mpirun. On timeout every process it started is
    killed and subprocess.TimeoutExpired raised."""

    def run(ranks: int, *args, timeout: float = TIMEOUT, env=None):
        command = [sys.executable, *map(str, args)]
        if ranks:
            command = [str(MPIRUN), "-n", str(ranks), *command]
        return run_launch(command, tmp_path, timeout, env)

    return run
