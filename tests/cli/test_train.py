"""The train CLI on the CPU (reference backend): loss, initial checkpoint, batch order, resume,
signals, NaN, validation, the partial last batch, and the one-line errors for bad input."""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cli_support import expected_batches, plain_loop, poison
from cudnn_denoise import checkpoint, train
from cudnn_denoise.bindings.device import gpu_status
from cudnn_denoise.params import LAYERS, PARAM_BY_NAME, init_params, views
from cudnn_denoise.network.reference import ReferenceModel
from cudnn_denoise.training.run_record import position_from

CPU = ("--backend", "reference")


def metrics(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_thirty_steps_lower_the_loss(cli, data64, tmp_path):
    out = tmp_path / "run"
    result = cli(train.main, "--data", data64.noisy.parent, *CPU, "--out", out, "--max-steps", 30,
                 "--lr", 0.01, "--log-every", 5, "--epochs", 3)
    assert result.code == 0, result.err
    rows = metrics(out)
    assert [r["step"] for r in rows] == [5, 10, 15, 20, 25, 30]
    assert rows[-1]["loss"] < rows[0]["loss"] / 2, [r["loss"] for r in rows]
    assert checkpoint.load(out / "checkpoint").step == 30
    # losses.tsv: every step's loss, in order; the logged values are its entries and running means
    steps, losses = np.loadtxt(out / "losses.tsv", unpack=True)
    assert steps.tolist() == list(range(1, 31))
    for row in rows:
        assert losses[row["step"] - 1] == pytest.approx(row["loss"], rel=1e-6)
        assert losses[: row["step"]].mean() == pytest.approx(row["average"], rel=1e-6)


def test_max_steps_0_writes_the_initial_parameters(cli, data32, tmp_path):
    out = tmp_path / "run"
    result = cli(train.main, "--data", data32.noisy.parent, *CPU, "--out", out, "--max-steps", 0, "--seed", 7)
    assert result.code == 0, result.err
    saved = checkpoint.load(out / "checkpoint")
    assert saved.step == 0
    np.testing.assert_array_equal(saved.params, init_params(7))
    assert not np.array_equal(saved.params, init_params(0))  # the seed is used
    tensors = views(saved.params)
    for layer in LAYERS:  # PyTorch's default: uniform in +-1/sqrt(fan_in), weights and bias
        bound = 1.0 / math.sqrt(layer.in_channels * layer.kernel * layer.kernel)
        for name in (f"{layer.name}.weight", f"{layer.name}.bias"):
            values = np.abs(tensors[name])
            assert values.max() <= bound, name
            if PARAM_BY_NAME[name].size >= 16:  # spread over the range, not squeezed near zero
                assert values.max() > 0.5 * bound, name


def test_max_steps_alone_trains_over_as_many_epochs_as_it_takes(cli, data32, tmp_path):
    """40 samples make 10 batches an epoch: --max-steps 25 without --epochs runs 3 epochs' worth."""
    out = tmp_path / "run"
    result = cli(train.main, "--data", data32.noisy.parent, *CPU, "--out", out, "--max-steps", 25)
    assert result.code == 0, result.err
    assert "training 25 steps (--max-steps 25): batch 4, lr 0.001, 3 epochs of 10 batches" in result.out
    assert "done: 25 steps (stopped by --max-steps 25)" in result.out
    assert checkpoint.load(out / "checkpoint").step == 25


@pytest.mark.parametrize("epochs, steps, limit", [(2, 25, "--epochs 2"), (3, 25, "--max-steps 25")])
def test_epochs_and_max_steps_the_first_limit_reached_ends_the_run(cli, data32, tmp_path, epochs,
                                                                   steps, limit):
    out = tmp_path / "run"
    result = cli(train.main, "--data", data32.noisy.parent, *CPU, "--out", out, "--max-steps", steps,
                 "--epochs", epochs)
    assert result.code == 0, result.err
    ran = min(steps, 10 * epochs)
    assert f"training {ran} steps ({limit})" in result.out
    assert f"done: {ran} steps (stopped by {limit})" in result.out
    assert checkpoint.load(out / "checkpoint").step == ran


def test_neither_limit_given_names_the_default_not_a_flag(cli, data32, tmp_path):
    """No --epochs and no --max-steps: one epoch, said to be the default (no flag was typed)."""
    result = cli(train.main, "--data", data32.noisy.parent, *CPU, "--out", tmp_path / "run")
    assert result.code == 0, result.err
    assert "training 10 steps (the default of 1 epoch): batch 4, lr 0.001, 1 epoch of 10 batches" in result.out
    assert "done: 10 steps (stopped by the default of 1 epoch)" in result.out
    assert "--epochs 1" not in result.out


def test_one_step_is_singular_and_no_rate_without_time(cli, data32, tmp_path, monkeypatch):
    """A run too short for the clock: "1 step", "1 epoch of 10 batches", and no 0.0 batches/s."""
    monkeypatch.setattr(time, "monotonic", lambda: 100.0)  # no time passes
    result = cli(train.main, "--data", data32.noisy.parent, *CPU, "--out", tmp_path / "run",
                 "--max-steps", 1)
    assert result.code == 0, result.err
    assert "training 1 step (--max-steps 1): batch 4, lr 0.001, 1 epoch of 10 batches" in result.out
    assert "done: 1 step (stopped by --max-steps 1)" in result.out
    assert "; 1 step in 0.0 s (— batches/s)" in result.out
    assert "0.0 batches/s" not in result.out and "1 steps" not in result.out


@pytest.mark.parametrize("shuffle", ["--shuffle", "--no-shuffle"])
def test_batches_come_in_the_promised_order(cli, data32, tmp_path, shuffle):
    """25 steps over 10-batch epochs, compared with a plain loop over the documented order."""
    out = tmp_path / "run"
    result = cli(train.main, "--data", data32.noisy.parent, *CPU, "--out", out, "--max-steps", 25,
                 "--epochs", 3, "--seed", 3, "--lr", 0.01, shuffle)
    assert result.code == 0, result.err
    batches = expected_batches(40, 4, 25, shuffle=shuffle == "--shuffle", seed=3)
    np.testing.assert_array_equal(checkpoint.load(out / "checkpoint").params,
                                  plain_loop(init_params(3), data32, batches, 0.01))


def test_float16_files_train_on_their_values_widened(cli, data32, tmp_path):
    """A float16 copy of the data trains as a plain loop over its values, widened to float32."""
    from cudnn_denoise.data.recast import recast_dataset

    half = recast_dataset(data32, tmp_path / "half", "float16")
    out = tmp_path / "run"
    result = cli(train.main, "--data", half.noisy.parent, *CPU, "--out", out, "--max-steps", 15,
                 "--epochs", 2, "--seed", 5, "--lr", 0.01)
    assert result.code == 0, result.err
    batches = expected_batches(40, 4, 15, shuffle=True, seed=5)
    trained = checkpoint.load(out / "checkpoint").params
    np.testing.assert_array_equal(trained, plain_loop(init_params(5), half, batches, 0.01))
    assert not np.array_equal(trained, plain_loop(init_params(5), data32, batches, 0.01))


@pytest.mark.parametrize("shuffle", ["--shuffle", "--no-shuffle"])
@pytest.mark.parametrize("stop", [12, 20])  # mid-epoch and at an epoch's end (10 batches each)
def test_stop_and_resume_repeats_one_run_bit_for_bit(cli, data32, tmp_path, shuffle, stop):
    common = ("--data", data32.noisy.parent, *CPU, "--epochs", 3, "--checkpoint-every", 5,
              "--log-every", 4, "--lr", 0.01, shuffle)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert cli(train.main, *common, "--out", whole, "--max-steps", 25).code == 0
    assert cli(train.main, *common, "--out", parts, "--max-steps", stop).code == 0
    resumed = cli(train.main, *common, "--out", parts, "--max-steps", 25, "--resume")
    assert resumed.code == 0, resumed.err
    assert f"at step {stop}" in resumed.out

    a, b = checkpoint.load(whole / "checkpoint"), checkpoint.load(parts / "checkpoint")
    assert a.step == b.step == 25
    np.testing.assert_array_equal(a.params, b.params)
    assert position_from(a) == position_from(b)  # epoch, batch, loss sum, last loss
    keys = ("step", "epoch", "loss", "average")
    assert [[r[k] for k in keys] for r in metrics(whole)] == [[r[k] for k in keys] for r in metrics(parts)]


@pytest.mark.parametrize("drop_last, steps", [(False, 6), (True, 4)])
def test_partial_last_batch(cli, make_data, tmp_path, drop_last, steps):
    """10 samples in batches of 4: 4 + 4 + 2 a epoch, or 4 + 4 with --drop-last; two epochs."""
    data = make_data(10)
    out = tmp_path / "run"
    flags = ("--drop-last",) if drop_last else ()
    result = cli(train.main, "--data", data.noisy.parent, *CPU, "--out", out, "--epochs", 2,
                 "--no-shuffle", "--lr", 0.01, "--log-every", 1, *flags)
    assert result.code == 0, result.err
    assert f"training {steps} steps" in result.out
    saved = checkpoint.load(out / "checkpoint")
    assert saved.step == steps and [r["step"] for r in metrics(out)] == list(range(1, steps + 1))
    batches = expected_batches(10, 4, steps, shuffle=False, drop_last=drop_last)
    assert [len(b) for b in batches[:3]] == ([4, 4, 4] if drop_last else [4, 4, 2])
    np.testing.assert_array_equal(saved.params, plain_loop(init_params(0), data, batches, 0.01))


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_checkpoints_and_exits(data32, tmp_path, sig, code):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "cudnn_denoise.train", "--data", str(data32.noisy.parent), *CPU,
               "--out", str(out), "--epochs", 1000, "--log-every", 1, "--checkpoint-every", 0]
    proc = subprocess.Popen([str(c) for c in command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().count("\n") >= 3):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no progress in metrics.jsonl after 60 s"
            time.sleep(0.05)
        assert not (out / "checkpoint").exists()  # --checkpoint-every 0: only the signal writes one
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert f"stopped by signal {int(sig)}" in stderr and str(out / "checkpoint") in stderr, stderr
    saved = checkpoint.load(out / "checkpoint")
    assert saved.step >= 3 and saved.step < 10_000
    assert position_from(saved).step == saved.step
    assert np.isfinite(saved.params).all()


def test_nan_in_the_data_stops_with_the_step_and_keeps_the_last_good_checkpoint(cli, make_data, tmp_path):
    # Sample 17 is in step 5's batch (samples 16..19, --no-shuffle); train.py's intensity
    # statistics read samples 0, 2, 5, 7, 10, 13, 15, 18, ... of 40, so they stay finite.
    data = poison(make_data(40), 17)
    out = tmp_path / "run"
    result = cli(train.main, "--data", data.noisy.parent, *CPU, "--out", out, "--no-shuffle",
                 "--checkpoint-every", 2, "--max-steps", 10)
    assert result.code == 3
    line = result.one_line_error()
    assert line.startswith(f"error: step 5: the loss is nan because {data.noisy}: sample 17 has 1 "
                           "NaN, 0 Inf")
    assert "--check-data" in line
    assert f"the last good checkpoint stays at {out / 'checkpoint'}" in line
    saved = checkpoint.load(out / "checkpoint")
    assert saved.step == 4 and np.isfinite(saved.params).all()


def test_huge_values_past_the_statistics_are_named_not_called_divergence(cli, make_data, tmp_path):
    data = poison(make_data(40), 17, value=1e30)
    result = cli(train.main, "--data", data.noisy.parent, *CPU, "--out", tmp_path / "run",
                 "--no-shuffle", "--max-steps", 10)
    assert result.code == 3
    assert result.one_line_error().startswith(
        f"error: step 5: the loss is inf because {data.noisy}: sample 17 has 0 NaN, 0 Inf and 1 "
        "values outside [0, 1] (finite min 0, max 1e+30)")


def test_a_diverging_run_on_clean_data_says_so(cli, data32, tmp_path):
    result = cli(train.main, "--data", data32.noisy.parent, *CPU, "--out", tmp_path / "run",
                 "--lr", 1000, "--max-steps", 30, "--epochs", 3)
    assert result.code == 3
    line = result.one_line_error()
    assert ("though the batch's samples are finite and within [0, 1]: the training diverged; try a "
            "lower --lr than 1000.0") in line


def test_data_far_outside_0_1_gets_a_warning_at_start(cli, make_data, tmp_path):
    data = make_data(8)
    values = np.memmap(data.noisy, dtype=np.float32, mode="r+")
    values *= 1000.0  # counts, as a micrograph holds, not the [0, 1] of the format
    values.flush()
    del values
    result = cli(train.main, "--data", data.noisy.parent, *CPU, "--out", tmp_path / "run",
                 "--max-steps", 1)
    assert result.code == 0, result.err
    warning = [line for line in result.err.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and warning[0].startswith(f"warning: {data.noisy}: values from ")
    assert "outside the [0, 1]" in warning[0] and "scale the data to [0, 1]" in warning[0]
    in_range = make_data(8, name="in-range")
    ok = cli(train.main, "--data", in_range.noisy.parent, *CPU, "--out", tmp_path / "ok",
             "--max-steps", 1)
    assert ok.code == 0 and "warning" not in ok.err


def test_nan_where_the_statistics_look_is_a_data_error(cli, make_data, tmp_path):
    data = poison(make_data(8), 0)
    result = cli(train.main, "--data", data.noisy.parent, *CPU, "--out", tmp_path / "run")
    assert result.code == 2
    assert str(data.noisy) in result.one_line_error() and "--check-data" in result.err


def test_check_data_names_the_nan_sample(cli, make_data, tmp_path):
    data = poison(make_data(40), 17)
    result = cli(train.main, "--data", data.noisy.parent, *CPU, "--out", tmp_path / "run", "--check-data")
    assert result.code == 2
    assert f"{data.noisy}: sample 17 has 1 NaN" in result.one_line_error()


def _corrupt_checkpoint(tmp_path):
    path = checkpoint.save(tmp_path / "ckpt", init_params(0), step=0)
    (path / "params.bin").write_bytes((path / "params.bin").read_bytes()[:-4])
    return path


NO_GPU = pytest.mark.skipif(gpu_status()[0], reason="a GPU is visible: --backend cudnn would run")
BAD_INPUTS = {  # name: (extra arguments given tmp_path, what the error line must say)
    "missing data dir": (lambda t: ["--data", t / "nowhere"], "nowhere: --data must be a directory"),
    "batch size 0": (lambda t: ["--batch-size", 0],
                     "argument --batch-size: must be an integer >= 1, not '0'"),
    "resume without checkpoint": (lambda t: ["--resume"], "no checkpoint folder"),
    "corrupt --init": (lambda t: ["--init", _corrupt_checkpoint(t)], "params.bin: 10496 bytes, manifest expects 10500"),
    "cudnn without GPU": (lambda t: ["--backend", "cudnn"], "use --backend reference"),
}


@pytest.mark.parametrize("case", [pytest.param(case, marks=NO_GPU if "GPU" in case else ()) for case in BAD_INPUTS])
def test_bad_inputs_give_one_line_errors(cli, data32, tmp_path, case):
    extra, message = BAD_INPUTS[case]
    args = ["--data", data32.noisy.parent, *CPU, "--out", tmp_path / "run", *extra(tmp_path)]
    result = cli(train.main, *args)
    assert result.code == 2
    assert message in result.one_line_error()


def test_resume_with_another_batch_size_is_refused(cli, data32, tmp_path):
    common = ("--data", data32.noisy.parent, *CPU, "--out", tmp_path / "run")
    assert cli(train.main, *common, "--max-steps", 2).code == 0
    result = cli(train.main, *common, "--max-steps", 4, "--resume", "--batch-size", 2)
    assert result.code == 2
    assert "used batch_size=4 on 1 rank(s), this one 2 on 1" in result.one_line_error()


def test_validation_loss_and_psnr(cli, data32, make_data, tmp_path):
    val = make_data(12, seed=9, name="val")
    out = tmp_path / "run"
    result = cli(train.main, "--data", data32.noisy.parent, "--val-data", val.noisy.parent, *CPU, "--out", out,
                 "--max-steps", 10, "--log-every", 5, "--lr", 0.01)
    assert result.code == 0, result.err
    rows = metrics(out)
    assert [r["step"] for r in rows] == [5, 10]
    # The last row's validation ran on the parameters the checkpoint holds: 3 batches of 4.
    model = ReferenceModel(checkpoint.load(out / "checkpoint").params)
    x = np.fromfile(val.noisy, np.float32).reshape(12, 1, 32, 32)
    y = np.fromfile(val.clean, np.float32).reshape(12, 1, 32, 32)
    loss = sum(model.evaluate(x[i:i + 4], y[i:i + 4]) for i in range(0, 12, 4)) / 3
    assert rows[-1]["val_loss"] == pytest.approx(loss, rel=1e-12)
    assert rows[-1]["val_psnr"] == pytest.approx(10 * math.log10(1 / loss), rel=1e-12)
    assert result.out.count("val loss") == 2
    assert f"validation: loss {loss:.4f}, PSNR {10 * math.log10(1 / loss):.2f} dB (" in result.out


def test_validation_compares_with_the_noisy_input_s_own_psnr(cli, data32, make_data, tmp_path):
    """The baseline: the PSNR of the noisy inputs against their targets over the whole held-out
    set (6 pairs: a batch and a partial one), printed first, kept in metrics.jsonl, and each
    validation line says whether the model is above it."""
    val = make_data(6, seed=9, name="val")
    out = tmp_path / "run"
    result = cli(train.main, "--data", data32.noisy.parent, "--val-data", val.noisy.parent, *CPU, "--out", out,
                 "--max-steps", 2, "--log-every", 1)
    assert result.code == 0, result.err
    x = np.fromfile(val.noisy, np.float32).astype(np.float64)
    y = np.fromfile(val.clean, np.float32).astype(np.float64)
    baseline = 10 * math.log10(1 / np.mean((x - y) ** 2))
    start = next(line for line in result.out.splitlines() if line.startswith("validation: 6 held-out"))
    assert start.endswith(f"; baseline (noisy input) {baseline:.2f} dB")
    rows = metrics(out)
    assert [r["val_baseline_psnr"] for r in rows] == pytest.approx([baseline] * 2, rel=1e-12)
    for row, line in zip(rows, [line for line in result.out.splitlines() if "val loss" in line]):
        gain = row["val_psnr"] - baseline
        assert line.endswith(f"PSNR {row['val_psnr']:.2f} dB ({gain:+.2f} dB: "
                             f"{'above' if gain > 0 else 'not above'} the noisy input)"), line


@pytest.mark.parametrize("count", [1, 6])
def test_a_held_out_set_smaller_than_or_not_a_multiple_of_a_batch_is_scored_whole(cli, data32, make_data,
                                                                                 tmp_path, count):
    """1 pair (less than a batch of 4) or 6 (a batch and a last one of 2): the loss is the mean
    over every pair, each batch weighted by its rows."""
    val = make_data(count, seed=9, name="val")
    out = tmp_path / "run"
    result = cli(train.main, "--data", data32.noisy.parent, "--val-data", val.noisy.parent, *CPU,
                 "--out", out, "--max-steps", 2, "--log-every", 2)
    assert result.code == 0, result.err
    assert f"validation: {'1 held-out pair,' if count == 1 else '6 held-out pairs,'}" in result.out
    model = ReferenceModel(checkpoint.load(out / "checkpoint").params)
    x = np.fromfile(val.noisy, np.float32).reshape(count, 1, 32, 32)
    y = np.fromfile(val.clean, np.float32).reshape(count, 1, 32, 32)
    loss = sum(model.evaluate(x[i:i + 4], y[i:i + 4]) * len(x[i:i + 4]) for i in range(0, count, 4)) / count
    assert metrics(out)[-1]["val_loss"] == pytest.approx(loss, rel=1e-12)


def test_a_dataset_folder_without_dataset_json_needs_patch_size(cli, make_data, tmp_path):
    """No shape is guessed for raw files: --patch-size gives it, and the error says so."""
    data = make_data(8, size=32)
    (data.noisy.parent / "dataset.json").unlink()
    common = ("--data", data.noisy.parent, *CPU, "--max-steps", 1)
    refused = cli(train.main, *common, "--out", tmp_path / "refused")
    assert refused.code == 2
    assert refused.one_line_error().startswith(f"error: {data.noisy.parent}: has no dataset.json to give "
                                               "the samples' shape; pass --patch-size PX")
    result = cli(train.main, *common, "--out", tmp_path / "run", "--patch-size", 32)
    assert result.code == 0, result.err
    assert "data: 8 pairs of 32x32" in result.out


def test_help_names_every_flag_and_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as exit_:
        train.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    flags = ("--data --noisy --clean --patch-size --batch-size --lr --epochs --max-steps --seed --shuffle "
             "--no-shuffle --init --out --checkpoint-every --resume --backend --math --deterministic "
             "--log-every --val-data").split()
    text = text.replace("--[no-]shuffle", "--shuffle --no-shuffle")
    missing = [flag for flag in flags if not re.search(rf"(?<![\w-]){flag}(?![\w-])", text)]
    assert not missing
    codes = text[text.index("exit codes"):]
    for code in ("0", "1", "2", "3", "130"):
        assert re.search(rf"^ +{code} ", codes, re.MULTILINE), code
    assert "143 by SIGTERM" in codes


def test_profile_refuses_graph_and_trace(capsys, tmp_path):
    from cudnn_denoise import train

    for extra in (["--graph"], ["--trace", str(tmp_path / "t.txt")]):
        assert train.main(["--profile", "5", "--out", str(tmp_path / "run"), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m cudnn_denoise.train: error: --profile times the calls one by one") and "Traceback" not in err


def test_graph_api_refuses_fused_and_trace(capsys, tmp_path):
    from cudnn_denoise import train

    cases = {"--fused": "error: --fused (cudnnConvolutionBiasActivationForward) and --graph-api (fused",
             "--trace": "error: --graph-api cannot be combined with --trace"}
    for flag, message in cases.items():
        extra = [flag] if flag == "--fused" else [flag, str(tmp_path / "t.txt")]
        assert train.main(["--graph-api", "--out", str(tmp_path / "run"), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"python -m cudnn_denoise.train: {message}") and "Traceback" not in err, err


def test_precision_bf16_refuses_strict_fp32_fused_and_the_reference_backend(capsys, tmp_path):
    from cudnn_denoise import train

    cases = {("--math", "fp32"): "error: --precision bf16 rounds activations to BF16 on tensor cores",
             ("--fused",): "error: --fused (cudnnConvolutionBiasActivationForward) and --graph-api (which "
                           "--precision bf16 runs on)",
             ("--backend", "reference"): "error: --precision bf16 needs the cudnn backend (a GPU)"}
    for extra, message in cases.items():
        assert train.main(["--precision", "bf16", "--out", str(tmp_path / "run"), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"python -m cudnn_denoise.train: {message}") and "Traceback" not in err \
            and err.count("\n") == 1, err


# -- an OUT that holds a run, resume checks, arguments, help, signal handlers ----------------------

def test_an_out_that_holds_a_run_is_refused_unless_resume_or_overwrite(cli, data32, tmp_path):
    out = tmp_path / "run"
    common = ("--data", data32.noisy.parent, *CPU, "--out", out, "--log-every", 1)
    assert cli(train.main, *common, "--max-steps", 3, "--seed", 1).code == 0
    before = {name: (out / name).read_bytes() for name in ("metrics.jsonl", "losses.tsv")}
    params = checkpoint.load(out / "checkpoint").params
    refused = cli(train.main, *common, "--max-steps", 2)  # the README's next command, as it was
    assert refused.code == 2
    assert refused.one_line_error() == (
        f"error: --out {out}: holds a run (a checkpoint at step 3); continue it with --resume, "
        "replace it with --overwrite, or choose another --out")
    assert {name: (out / name).read_bytes() for name in before} == before
    np.testing.assert_array_equal(checkpoint.load(out / "checkpoint").params, params)

    replaced = cli(train.main, *common, "--max-steps", 2, "--overwrite")
    assert replaced.code == 0, replaced.err
    assert checkpoint.load(out / "checkpoint").step == 2
    assert [r["step"] for r in metrics(out)] == [1, 2]  # the new run's logs alone
    assert np.loadtxt(out / "losses.tsv", ndmin=2)[:, 0].tolist() == [1, 2]
    np.testing.assert_array_equal(checkpoint.load(out / "checkpoint").params,
                                  plain_loop(init_params(0), data32,
                                             expected_batches(40, 4, 2, shuffle=True), 0.001))


def _run_files(out) -> dict[str, bytes]:
    """Every file of a train run in OUT (checkpoint/ included) and its bytes, run.log aside."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "run.log" and not p.name.startswith(".")}


@pytest.mark.parametrize("failure", ["nan-statistics", "nan-first-step", "bad-validation"])
def test_an_overwrite_that_fails_before_its_first_checkpoint_keeps_the_old_run(
        cli, data32, make_data, tmp_path, failure):
    out = tmp_path / "run"
    assert cli(train.main, "--data", data32.noisy.parent, *CPU, "--out", out, "--max-steps", 3,
               "--log-every", 1).code == 0
    before = _run_files(out)
    args = {"nan-statistics": ("--data", poison(make_data(8), 0).noisy.parent),
            "nan-first-step": ("--data", poison(make_data(8, name="first"), 1).noisy.parent,
                               "--no-shuffle", "--batch-size", 2),
            "bad-validation": ("--data", data32.noisy.parent,
                               "--val-data", poison(make_data(8, name="val"), 3).noisy.parent)}
    result = cli(train.main, *args[failure], *CPU, "--out", out, "--overwrite", "--max-steps", 5)
    assert result.code in (2, 3) and "Traceback" not in result.err, result.err
    assert f"--out {out}: the earlier run is kept" in result.out
    assert _run_files(out) == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_a_stop_at_the_start_of_an_overwrite_keeps_the_old_run(cli, data32, tmp_path, monkeypatch):
    from cudnn_denoise.training import start
    from cudnn_denoise.userio import signals

    out = tmp_path / "run"
    common = ("--data", data32.noisy.parent, *CPU, "--out", out, "--log-every", 1)
    assert cli(train.main, *common, "--max-steps", 3).code == 0
    before = _run_files(out)

    def ctrl_c(dataset):  # the moment the new run starts reading
        raise signals.Stopped(signal.SIGINT)

    monkeypatch.setattr(start, "noisy_stats", ctrl_c)
    result = cli(train.main, *common, "--max-steps", 2, "--overwrite")
    assert result.code == 130 and "Traceback" not in result.err, result.err
    assert _run_files(out) == before


def test_an_overwrite_killed_before_its_first_checkpoint_gets_the_old_run_back(cli, data32, tmp_path):
    out = tmp_path / "run"
    common = ("--data", data32.noisy.parent, *CPU, "--out", out, "--log-every", 1)
    assert cli(train.main, *common, "--max-steps", 3).code == 0
    before = _run_files(out)
    proc = subprocess.run([sys.executable, "-c", (
        "import os, sys; from cudnn_denoise import train; "
        "from cudnn_denoise.training import loop; "
        "loop.Trainer.save = lambda self: os.kill(os.getpid(), 9); "
        "train.main(sys.argv[1:])"), *map(str, (*common, "--max-steps", 2, "--overwrite"))],
        capture_output=True, text=True)
    assert proc.returncode == -9
    assert _run_files(out) != before  # the new run's logs, the old run aside
    refused = cli(train.main, *common, "--max-steps", 2)
    assert "holds a run (a checkpoint at step 3)" in refused.one_line_error()
    assert _run_files(out) == before


def test_logs_of_a_run_without_a_checkpoint_are_not_appended_to(cli, data32, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "losses.tsv").write_text("1\t0.5\n")  # a run that died before its first checkpoint
    result = cli(train.main, "--data", data32.noisy.parent, *CPU, "--out", out, "--max-steps", 1)
    assert result.code == 2
    assert "holds a run (losses.tsv of a run without a checkpoint)" in result.one_line_error()


def test_resume_and_overwrite_exclude_each_other(cli, tmp_path):
    result = cli(train.main, "--resume", "--overwrite", "--out", tmp_path / "run")
    assert result.code == 2
    assert "argument --overwrite: not allowed with argument --resume" in result.one_line_error()


def test_resume_on_samples_of_another_shape_is_refused(cli, data32, data64, tmp_path):
    out = tmp_path / "run"
    assert cli(train.main, "--data", data32.noisy.parent, *CPU, "--out", out,
               "--max-steps", 2).code == 0
    result = cli(train.main, "--data", data64.noisy.parent, *CPU, "--out", out, "--max-steps", 4,
                 "--resume")
    assert result.code == 2  # both sets hold 40 samples: only the shape tells them apart
    assert result.one_line_error() == (
        f"error: --resume: the checkpoint's run ({out / 'checkpoint'}) read samples of 32x32, "
        f"{data64.noisy} holds 64x64")


def test_resume_on_other_samples_of_the_same_shape_is_refused(cli, data32, make_data, tmp_path):
    out = tmp_path / "run"
    assert cli(train.main, "--data", data32.noisy.parent, *CPU, "--out", out,
               "--max-steps", 2).code == 0
    other = make_data(40, size=32, seed=9)  # as many samples of the same shape: other content
    result = cli(train.main, "--data", other.noisy.parent, *CPU, "--out", out, "--max-steps", 4,
                 "--resume")
    assert result.code == 2
    assert result.one_line_error() == (
        f"error: --resume: the checkpoint's run ({out / 'checkpoint'}) read other samples "
        f"({data32.noisy}); {other.noisy} holds as many of the same shape, but not the same: "
        "resume with the run's data or start a new run")


def test_resume_of_a_checkpoint_from_another_run_is_refused(cli, data32, tmp_path):
    common = ("--data", data32.noisy.parent, *CPU, "--max-steps", 3, "--log-every", 1)
    for name, seed in (("a", 1), ("b", 2)):
        assert cli(train.main, *common, "--out", tmp_path / name, "--seed", seed).code == 0
    shutil.rmtree(tmp_path / "a" / "checkpoint")
    shutil.copytree(tmp_path / "b" / "checkpoint", tmp_path / "a" / "checkpoint")
    result = cli(train.main, *common, "--out", tmp_path / "a", "--seed", 2, "--resume",
                 "--max-steps", 5)
    assert result.code == 2
    line = result.one_line_error()
    assert line.startswith(
        f"error: --resume: {tmp_path / 'a' / 'checkpoint'} is not the checkpoint of the run "
        f"logged in {tmp_path / 'a' / 'losses.tsv'}: step 3's loss there is "), line
    assert line.endswith("; put the run's own checkpoint back, or start a new run with --overwrite")


def test_validation_on_the_training_data_is_not_called_held_out(cli, data32, tmp_path):
    result = cli(train.main, "--data", data32.noisy.parent, "--val-data", data32.noisy.parent, *CPU,
                 "--out", tmp_path / "run", "--max-steps", 1)
    assert result.code == 0, result.err
    line = next(line for line in result.out.splitlines() if line.startswith("validation: 40"))
    assert "held-out" not in line
    assert line.startswith("validation: 40 pairs, the training samples themselves (--val-data "
                           "holds the same as --data): not held out, ")


def test_resume_says_which_settings_differ_from_the_checkpoint(cli, data32, tmp_path):
    common = ("--data", data32.noisy.parent, *CPU, "--out", tmp_path / "run", "--epochs", 2)
    assert cli(train.main, *common, "--max-steps", 2).code == 0
    result = cli(train.main, *common, "--max-steps", 4, "--resume", "--lr", 0.01)
    assert result.code == 0, result.err
    notes = [line for line in result.out.splitlines() if line.startswith("note: ")]
    assert notes == ["note: resuming with other settings than the checkpoint's run: lr 0.01 "
                     "(was 0.001), max_steps 4 (was 2)"]


@pytest.mark.parametrize("flag, value, rule", [
    ("--seed", -1, "must be an integer >= 0, not '-1'"),
    ("--lr", "nan", "must be a finite number > 0, not 'nan'"),
    ("--lr", "inf", "must be a finite number > 0, not 'inf'"),
    ("--epochs", 0, "must be an integer >= 1, not '0'"),
    ("--log-every", 0, "must be an integer >= 1, not '0'"),
    ("--max-steps", -1, "must be an integer >= 0, not '-1'"),
    ("--checkpoint-every", "x", "must be an integer >= 0, not 'x'"),
    ("--patch-size", 0, "must be an integer >= 1, not '0'"),
])
def test_a_bad_number_names_its_flag(cli, tmp_path, flag, value, rule):
    result = cli(train.main, flag, value, "--out", tmp_path / "run")
    assert result.code == 2
    assert result.one_line_error() == (f"error: argument {flag}: {rule} (see python -m "
                                       "cudnn_denoise.train --help)")
    assert not (tmp_path / "run").exists()


def test_a_dataset_json_that_is_not_utf8_is_named(cli, make_data, tmp_path):
    data = make_data(8)
    meta = data.noisy.parent / "dataset.json"
    meta.write_bytes(b'{"height": 32, "width": 32, "made_by": "\xe9t\xe9"}')
    result = cli(train.main, "--data", data.noisy.parent, *CPU, "--out", tmp_path / "run")
    assert result.code == 2
    assert result.one_line_error().startswith(f"error: {meta}: is not UTF-8 text (byte 0xe9 at "
                                              "offset ")


def test_help_names_the_validation_flags_rightly_and_says_what_validation_does(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # no line breaks inside a flag's name
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "needs --val-clean" in text and "paired sample by sample with --val-noisy" in text
    assert "needs --clean" in text and "paired sample by sample with --noisy" in text
    assert "held-out pairs, never trained on: at every log line and at the end" in text
    assert "--overwrite" in text and "an OUT that holds a run is refused" in text


def test_train_restores_the_signal_handlers_it_found(cli, data32, tmp_path):
    def mine(signum, frame):
        pass

    old = {sig: signal.signal(sig, mine) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        ok = cli(train.main, "--data", data32.noisy.parent, *CPU, "--out", tmp_path / "a",
                 "--max-steps", 2)
        bad = cli(train.main, "--data", tmp_path / "none", *CPU, "--out", tmp_path / "b")
        refused = cli(train.main, "--seed", "-1")
        assert (ok.code, bad.code, refused.code) == (0, 2, 2)
        assert all(signal.getsignal(sig) is mine for sig in old)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def test_nan_in_the_validation_set_names_its_sample(cli, data32, make_data, tmp_path):
    val = poison(make_data(8, seed=4, name="val"), 5)
    result = cli(train.main, "--data", data32.noisy.parent, "--val-data", val.noisy.parent, *CPU,
                 "--out", tmp_path / "run", "--max-steps", 2, "--log-every", 1)
    assert result.code == 2
    assert result.one_line_error() == (f"error: {val.noisy}: sample 5 has 1 NaN, 0 Inf and 0 "
                                       "values outside [0, 1] (finite min 0, max 1)")
