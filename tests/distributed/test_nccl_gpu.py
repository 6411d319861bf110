"""The NCCL gradient average on one GPU: a one-rank communicator (the sum over one rank, the scale
by 1/1) through the real training step, which must be the plain step bit for bit, with and without a
CUDA graph, for every option of the step; the calls queued on the training stream between the
backward pass and SGD (captured in the graph); the watchdog ending a rank whose stream is stuck;
and the train CLI under `mpirun -n 1` (device choice, unique id over MPI, communicator, watchdog)
equal to a plain run. Several GPUs: test_multi_gpu.py."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

import numpy as np
import pytest

from cudnn_denoise import checkpoint
from cudnn_denoise.distributed import nccl, watchdog
from cudnn_denoise.data.synthetic import write_dataset
from cudnn_denoise.distributed.world import World
from cudnn_denoise.params import NUM_PARAMS, init_params
from mpi_support import needs_mpi

pytestmark = pytest.mark.gpu
HERE = Path(__file__).resolve().parent
VARIANTS = {  # DenoiseCNN options; math fp32 but for bf16, which cannot be strict
    "legacy": {},
    "fused": {"fused": True},
    "graph_api": {"graph_api": True},
    "bf16": {"graph_api": True, "precision": "bf16", "math": "tf32"},
}
SHAPE = (2, 1, 64, 64)


@pytest.fixture(scope="module")
def data64(tmp_path_factory):
    """40 pairs of 64 x 64: 10 steps of 4."""
    return write_dataset(tmp_path_factory.mktemp("data64"), 40, 64, seed=1)


@pytest.fixture(scope="module")
def communicator():
    comm = nccl.Communicator(0, 1, nccl.unique_id(World()))
    yield comm
    comm.close()


def make_model(graph: bool, **options):
    from cudnn_denoise.network.model import DenoiseCNN

    options = {
        "math": "fp32",
        **options,
    }  # deterministic heuristics: both models choose the same algorithms
    return DenoiseCNN(
        init_params(7),
        batch=SHAPE[0],
        height=SHAPE[2],
        width=SHAPE[3],
        deterministic=True,
        search="heuristic",
        graph=graph,
        **options,
    )


def batches(count: int):
    rng = np.random.default_rng(5)
    return [
        (rng.random(SHAPE, dtype=np.float32), rng.random(SHAPE, dtype=np.float32))
        for _ in range(count)
    ]


def train(model, data) -> tuple[np.ndarray, np.ndarray]:
    for slot, (x, target) in enumerate(data):
        model.train_step_async(model._to_device(x), model._to_device(target), 0.05, slot=slot)
    return model.read_losses(len(data)), model.get_params()


@pytest.mark.parametrize("graph", [False, True], ids=["direct", "graph"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_one_rank_average_is_the_plain_step_bit_for_bit(communicator, variant, graph):
    data = batches(4)
    results = {}
    for averaged in (False, True):
        model = make_model(graph, **VARIANTS[variant])
        try:
            if averaged:
                model.reduce_gradients = nccl.GradientAverage(communicator, model.ctx)
            results[averaged] = train(model, data)
        finally:
            model.close()
    (plain_loss, plain_params), (loss, params) = results[False], results[True]
    assert_same(variant, loss, plain_loss)
    assert_same(variant, params, plain_params)
    assert not np.array_equal(params, init_params(7))


def assert_same(variant: str, got, expected) -> None:
    """Bit for bit, but BF16: each model times its dgrad forms anew (the bias gradient by cuBLAS or
    in the graph), and two BF16 models of one process differed in the last bits (H200: 1.3e-7); a
    wrong 1/R or buffer is off by far more than the tolerance."""
    if variant == "bf16":
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    else:
        np.testing.assert_array_equal(got, expected)


def pointer(cdata) -> int:
    from cudnn_denoise.bindings import ffi

    return int(ffi.cast("uintptr_t", cdata))


@pytest.mark.parametrize("graph", [False, True], ids=["direct", "graph"])
def test_the_average_is_queued_on_the_training_stream_between_backward_and_sgd(communicator, graph):
    from cudnn_denoise.bindings import load_nccl
    from cudnn_denoise.bindings.library import set_hook

    model = make_model(graph)
    model.reduce_gradients = nccl.GradientAverage(communicator, model.ctx)
    steps: list[list] = []  # per step: (name, args, capturing) of every checked call

    def hook(name, args):
        steps[-1].append((name, args, model.stream.is_capturing()))
        return contextlib.nullcontext()

    previous = set_hook(hook)
    try:
        for slot, (x, target) in enumerate(batches(2)):
            steps.append([])
            model.train_step_async(model._to_device(x), model._to_device(target), 0.05, slot=slot)
        model.read_losses(2)
    finally:
        set_hook(previous)
        grads = model.grads.data.ptr
        stream = model.stream.ptr
        model.close()
    nccl_lib = load_nccl()
    names = [name for name, _, _ in steps[0]]
    assert names.count("ncclAllReduce") == 1, names
    assert names[names.index("ncclAllReduce") :] == [
        "ncclAllReduce",
        "cublasSscal_v2",
        "cublasSaxpy_v2",
    ]
    assert any(
        name.startswith("cudnn") for name in names[: names.index("ncclAllReduce")]
    )  # after backward
    (_, (send, recv, count, dtype, op, comm, on), _), (_, scal, _), _ = steps[0][-3:]
    assert pointer(send) == pointer(recv) == grads and count == NUM_PARAMS
    assert (dtype, op) == (nccl_lib.ncclFloat32, nccl_lib.ncclSum)
    assert pointer(comm) == pointer(communicator.ptr) and pointer(on) == stream
    assert scal[1] == NUM_PARAMS and scal[2][0] == 1.0 and pointer(scal[3]) == grads  # n, 1/R, x
    assert all(capturing == graph for _, _, capturing in steps[0])  # the whole step is in the graph
    second = [name for name, _, _ in steps[1]]
    assert second == ([] if graph else names)  # a graph replays; its calls are not made again


def test_the_watchdog_ends_a_rank_whose_all_reduce_never_completes(launch):
    start = time.monotonic()
    result = launch(0, HERE / "stalled_gpu.py", 3, timeout=90)
    seconds = time.monotonic() - start
    assert result.returncode == watchdog.EXIT_CODE, result.stdout + result.stderr
    assert "synchronizing" in result.stdout and "synchronized" not in result.stdout
    assert (
        "rank 0 of 1: watchdog: no progress on the GPU for 3 s (1 step(s) queued)" in result.stderr
    )
    assert seconds < 60, f"{seconds:.0f} s"


@needs_mpi
@pytest.mark.parametrize(
    "options",
    [("--math", "fp32", "--fused", "--graph"), ("--precision", "bf16", "--graph")],
    ids=["fp32-fused-graph", "bf16-graph"],
)
def test_train_under_mpirun_on_one_gpu_is_a_plain_run_bit_for_bit(
    launch, data64, tmp_path, options
):
    args = (
        "-m",
        "cudnn_denoise.train",
        "--backend",
        "cudnn",
        "--data",
        data64.noisy.parent,
        "--deterministic",
        "--lr",
        "0.01",
        "--log-every",
        "5",
        *options,
    )
    nccl_run = launch(1, *args, "--out", "nccl")
    assert nccl_run.returncode == 0, nccl_run.stdout + nccl_run.stderr
    plain = launch(0, *args, "--out", "plain")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert re.search(
        r"^NCCL 2\.\d+\.\d+ from .*\(NCCL_NVLS_ENABLE=0\)", nccl_run.stdout, re.MULTILINE
    ), nccl_run.stdout
    assert "NCCL" not in plain.stdout
    runs = {name: tmp_path / name for name in ("nccl", "plain")}
    params = {name: checkpoint.load(path / "checkpoint").params for name, path in runs.items()}
    assert checkpoint.load(runs["nccl"] / "checkpoint").step == 10
    assert_same("bf16" if "bf16" in options else "fp32", params["nccl"], params["plain"])
    assert (runs["nccl"] / "losses.tsv").read_text() == (runs["plain"] / "losses.tsv").read_text()
