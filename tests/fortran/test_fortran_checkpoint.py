"""denoise_train's checkpoints, signals and resume, on a CPU: the Fortran modules it uses
(denoise_checkpoint_folder, denoise_run_position, denoise_signals, cudnn_denoise_sha256) in small
test programs, against Python's cudnn_denoise.checkpoint and train --resume (reference backend).
The GPU run of the same (a Fortran run stopped by SIGINT, resumed by Python, and the other way
round) is benchmarks/fortran_parity.py's.
"""

import hashlib
import signal
import subprocess
import sys

import numpy as np
import pytest

from cudnn_denoise import checkpoint, params
from cudnn_denoise.data.synthetic import write_dataset
from cudnn_denoise.training import run_record
from test_denoise_train import built_program
from test_fortran import build, run  # noqa: F401 (build: the Makefile's build, a fixture)

PORT_OBJECTS = ["denoise_run_position.o", "denoise_dataset_meta.o", "denoise_checkpoint_folder.o",
                "denoise_json.o", "cudnn_denoise_sha256.o", "cudnn_denoise_checkpoint.o", "denoise_check.o",
                "cudnn_interfaces.o"]


@pytest.fixture(scope="module")
def roundtrip(build):
    return built_program("checkpoint_roundtrip", build, PORT_OBJECTS)


@pytest.fixture(scope="module")
def python_run(tmp_path_factory):
    """train --no-shuffle on the reference backend: 8 pairs of 16 x 16, batch 2, stopped after 3 steps."""
    root = tmp_path_factory.mktemp("python_run")
    write_dataset(root / "data", 8, 16, seed=1)
    result = run(train_cli(root, root / "run", "--max-steps", 3))
    assert result.returncode == 0, result.stderr
    return root


def train_cli(root, out, *more):
    return [sys.executable, "-m", "cudnn_denoise.train", "--backend", "reference", "--data", root / "data",
            "--out", out, "--batch-size", 2, "--no-shuffle", "--log-every", 1, "--epochs", 2, *more]


def test_python_loads_what_fortran_saves_and_resumes_it(roundtrip, python_run, tmp_path):
    root = python_run
    (tmp_path / "run").mkdir()
    result = run([roundtrip, root / "run", tmp_path / "run" / "checkpoint", root / "data", 2])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["step", "3", "epoch", "0", "batch", "3"]
    theirs, ours = checkpoint.load(tmp_path / "run"), checkpoint.load(root / "run")
    assert np.array_equal(theirs.params, ours.params) and theirs.step == 3
    assert run_record.position_from(theirs) == run_record.position_from(ours)  # loss_sum to the bit
    assert list(tmp_path.iterdir()) == [tmp_path / "run"]  # no .tmp-* or .old-* left
    # Python continues the Fortran-written checkpoint: the same parameters as its own continued run
    for out in (tmp_path / "run", root / "run"):
        result = run(train_cli(root, out, "--resume"))
        assert result.returncode == 0, result.stderr
    assert np.array_equal(checkpoint.load(tmp_path / "run").params, checkpoint.load(root / "run").params)


def test_a_save_replaces_the_checkpoint_atomically(roundtrip, python_run, tmp_path):
    target = tmp_path / "checkpoint"
    for _ in range(2):  # the second replaces the first (renamed aside, then removed)
        assert run([roundtrip, python_run / "run", target, python_run / "data", 2]).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    manifest = checkpoint.load(target).manifest
    assert manifest["sha256"] == hashlib.sha256((target / "params.bin").read_bytes()).hexdigest()


def test_fortran_checks_the_sha256_and_the_run(roundtrip, python_run, tmp_path):
    source = checkpoint.load(python_run / "run")
    bad = tmp_path / "bad"
    checkpoint.save(bad, source.params, step=source.step, extra=source.extra)
    data = bytearray((bad / "params.bin").read_bytes())
    data[100] ^= 1
    (bad / "params.bin").write_bytes(bytes(data))
    result = run([roundtrip, bad, tmp_path / "out", python_run / "data", 2])
    assert result.returncode == 2 and f"{bad}/params.bin: sha256 " in result.stderr, result.stderr
    result = run([roundtrip, python_run / "run", tmp_path / "out", python_run / "data", 4])
    assert result.returncode == 2 and "used batch_size=2 on 1 rank(s), this one 4" in result.stderr
    shuffled = tmp_path / "shuffled"
    extra = {**source.extra, "config": {**source.extra["config"], "shuffle": True}}
    checkpoint.save(shuffled, source.params, step=source.step, extra=extra)
    result = run([roundtrip, shuffled, tmp_path / "out", python_run / "data", 2])
    assert result.returncode == 2 and "shuffled its batches" in result.stderr
    bare = tmp_path / "bare"
    checkpoint.save(bare, params.init_params(0), step=0)
    result = run([roundtrip, bare, tmp_path / "out", python_run / "data", 2])
    assert result.returncode == 2 and "not a training checkpoint" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_sets_the_flag_and_the_program_exits_128_plus_it(build, signum, status):
    program = built_program("signal_flag", build, ["denoise_signals.o", "denoise_check.o", "cudnn_interfaces.o"])
    process = subprocess.Popen([str(program)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == status, stderr  # not killed by the signal: the handler caught it
    assert stderr.strip() == f"denoise_train: stopped by signal {int(signum)}"
