"""The Fortran side against the reference backend's files: read_checkpoint and read_dump print
exactly the checksum lines Python prints, read_dump names bad files, and the training step that
docs/fortran.md gives in Fortran compiles against the generated interfaces and makes the plan's calls.

Skipped, with the reason, where gfortran or make is missing (the build fixture of test_fortran.py).
"""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cudnn_denoise import checkpoint, checksum, dump, params, plan
from cudnn_denoise.data.synthetic import write_dataset
from test_fortran import FFLAGS, build, run  # noqa: F401 (build: the Makefile's build, a fixture)

DOC = Path(__file__).resolve().parents[2] / "docs" / "fortran.md"


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """A dataset of 12 pairs of 24 x 24, a checkpoint after 2 reference steps, and a dump of step 3."""
    root = tmp_path_factory.mktemp("reference_run")
    data = write_dataset(root / "data", 12, 24, seed=4)
    cli = [sys.executable, "-m", "cudnn_denoise.train", "--data", data.noisy.parent, "--backend", "reference",
           "--out", root / "run", "--max-steps", 2, "--batch-size", 3, "--lr", 0.05, "--no-shuffle"]
    assert run(cli).returncode == 0
    out = root / "dump"
    result = run([sys.executable, "-m", "cudnn_denoise.dump", "--checkpoint", root / "run" / "checkpoint",
                  "--data", data.noisy.parent, "--index", 4, "--out", out, "--backend", "reference"])
    assert result.returncode == 0, result.stderr
    return root / "run" / "checkpoint", out, result.stdout


def test_read_checkpoint_prints_pythons_lines_for_a_trained_checkpoint(build, reference_run):
    folder = reference_run[0]
    trained = checkpoint.load(folder).params
    assert not np.array_equal(trained, params.init_params(0))  # two steps changed it
    result = run([build / "read_checkpoint", folder])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [checksum.format_checksum(n, v) for n, v in params.views(trained).items()]


def test_read_dump_prints_the_dump_clis_lines(build, reference_run):
    _, out, printed = reference_run
    result = run([build / "read_dump", out])
    assert result.returncode == 0, result.stderr
    assert result.stdout == printed
    assert len(printed.splitlines()) == len(dump.ORDER)


def test_read_dump_names_every_file_of_the_wrong_size_and_reads_the_rest(build, reference_run, tmp_path):
    out = tmp_path / "dump"
    out.mkdir()
    for source in reference_run[1].iterdir():
        (out / source.name).write_bytes(source.read_bytes())
    (out / "relu1.bin").write_bytes((out / "relu1.bin").read_bytes()[:-4])
    (out / "lr.bin").unlink()
    result = run([build / "read_dump", out])
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("read_dump: ")]  # then STOP 1
    assert len(errors) == 2
    assert "relu1.bin has " in errors[0] and "lr.bin has -1 bytes" in errors[1]
    kept = [line for line in reference_run[2].splitlines() if line.split()[0] not in ("relu1", "lr")]
    assert result.stdout.splitlines() == kept


def test_read_dump_refuses_a_folder_without_a_dump_manifest(build, tmp_path):
    result = run([build / "read_dump", tmp_path])
    assert result.returncode == 2
    assert "manifest.json" in result.stderr
    (tmp_path / "manifest.json").write_text('{"format": "cudnn_denoise.checkpoint"}\n')
    assert run([build / "read_dump", tmp_path]).returncode == 2


def test_the_documented_fortran_step_compiles_and_makes_the_plans_calls(build, tmp_path):
    blocks = re.findall(r"```fortran\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/fortran.md should hold one Fortran block: the step module"
    source = tmp_path / "denoise_step.f90"
    source.write_text(blocks[0])
    result = subprocess.run(["gfortran", *FFLAGS, f"-I{build}", "-fsyntax-only", str(source)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, f"the Fortran of docs/fortran.md does not build:\n{result.stderr}"
    body = blocks[0][blocks[0].index("subroutine train_step"):]
    called = re.findall(r"\b(cu(?:dnn|blas)\w+)\(", body)
    expected = [call.function for call in plan.step(plan.Settings(), 4, 64, 64, 0.001)]
    assert called == expected
