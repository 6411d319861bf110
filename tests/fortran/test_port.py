"""The Fortran side against the reference backend's files: read_checkpoint, read_dump and
read_dataset (float32 and float16 samples) print exactly the checksum lines Python prints, read_dump names bad files, and the training step of the
Fortran program (fortran/denoise_step.f90, shown in docs/fortran.md) makes the plan's calls.

Skipped, with the reason, where gfortran or make is missing (the build fixture of test_fortran.py).
"""

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from test_fortran import FFLAGS, build, run  # noqa: F401 (build: the Makefile's build, a fixture)

from cudnn_denoise import checkpoint, fortran, params
from cudnn_denoise.data.synthetic import write_dataset
from cudnn_denoise.port import calls, checksum, dump_format

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
    assert len(printed.splitlines()) == len(dump_format.ORDER)


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


# ---- the step of the Fortran program against port/calls.py and the docs ----

STEP = Path(fortran.STEP_FILE)


def step_calls(source: str, fused: bool) -> list[str]:
    """The cuDNN and cuBLAS functions train_step calls, in order, for one setting of m%fused:
    train_step's body with each call of a subroutine of the module replaced by that one's calls
    (the `if (m%graph_api) then` blocks, the graph API step, left out: not the plan's)."""
    bodies = dict(re.findall(r"^ *subroutine (\w+)\(.*?\n(.*?)^ *end subroutine \1$", source, flags=re.M | re.S))

    def expand(name: str) -> list[str]:
        found, branch, graph_api = [], None, False  # branch: inside `if (m%fused) then`: "then" or "else"
        for line in bodies[name].splitlines():
            text = line.strip()
            if text == "if (m%graph_api) then":
                graph_api = True
            elif graph_api:
                graph_api = text != "end if"
            elif text == "if (m%fused) then":
                branch = "then"
            elif text == "else" and branch == "then":
                branch = "else"
            elif text == "end if" and branch is not None:
                branch = None
            elif branch is None or (branch == "then") == fused:
                for local, library in re.findall(r"\bcall (\w+)\(|\b(cu(?:dnn|blas)\w+)\(", text):
                    found += [library] if library else expand(local) if local in bodies else []
        return found

    return expand("train_step")


@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
def test_the_fortran_programs_step_makes_the_plans_calls_in_order(fused):
    expected = [call.function for call in calls.step(calls.Settings(fused=fused), 4, 64, 64, 0.001)]
    assert step_calls(STEP.read_text(), fused) == expected


def test_the_step_in_the_docs_is_the_programs_step():
    doc = DOC.read_text()
    assert fortran.doc_with_step(doc, STEP.read_text()) == doc, (
        "docs/fortran.md's Fortran step differs from fortran/denoise_step.f90: "
        "run `python -m cudnn_denoise.fortran --doc docs/fortran.md`")
    assert len(re.findall(r"```fortran\n", doc)) == 1


def test_a_reordered_or_missing_call_is_seen():
    # the check above would pass a parser that finds nothing for both settings: prove it reads
    source = STEP.read_text()
    swapped = source.replace("      call relu_forward(m, m%a1)\n      call conv_forward(m, m%conv(2), m%a1, m%a2)\n",
                             "      call conv_forward(m, m%conv(2), m%a1, m%a2)\n      call relu_forward(m, m%a1)\n")
    assert swapped != source
    expected = [call.function for call in calls.step(calls.Settings(), 4, 64, 64, 0.001)]
    assert step_calls(swapped, fused=False) != expected
    dropped = source.replace("    call conv_backward_bias(m, m%conv(2), m%dh2)\n", "")
    fused = [call.function for call in calls.step(calls.Settings(fused=True), 4, 64, 64, 0.001)]
    assert dropped != source and len(step_calls(dropped, fused=True)) == len(fused) - 2  # its two gemv


def test_read_dataset_widens_every_float16_as_python_does(build, tmp_path):
    """Every finite binary16 bit pattern (zeros, subnormals, normals, both signs), shuffled, as
    sample 1 of a float16 file: fortran/cudnn_denoise_dataset.f90's binary16_to_real gives
    NumPy's values (the in-order sum sees each one)."""
    bits = np.random.default_rng(1).permutation(65536).astype(np.uint16)
    bits[(bits >> 10) & 31 == 31] = 0x3C00  # infinities and NaNs never occur in a dataset: 1.0
    samples = np.stack([np.zeros(65536, np.uint16), bits, np.full(65536, 0x3800, np.uint16)])
    samples.astype("<u2").tofile(tmp_path / "noisy.bin")
    result = run([build / "read_dataset", tmp_path / "noisy.bin", 256, 256, "float16", 1])
    assert result.returncode == 0, result.stderr
    widened = bits.view("<f2").astype(np.float32)
    assert result.stdout.splitlines() == [checksum.format_checksum("sample 1", widened)]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_read_dataset_reads_a_sample_of_either_dtype(build, tmp_path, dtype):
    from cudnn_denoise.data.recast import recast_dataset

    data = write_dataset(tmp_path / "float32", 5, 24, seed=2)
    if dtype == "float16":
        data = recast_dataset(data, tmp_path / "float16", "float16")
    values = np.fromfile(data.clean, data.dtype).reshape(5, 24 * 24)[3].astype(np.float32)
    result = run([build / "read_dataset", data.clean, 24, 24, dtype, 3])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [checksum.format_checksum("sample 3", values)]
    short = run([build / "read_dataset", data.clean, 24, 24, dtype, 5])  # past the end
    assert short.returncode == 2 and short.stderr.startswith(f"read_dataset: {data.clean}: ")
