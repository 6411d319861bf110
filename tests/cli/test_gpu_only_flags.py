"""The cudnn backend's own flags on the reference backend: each one given is refused in one line
(exit 2) rather than ignored, in every program that takes it; `--backend auto` without a GPU says
that none was found; the defaults pass, and a reference --trace keeps the settings it records."""

from __future__ import annotations

import pytest

from cudnn_denoise import checkpoint, denoise, dump, train
from cudnn_denoise.network import backends
from cudnn_denoise.params import init_params

CPU = ("--backend", "reference")
TRAIN_FLAGS = [("--graph-api",), ("--fused",), ("--graph",), ("--profile", "3"), ("--math", "fp32"),
               ("--deterministic",)]


@pytest.fixture
def no_gpu(monkeypatch):
    """--backend auto on a machine without a GPU, wherever the test runs."""
    monkeypatch.setattr(backends, "gpu_status", lambda: (False, "no driver here"))


@pytest.mark.parametrize("flag", TRAIN_FLAGS, ids=lambda flag: flag[0])
def test_train_refuses_each_gpu_flag_on_the_reference_backend(cli, data32, tmp_path, flag):
    result = cli(train.main, "--data", data32.noisy.parent, *CPU, "--out", tmp_path / "run", *flag)
    assert result.code == 2
    assert result.one_line_error() == (f"error: {flag[0]} needs --backend cudnn (a GPU): the reference "
                                       "backend has no such setting")
    assert not (tmp_path / "run" / "checkpoint").exists()


@pytest.mark.parametrize("flag", TRAIN_FLAGS, ids=lambda flag: flag[0])
def test_backend_auto_without_a_gpu_says_none_was_found(cli, data32, tmp_path, no_gpu, flag):
    result = cli(train.main, "--data", data32.noisy.parent, "--out", tmp_path / "run", *flag)
    assert result.code == 2
    assert result.one_line_error() == (f"error: {flag[0]} needs --backend cudnn, and --backend auto "
                                       "found none (no GPU: no driver here)")


def test_train_without_gpu_flags_runs_on_auto_without_a_gpu(cli, data32, tmp_path, no_gpu):
    result = cli(train.main, "--data", data32.noisy.parent, "--out", tmp_path / "run", "--max-steps", 1)
    assert result.code == 0, result.err
    config = checkpoint.load(tmp_path / "run" / "checkpoint").extra["config"]
    assert (config["math"], config["fused"], config["graph"], config["profile"]) == ("tf32", False, False, 0)


@pytest.mark.parametrize("flag", [("--math", "fp32"), ("--device", "0")], ids=lambda flag: flag[0])
def test_denoise_refuses_each_gpu_flag_on_the_reference_backend(cli, tmp_path, flag):
    ckpt = checkpoint.save(tmp_path / "ckpt", init_params(0), step=1)
    image = tmp_path / "a.bin"
    image.write_bytes(b"\0" * 4 * 16 * 16)
    result = cli(denoise.main, image, "--height", 16, "--width", 16, "--checkpoint", ckpt, "--normalize",
                 "-o", tmp_path / "out", *CPU, *flag)
    assert result.code == 2
    assert result.one_line_error() == (f"error: {flag[0]} needs --backend cudnn (a GPU): the reference "
                                       "backend has no such setting")
    assert not (tmp_path / "out" / "a.denoised.mrcs").exists()


def test_dump_refuses_math_on_the_reference_backend_unless_traced(cli, data32, tmp_path):
    ckpt = checkpoint.save(tmp_path / "ckpt", init_params(0), step=1)
    common = ("--checkpoint", ckpt, "--data", data32.noisy.parent, "--index", 0, *CPU, "--math", "fp32")
    result = cli(dump.main, *common, "--out", tmp_path / "dump")
    assert result.code == 2
    assert "--math needs --backend cudnn" in result.one_line_error()
    traced = cli(dump.main, *common, "--out", tmp_path / "traced", "--trace", tmp_path / "t.txt")
    assert traced.code == 0, traced.err
