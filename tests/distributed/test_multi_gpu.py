"""Several GPUs, one rank each, through NCCL: R ranks train as one GPU with the R-fold batch (strict
FP32, deterministic algorithms: within 1e-6 over 20 steps, every step's loss and the parameters),
plainly and with the graph-API path in a CUDA graph; and one rank raising, killed, or stopped (alive
but hung: only the watchdog can tell) ends every rank within seconds, never a hang.
Skipped, with the reason, on fewer than two GPUs (scripts/gpu_check.sh multi runs it)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from cudnn_denoise import checkpoint
from cudnn_denoise.distributed import watchdog
from cudnn_denoise.data.synthetic import write_dataset
from cudnn_denoise.params import init_params
from mpi_support import needs_mpi


def gpu_count() -> int:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount()
    except Exception:  # no CuPy or no driver: the gpu marker's skip says why
        return 0


GPUS = gpu_count()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(GPUS < 2, reason=f"needs 2 or more GPUs, {GPUS} visible"),
    needs_mpi,
]
HERE = Path(__file__).resolve().parent
STEPS, BATCH, SIZE = 20, 4, 256
RANKS = (
    sorted({2, GPUS}) if GPUS >= 2 else [2]
)  # two, and every GPU of the machine where there are more
TRAIN = (
    "-m",
    "cudnn_denoise.train",
    "--backend",
    "cudnn",
    "--math",
    "fp32",
    "--deterministic",
    "--no-shuffle",
    "--lr",
    "0.01",
    "--log-every",
    "10",
    "--max-steps",
    str(STEPS),
)
RTOL = 1e-6  # float32: R ranks sum each gradient's terms in another order than one GPU does
HANG_TIMEOUT_S = 10  # the watchdog's timeout in the hang test


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Enough 256 x 256 pairs for STEPS global batches of the most ranks."""
    return write_dataset(
        tmp_path_factory.mktemp("multi"),
        STEPS * BATCH * max(RANKS),
        SIZE,
        seed=3,
        workers=min(16, os.cpu_count() or 1),
    )


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


@pytest.mark.parametrize(
    "options", [(), ("--graph-api", "--graph")], ids=["legacy", "graph-api-graph"]
)
@pytest.mark.parametrize("ranks", RANKS)
def test_ranks_train_as_one_gpu_with_the_whole_batch(launch, data, tmp_path, ranks, options):
    common = (*TRAIN, "--data", data.noisy.parent, *options)
    many = launch(ranks, *common, "--batch-size", BATCH, "--out", "many")
    assert many.returncode == 0, many.stdout + many.stderr
    one = launch(0, *common, "--batch-size", BATCH * ranks, "--out", "one")
    assert one.returncode == 0, one.stdout + one.stderr
    assert (
        f"distributed: {ranks} ranks of batch {BATCH}: global batch {BATCH * ranks}" in many.stdout
    )
    assert len(re.findall(r"rank \d+: \S+ GPU \S+", many.stdout)) == ranks  # one GPU each, named
    losses = {name: np.loadtxt(tmp_path / name / "losses.tsv") for name in ("many", "one")}
    params = {
        name: checkpoint.load(tmp_path / name / "checkpoint").params for name in ("many", "one")
    }
    np.testing.assert_array_equal(losses["many"][:, 0], np.arange(1, STEPS + 1))
    loss_error = np.max(np.abs(losses["many"][:, 1] / losses["one"][:, 1] - 1))
    param_error = relative_error(params["many"], params["one"])
    print(
        f"{ranks} ranks x {BATCH} vs 1 x {BATCH * ranks} {' '.join(options) or 'legacy'}: "
        "largest loss "
        f"difference {loss_error:.1e} (relative), parameters {param_error:.1e} (relative, norm)"
    )
    assert loss_error < RTOL and param_error < RTOL
    assert relative_error(params["many"], init_params(0)) > 1e3 * RTOL  # the runs trained


@pytest.mark.parametrize("mode", ["raise", "kill", "stop"])
def test_a_failing_gpu_rank_ends_every_rank_within_seconds(launch, data, tmp_path, mode):
    env = {**os.environ, watchdog.TIMEOUT_ENV: str(HANG_TIMEOUT_S)}
    start = time.monotonic()
    result = launch(
        2,
        HERE / "failing_rank.py",
        mode,
        1,
        4,
        *TRAIN,
        "--data",
        data.noisy.parent,
        "--graph-api",
        "--graph",
        "--batch-size",
        BATCH,
        "--out",
        "run",
        env=env,
        timeout=120,
    )
    seconds = time.monotonic() - start
    print(
        f"{mode}: every rank ended after {seconds:.1f} s (start-up included), "
        f"exit code {result.returncode}"
    )
    assert result.returncode != 0, result.stdout + result.stderr
    assert seconds < 90, f"{seconds:.0f} s: a rank waited"
    assert "done:" not in result.stdout and not (tmp_path / "run" / "checkpoint").exists()
    if mode == "raise":
        assert "rank 1 of 2: unhandled error; aborting every rank" in result.stderr
    if mode == "stop":
        assert result.returncode == watchdog.EXIT_CODE, result.stderr
        assert re.search(
            r"rank 0 of 2: watchdog: no progress on the GPU for 1\d s", result.stderr
        ), result.stderr
