"""The host side of multi-GPU training, on the CPU: each rank's GPU, the unique id's broadcast,
NVLink multicast kept off, and host collectives that let the watchdog's thread run while they wait.
The GPU side is in test_nccl_gpu.py (one GPU) and test_multi_gpu.py (several)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from cudnn_denoise.distributed import nccl
from cudnn_denoise.bindings.device import gpu_status
from mpi_support import needs_mpi

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize(
    "local_rank, local_size, visible, device",
    [
        (0, 2, 2, 0),
        (1, 2, 2, 1),
        (3, 4, 8, 3),  # plain mpirun: every rank sees every GPU of its host
        (1, 2, 1, 0),
        (5, 8, 1, 0),  # one GPU per rank (CUDA_VISIBLE_DEVICES per rank, srun --gpus-per-task=1)
    ],
)
def test_each_rank_takes_the_gpu_of_its_local_rank_or_its_only_one(
    local_rank, local_size, visible, device
):
    assert nccl.choose_device(local_rank, local_size, visible) == device


def test_more_ranks_than_gpus_on_a_host_is_refused():
    with pytest.raises(
        nccl.GpuRanksError, match="4 ranks on this host but 2 GPUs visible: start at most 2"
    ):
        nccl.choose_device(3, 4, 2)


def test_two_ranks_on_one_gpu_are_refused_naming_both():
    placements = [
        ("a", "0000:18:00.0"),
        ("a", "0000:2A:00.0"),
        ("b", "0000:18:00.0"),
        ("a", "0000:2A:00.0"),
    ]
    with pytest.raises(nccl.GpuRanksError, match="ranks 1 and 3 both use GPU 0000:2A:00.0 on a"):
        nccl.check_distinct_gpus(placements)
    nccl.check_distinct_gpus(placements[:3])  # the same bus id on two hosts is two GPUs


@pytest.mark.parametrize("before, replaced", [(None, None), ("0", None), ("1", "1")])
def test_nvlink_multicast_is_switched_off_whatever_was_set(before, replaced):
    environ = {} if before is None else {nccl.NVLS_ENV: before}
    assert nccl.disable_nvls(environ) == replaced
    assert environ == {"NCCL_NVLS_ENABLE": "0"}


@needs_mpi
def test_every_rank_gets_rank_0s_unique_id_and_multicast_off_before_nccl_starts(launch):
    result = launch(2, HERE / "nccl_rank.py", env={**os.environ, "NCCL_NVLS_ENABLE": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    ids = dict(re.findall(r"rank (\d) of 2: id ([0-9a-f]{64}) 128 bytes", result.stdout))
    assert sorted(ids) == ["0", "1"] and ids["0"] == ids["1"], result.stdout
    assert (
        ids["0"] != "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
    )  # sha256 of zeros
    assert result.stdout.count("NCCL_NVLS_ENABLE=0") == 2
    assert result.stderr.count("NCCL_NVLS_ENABLE=1 replaced by 0") == 2
    if not gpu_status()[0]:  # the id passes by value into ncclCommInitRank, which needs a GPU
        assert result.stdout.count("ncclCommInitRank: ncclUnhandledCudaError") == 2, result.stdout


@needs_mpi
@pytest.mark.parametrize("collective", ["agree_max", "mean", "check_same", "barrier"])
def test_waiting_in_a_host_collective_lets_other_threads_run(launch, collective):
    # Held GIL: rank 1 is never released and the launch hits the limit (raising TimeoutExpired).
    result = launch(2, HERE / "waiting_rank.py", collective, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(f"{collective} returned") == 2
