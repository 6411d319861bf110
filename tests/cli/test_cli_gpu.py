"""The train and dump CLIs on the cuDNN backend: short runs (plain, and CUDA graph + fused) against
the reference backend, resume bit for bit with --deterministic, and a dump against the reference's.

Tolerances follow the math mode, once: strict fp32 (CUDNN_FMA_MATH) against the NumPy float32
reference, 1e-5 per tensor of one step and 1e-4 for parameters after a dozen steps.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from torch_oracle import rel_error

from cudnn_denoise import checkpoint, dump, train
from cudnn_denoise.port import dump_format
from cudnn_denoise.port.dump_format import read_dump

pytestmark = pytest.mark.gpu


def run_train(cli, data, out, *args):
    result = cli(train.main, "--data", data.noisy.parent, "--out", out, *args)
    assert result.code == 0, result.err
    return checkpoint.load(out / "checkpoint")


@pytest.mark.parametrize("options", [(), ("--graph", "--fused"), ("--graph", "--graph-api")],
                         ids=["plain", "graph-fused", "graph-graph-api"])
def test_short_cudnn_run_follows_the_reference(cli, make_data, tmp_path, options):
    """42 samples in batches of 4: 10 full batches and a partial one of 2, so both models run."""
    data = make_data(42, size=64)
    common = ("--no-shuffle", "--lr", 0.01, "--log-every", 5)
    gpu = run_train(cli, data, tmp_path / "gpu", *common, "--backend", "cudnn", "--math", "fp32", *options)
    cpu = run_train(cli, data, tmp_path / "cpu", *common, "--backend", "reference")
    assert gpu.step == cpu.step == 11
    assert rel_error(gpu.params, cpu.params) < 1e-4
    losses = [json.loads(line)["loss"] for line in (tmp_path / "gpu" / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]


def test_short_bf16_run_stays_near_the_reference(cli, make_data, tmp_path):
    """--precision bf16 (BF16 activations, FP32 parameters and update): 11 steps land within BF16's
    reach of the FP32 reference backend, not on it."""
    data = make_data(42, size=64)
    common = ("--no-shuffle", "--lr", 0.01, "--log-every", 5)
    gpu = run_train(cli, data, tmp_path / "gpu", *common, "--backend", "cudnn", "--precision", "bf16", "--graph")
    cpu = run_train(cli, data, tmp_path / "cpu", *common, "--backend", "reference")
    assert gpu.step == cpu.step == 11
    assert gpu.extra["config"]["precision"] == "bf16" and gpu.extra["config"]["graph_api"]
    assert 0 < rel_error(gpu.params, cpu.params) < 1e-2


def test_cudnn_resume_is_bit_identical_with_deterministic(cli, make_data, tmp_path):
    data = make_data(32, size=64)  # 8 batches a epoch: the runs cross two epoch ends
    common = ("--backend", "cudnn", "--deterministic", "--epochs", 3, "--checkpoint-every", 5, "--lr", 0.01)
    whole = run_train(cli, data, tmp_path / "whole", *common, "--max-steps", 20)
    run_train(cli, data, tmp_path / "parts", *common, "--max-steps", 10)
    parts = run_train(cli, data, tmp_path / "parts", *common, "--max-steps", 20, "--resume")
    assert whole.step == parts.step == 20
    np.testing.assert_array_equal(whole.params, parts.params)


@pytest.mark.parametrize("options", [(), ("--graph-api", "--graph")], ids=["legacy", "graph-api"])
def test_float16_files_train_as_their_exact_float32_copy(cli, make_data, tmp_path, options):
    """The reader copies float16 files to the GPU and widens them there (cudnnTransformTensor);
    training on them must equal, bit for bit, training on their float32 copy (exact widening on
    the host), the same algorithms chosen (--deterministic). 42 samples: the last batch of 2 is
    widened by a second transform."""
    from cudnn_denoise.data.recast import recast_dataset

    half = recast_dataset(make_data(42, size=64), tmp_path / "half", "float16")
    wide = recast_dataset(half, tmp_path / "wide", "float32")
    common = ("--backend", "cudnn", "--deterministic", "--epochs", 2, "--lr", 0.01, *options)
    from_half = run_train(cli, half, tmp_path / "a", *common)
    from_wide = run_train(cli, wide, tmp_path / "b", *common)
    assert from_half.step == from_wide.step == 22
    if not options:
        np.testing.assert_array_equal(from_half.params, from_wide.params)
    else:  # two graph-API runs of one float32 set differ in the last bits too (H200: 6.4e-7)
        np.testing.assert_allclose(from_half.params, from_wide.params, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("count", [3, 6], ids=["smaller-than-a-batch", "batch-and-a-part"])
def test_validation_on_cudnn_scores_every_held_out_pair(cli, make_data, tmp_path, count):
    """3 held-out pairs (less than the batch of 4: a model of 3 rows only) or 6 (a full batch and
    one of 2): the cuDNN loss is the row-weighted mean over every pair, as the reference's is."""
    data = make_data(16, size=64)
    val = make_data(count, size=64, seed=9, name="val")
    common = ("--no-shuffle", "--lr", 0.01, "--max-steps", 4, "--log-every", 4,
              "--val-data", val.noisy.parent)
    losses = {}
    for backend in ("cudnn", "reference"):
        out = tmp_path / backend
        run_train(cli, data, out, *common, "--backend", backend, *(("--math", "fp32") if backend == "cudnn" else ()))
        losses[backend] = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["val_loss"]
    assert losses["cudnn"] == pytest.approx(losses["reference"], rel=1e-4)


def test_cudnn_dump_matches_the_reference_dump(cli, make_data, tmp_path):
    data = make_data(12, size=64)
    ckpt = run_train(cli, data, tmp_path / "run", "--backend", "reference", "--max-steps", 2, "--lr", 0.01)
    dumps = {}
    for backend in ("cudnn", "reference"):
        out = tmp_path / backend
        result = cli(dump.main, "--checkpoint", ckpt.path, "--data", data.noisy.parent, "--index", 3,
                     "--out", out, "--backend", backend,
                     *(("--math", "fp32") if backend == "cudnn" else ()))  # the reference has no --math
        assert result.code == 0, result.err
        dumps[backend] = read_dump(out)
    gpu, cpu = dumps["cudnn"], dumps["reference"]
    assert list(gpu) == list(cpu) == list(dump_format.ORDER)
    for name in ("x", "target", "params", "lr"):
        np.testing.assert_array_equal(gpu[name], cpu[name], err_msg=name)
    errors = {name: rel_error(gpu[name], cpu[name]) for name in dump_format.ORDER}
    assert {name: e for name, e in errors.items() if not e < 1e-5} == {}, errors


def test_profile_prints_one_row_per_call_of_the_plan(tmp_path):
    import subprocess
    import sys

    from cudnn_denoise import plan

    data = tmp_path / "data"
    from cudnn_denoise.data.synthetic import write_dataset

    write_dataset(data, samples=64, size=64, seed=0)
    out = subprocess.run([sys.executable, "-m", "cudnn_denoise.train", "--data", str(data), "--out",
                          str(tmp_path / "run"), "--backend", "cudnn", "--profile", "4", "--log-every", "8"],
                         capture_output=True, text=True, check=True).stdout
    table = out.split("time per call of one step")[1]
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    expected = [c.function for c in plan.step(plan.Settings(), 4, 64, 64, 0.001)]
    assert [r.split("|")[2].strip() for r in rows] == expected
