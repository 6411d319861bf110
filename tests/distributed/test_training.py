"""Data-parallel training on the CPU: mpirun -n 2 with the reference backend against one process
with the doubled batch, the gradient identity it rests on, each rank's share of a batch, resume on
another number of ranks, and what several ranks refuse. The GPU side: test_nccl_host.py (its
host part), test_nccl_gpu.py and test_multi_gpu.py."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from mpi_support import MPIRUN, needs_mpi, run_launch
from cudnn_denoise import checkpoint
from cudnn_denoise.data.reader import PairReader
from cudnn_denoise.data.synthetic import write_dataset
from cudnn_denoise.distributed.world import World, launched_by_mpi
from cudnn_denoise.params import init_params
from cudnn_denoise.network.reference import OUTPUT, backward, forward, mse_loss

TRAIN = ("-m", "cudnn_denoise.train", "--backend", "reference", "--lr", "0.01", "--log-every", "5")
RTOL = 1e-6  # float32: the two runs sum the same gradients in another order


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def params_of(folder) -> np.ndarray:
    return checkpoint.load(folder / "checkpoint").params


def test_mean_of_the_shares_gradients_is_the_gradient_of_the_global_batch():
    # MSE over the global batch = mean of the per-share means (equal shares), so its gradient is the
    # mean of the shares' gradients: float64, so that the identity is checked, not the rounding.
    rng = np.random.default_rng(0)
    flat = init_params(0).astype(np.float64)
    x, target = rng.random((4, 1, 16, 16)), rng.random((4, 1, 16, 16))

    def gradient(rows):
        acts = forward(flat, x[rows])
        loss, dy = mse_loss(acts[OUTPUT], target[rows])
        return loss, backward(flat, x[rows], acts, dy)[0]

    loss, whole = gradient(slice(0, 4))
    (loss0, g0), (loss1, g1) = gradient(slice(0, 2)), gradient(slice(2, 4))
    np.testing.assert_allclose((g0 + g1) / 2, whole, rtol=1e-12, atol=1e-15)
    assert (loss0 + loss1) / 2 == pytest.approx(loss, rel=1e-12)
    assert relative_error(g0, whole) > 1e-3  # one share alone is not the gradient


@pytest.mark.parametrize("shuffle", [True, False])
def test_the_ranks_shares_make_up_each_global_batch(data32, shuffle):
    def batches(part=None):
        with PairReader(data32, 4, shuffle=shuffle, seed=3, part=part, drop_cache=False) as reader:
            return [(b.indices.copy(), b.x.copy(), b.position) for b in reader.epoch(1)]

    whole = batches()
    shares = [batches(World(rank=r, size=2).part(2)) for r in (0, 1)]
    assert len(whole) == len(shares[0]) == len(shares[1]) == 10
    for (indices, x, position), (i0, x0, p0), (i1, x1, p1) in zip(whole, *shares):
        assert position == p0 == p1
        np.testing.assert_array_equal(np.concatenate([i0, i1]), indices)
        np.testing.assert_array_equal(np.concatenate([x0, x1]), x)


def test_part_outside_the_batch_is_refused(data32):
    with pytest.raises(ValueError, match=r"part \(2, 5\) is not a range of rows"):
        PairReader(data32, 4, part=(2, 5))


def test_without_a_launcher_there_is_one_process():
    assert not launched_by_mpi({})
    assert launched_by_mpi({"PMI_SIZE": "2"}) and launched_by_mpi({"OMPI_COMM_WORLD_SIZE": "2"})


@needs_mpi
def test_two_ranks_equal_one_process_with_the_doubled_batch(launch, data32, tmp_path):
    steps = ("--data", data32.noisy.parent, "--max-steps", "10")
    two = launch(2, *TRAIN, *steps, "--batch-size", "2", "--out", "two")
    assert two.returncode == 0, two.stderr
    one = launch(0, *TRAIN, *steps, "--batch-size", "4", "--out", "one")
    assert one.returncode == 0, one.stderr
    assert relative_error(params_of(tmp_path / "two"), params_of(tmp_path / "one")) < RTOL
    assert not np.array_equal(params_of(tmp_path / "two"), init_params(0))
    rows = {name: [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
            for name in ("one", "two")}
    assert [r["step"] for r in rows["two"]] == [5, 10]  # written once: by rank 0 alone
    for got, want in zip(rows["two"], rows["one"], strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)  # the global batch's loss
    assert two.stdout.count("done: 10 steps") == 1
    assert "distributed: 2 ranks of batch 2: global batch 4" in two.stdout
    assert checkpoint.load(tmp_path / "two" / "checkpoint").extra["config"]["ranks"] == 2


@needs_mpi
def test_a_two_rank_run_resumes_on_one_rank_with_the_same_global_batch(launch, data32, tmp_path):
    data = ("--data", data32.noisy.parent, "--epochs", "2")
    first = launch(2, *TRAIN, *data, "--batch-size", "2", "--max-steps", "6", "--out", "resumed")
    assert first.returncode == 0, first.stderr
    refused = launch(0, *TRAIN, *data, "--batch-size", "2", "--max-steps", "14", "--out", "resumed", "--resume")
    assert refused.returncode == 2 and "their global batches must be equal" in refused.stderr
    second = launch(0, *TRAIN, *data, "--batch-size", "4", "--max-steps", "14", "--out", "resumed", "--resume")
    assert second.returncode == 0, second.stderr
    straight = launch(0, *TRAIN, *data, "--batch-size", "4", "--max-steps", "14", "--out", "straight")
    assert straight.returncode == 0, straight.stderr
    assert relative_error(params_of(tmp_path / "resumed"), params_of(tmp_path / "straight")) < RTOL


@needs_mpi
def test_unequal_shares_of_the_last_batch_are_refused_on_every_rank(launch, data42):
    result = launch(2, *TRAIN, "--data", data42.noisy.parent, "--batch-size", "2", "--max-steps", "3")
    assert result.returncode != 0
    assert "cannot share equally (batch 2 each); pass --drop-last" in result.stderr



@needs_mpi
@pytest.mark.parametrize("other", ["size", "content"])
def test_ranks_given_different_data_are_refused_at_start_naming_both(data32, tmp_path, other):
    # fewer samples (a rank would run out of batches, the other wait forever), or other ones
    second = write_dataset(tmp_path / "other", 20 if other == "size" else 40, 32, seed=7)
    command = [str(MPIRUN)]
    for rank, data in enumerate((data32, second)):
        command += [*([":"] if rank else []), "-n", "1", sys.executable, *TRAIN,
                    "--data", str(data.noisy.parent), "--max-steps", "3", "--batch-size", "2",
                    "--out", str(tmp_path / "run")]
    result = run_launch(command, tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    error = "python -m cudnn_denoise.train: error: "
    errors = [line for line in result.stderr.splitlines() if line.startswith(error)]
    assert errors and errors[0] == error + (
        f"--data: the ranks read different data: rank 0 {data32.noisy} "
        f"({data32.count} samples of 32x32), rank 1 {second.noisy} ({second.count} samples of "
        "32x32); give every rank the same dataset"), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoint").exists()
