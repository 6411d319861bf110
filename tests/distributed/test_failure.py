"""One rank failing in the middle of a run ends every rank with a non-zero code, in bounded time."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from mpi_support import TIMEOUT, needs_mpi

FAILING = Path(__file__).with_name("failing_rank.py")
ARGS = ("--backend", "reference", "--batch-size", "2", "--max-steps", "10", "--out", "run")


@needs_mpi
@pytest.mark.parametrize("mode", ["raise", "kill"])
def test_a_failing_rank_ends_every_rank(launch, data32, tmp_path, mode):
    start = time.monotonic()
    result = launch(2, FAILING, mode, 1, 4, "--data", data32.noisy.parent, *ARGS)
    seconds = time.monotonic() - start
    assert result.returncode != 0, result.stdout + result.stderr
    assert seconds < TIMEOUT / 2, f"{seconds:.0f} s: the surviving rank waited"
    if mode == "raise":
        assert "rank 1 of 2: unhandled error; aborting every rank" in result.stderr
        assert "RuntimeError: injected failure in step 4" in result.stderr
    assert "done:" not in result.stdout  # rank 0 did not finish on its own
    assert not (tmp_path / "run" / "checkpoint").exists()  # the run never reached its end


@needs_mpi
def test_parameters_that_differ_between_ranks_stop_every_rank_at_the_next_log_line(launch, data32, tmp_path):
    result = launch(2, FAILING, "diverge", 1, 3, "--data", data32.noisy.parent, *ARGS, "--log-every", "5")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "error: step 5: the parameters differ between ranks:" in result.stderr
    assert "  rank 0: params" in result.stderr and "  rank 1: params" in result.stderr
    assert "batch      5" not in result.stdout  # the log line is not written


@needs_mpi
def test_the_same_error_on_every_rank_gives_its_exit_code(launch, data32, tmp_path):
    result = launch(2, "-m", "cudnn_denoise.train", "--data", tmp_path / "nowhere", *ARGS)
    assert result.returncode == 2, result.stderr
    assert f"error: {tmp_path / 'nowhere'}: --data must be a directory" in result.stderr
    assert re.search(r"rank [01] of 2: exit code 2; aborting every rank", result.stderr)  # the first to abort
