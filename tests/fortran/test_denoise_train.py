"""The Fortran program on a CPU machine: it builds and links against the wheels' cuDNN, cuBLAS and
CUDA runtime, says in one line that there is no GPU, refuses bad input naming it, and reads the
algorithm table that train writes (the GPU comparison with Python is benchmarks/fortran_parity.py).
"""

import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cudnn_denoise.port import algorithm_table
from cudnn_denoise import checkpoint, fortran, params
from cudnn_denoise.data.synthetic import write_dataset
from cudnn_denoise.bindings.device import gpu_status
from test_fortran import build, compile_program, run  # noqa: F401 (build: the Makefile's build, a fixture)

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A dataset of 8 pairs of 16 x 16 and an initial checkpoint."""
    root = tmp_path_factory.mktemp("denoise_train")
    write_dataset(root / "data", 8, 16, seed=1)
    checkpoint.save(root / "init", params.init_params(0), step=0)
    return root


def train(build, *args):
    return run([build / "denoise_train", *args])


@pytest.mark.skipif(gpu_status()[0], reason="a GPU is visible here: the GPU run is fortran_parity.py's")
def test_without_a_gpu_it_says_so_in_one_line_and_exits_2(build, inputs, tmp_path):
    result = train(build, "--data", inputs / "data", "--init", inputs / "init", "--out", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("denoise_train: no NVIDIA GPU or driver found (cudaGetDeviceCount: cuda")
    assert not (tmp_path / "out").exists()  # nothing is made before the GPU is known


@pytest.mark.skipif(gpu_status()[0], reason="a GPU is visible here: the GPU run is fortran_parity.py's")
@pytest.mark.parametrize("options", [["--graph", "--graph-api"], ["--graph-api", "--graph", "--deterministic"],
                                     ["--graph-api", "--precision", "bf16"],
                                     ["--graph-api", "--precision", "bf16", "--graph"],
                                     ["--precision", "fp32", "--math", "fp32"]])
def test_options_that_go_together_reach_the_gpu_check(build, inputs, tmp_path, options):
    """Accepted: the program gets as far as asking for the GPU (here: none, exit 2)."""
    result = train(build, "--data", inputs / "data", "--init", inputs / "init", "--out", tmp_path / "out", *options)
    assert result.returncode == 2
    assert result.stderr.startswith("denoise_train: no NVIDIA GPU or driver found"), result.stderr


@pytest.mark.parametrize("args, message", [
    ([], "--data, --out and one of --init or --resume are required"),
    (["--math", "fp16"], "--math must be tf32 or fp32, not fp16"),
    (["--lr", "nan"], "--lr must be a finite number, not 'nan'"),
    (["--batch-size", "0"], "--batch-size must be an integer of at least 1, not '0'"),
    (["--batch-size", "3"], "8 samples leave a partial last batch of 2"),
    (["--frobnicate"], "unknown argument '--frobnicate'"),
    (["--checkpoint-every", "-1"], "--checkpoint-every must be an integer of at least 0, not '-1'"),
    (["--resume"], "one of --init or --resume are required"),  # both given
    (["--cache", "sometimes"], "--cache must be one of auto, keep, drop, not 'sometimes'"),
    (["--precision", "bf16"], "--precision bf16 runs on the graph-API path only: it needs --graph-api"),
    (["--precision", "bf16", "--graph-api", "--math", "fp32"], "it cannot be strict FP32 (--math fp32)"),
    (["--precision", "fp16", "--graph-api"], "--precision must be fp32 or bf16, not fp16"),
])
def test_bad_arguments_are_named_with_exit_2(build, inputs, tmp_path, args, message):
    required = ["--data", inputs / "data", "--init", inputs / "init", "--out", tmp_path / "o"] if args else []
    result = train(build, *required, *args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr


def test_bad_inputs_name_their_file(build, inputs, tmp_path):
    short = tmp_path / "short"
    short.mkdir()
    (short / "params.bin").write_bytes(b"\0" * 40)
    result = train(build, "--data", inputs / "data", "--init", short, "--out", tmp_path / "o")
    assert result.returncode == 2 and f"{short}/params.bin has 40 bytes" in result.stderr
    result = train(build, "--data", tmp_path, "--init", inputs / "init", "--out", tmp_path / "o")
    assert result.returncode == 2 and f"{tmp_path}/dataset.json: missing" in result.stderr
    data = tmp_path / "data"
    write_dataset(data, 8, 16, seed=1)
    (data / "clean.bin").write_bytes((data / "clean.bin").read_bytes()[:-4])
    result = train(build, "--data", data, "--init", inputs / "init", "--out", tmp_path / "o")
    assert result.returncode == 2 and f"{data}/clean.bin has {8 * 16 * 16 * 4 - 4} bytes" in result.stderr


@pytest.mark.skipif(gpu_status()[0], reason="a GPU is visible here: the GPU run is fortran_parity.py's")
def test_a_float16_set_is_read_as_train_reads_it(build, inputs, tmp_path):
    from cudnn_denoise.data.recast import recast_dataset

    half = recast_dataset(write_dataset(tmp_path / "data", 8, 16, seed=1), tmp_path / "half", "float16")
    result = train(build, "--data", half.noisy.parent, "--init", inputs / "init", "--out", tmp_path / "out")
    assert "data: 8 pairs of 16x16" in result.stdout  # accepted: widened on the GPU by the reader
    assert result.returncode == 2 and "no NVIDIA GPU" in result.stderr
    (half.noisy.parent / "clean.bin").write_bytes(half.clean.read_bytes()[:-2])
    result = train(build, "--data", half.noisy.parent, "--init", inputs / "init", "--out", tmp_path / "out")
    assert result.returncode == 2 and f"clean.bin has {8 * 16 * 16 * 2 - 2} bytes" in result.stderr


def test_resume_needs_a_checkpoint_in_out(build, inputs, tmp_path):
    result = train(build, "--data", inputs / "data", "--resume", "--out", tmp_path)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert f"--resume: {tmp_path}/checkpoint: no checkpoint (no manifest.json" in result.stderr


@pytest.mark.skipif(gpu_status()[0], reason="a GPU is visible here: the GPU run is fortran_parity.py's")
def test_init_takes_a_train_run_folder(build, inputs, tmp_path):
    run_folder = tmp_path / "run"
    run_folder.mkdir()
    checkpoint.save(run_folder / checkpoint.RUN_SUBFOLDER, params.init_params(3), step=5)
    result = train(build, "--data", inputs / "data", "--init", run_folder, "--out", tmp_path / "out")
    assert f"initial parameters from {run_folder}/checkpoint\n" in result.stdout
    assert result.returncode == 2 and "no NVIDIA GPU" in result.stderr  # got past --init


def test_it_is_linked_to_the_libraries_python_loads(build):
    from cudnn_denoise.bindings import load, load_cudart

    result = run(["ldd", build / "denoise_train"])
    for library in (*load(), load_cudart()):
        assert f"=> {library.path} " in result.stdout, result.stdout
    flags = fortran.link_flags()
    assert [f for f in flags if f.startswith("-l:")] == ["-l:libcudnn.so.9", "-l:libcublas.so.13",
                                                         "-l:libcudart.so.13"]


# ---- the algorithm table: Python writes, Fortran reads (and writes the same numbers back) ----

ROWS = [algorithm_table.Row(layer, direction, algo, f"ALGO_{algo}", workspace, math, f"MATH_{math}")
        for layer, direction, algo, workspace, math in [
            ("conv1", "forward", 1, 0, 2), ("conv1", "backward_filter", 3, 123456789012, 2),
            ("conv2", "forward", 7, 4096, 1), ("conv2", "backward_filter", 0, 0, 2),
            ("conv2", "backward_data", 5, 17, 3), ("conv3", "forward", 2, 1, 2),
            ("conv3", "backward_filter", 6, 0, 2), ("conv3", "backward_data", 4, 99, 2)]]


def built_program(name: str, build: Path, objects: list[str]) -> Path:
    """tests/fortran/NAME.f90 built in the build folder (not beside its source) with the port's libraries."""
    source = build / f"{name}.f90"
    shutil.copy(HERE / f"{name}.f90", source)
    return compile_program(source, build, objects, fortran.link_flags())


@pytest.fixture(scope="module")
def roundtrip(build):
    return built_program("table_roundtrip", build, ["denoise_algorithms.o", "denoise_check.o", "cudnn_interfaces.o"])


def test_fortran_reads_the_table_python_writes(roundtrip, tmp_path):
    written = algorithm_table.write(tmp_path / "algorithms.txt", ROWS, 4, 24, 32, "fp32", comment="a test")
    result = run([roundtrip, written, tmp_path / "back.txt", 4, 24, 32, "fp32"])
    assert result.returncode == 0, result.stderr
    header, rows = algorithm_table.read(tmp_path / "back.txt")
    assert header == {"batch": 4, "height": 24, "width": 32, "math": "fp32"}
    assert [r.numbers() for r in rows] == [r.numbers() for r in ROWS]


@pytest.mark.parametrize("change, message", [
    (lambda text: text.replace("height 24", "height 25"), "made for height 25, this run has 24"),
    (lambda text: text.replace("math fp32", "math tf32"), "made for --math tf32, not this run's fp32"),
    (lambda text: text.replace("conv2 backward_data", "conv2 sideways"), "cannot read the line 'conv2 sideways"),
    (lambda text: "\n".join(line for line in text.splitlines() if "conv3 forward" not in line),
     "names 7 of the 8 convolution directions"),
    (lambda text: text.replace("conv3 forward", "conv2 forward"), "names conv2 forward twice"),
    (lambda text: text + "conv1 backward_data 1 X 0 2 Y\n", "cannot read the line 'conv1 backward_data"),
])
def test_a_table_that_does_not_fit_is_refused_naming_the_file(roundtrip, tmp_path, change, message):
    path = tmp_path / "algorithms.txt"
    path.write_text(change(algorithm_table.format_table(ROWS, 4, 24, 32, "fp32")))
    result = run([roundtrip, path, tmp_path / "back.txt", 4, 24, 32, "fp32"])
    assert result.returncode == 2
    assert result.stderr.startswith(f"denoise_train: {path}: ") and message in result.stderr, result.stderr


def test_python_reads_back_what_it_writes_and_refuses_other_lines(tmp_path):
    path = algorithm_table.write(tmp_path / "t.txt", ROWS, 2, 8, 8, "tf32")
    assert algorithm_table.read(path) == ({"batch": 2, "height": 8, "width": 8, "math": "tf32"}, ROWS)
    path.write_text(path.read_text() + "conv1 upward 1\n")
    with pytest.raises(ValueError, match=r"t.txt:\d+: not a line of an algorithm table"):
        algorithm_table.read(path)


def test_rows_come_from_the_models_choices_in_search_order():
    from cudnn_denoise.layers.algorithms import Choice

    class Model:  # what rows() reads of a DenoiseCNN
        def algorithms(self):
            choice = lambda algo: Choice(algo, f"A{algo}", 10 * algo, 1, True, -1.0)  # noqa: E731
            return {"conv1": {"forward": choice(1), "backward_filter": choice(2)},
                    "conv2": {"backward_data": choice(5), "forward": choice(3), "backward_filter": choice(4)}}

    table = algorithm_table.rows(Model())
    assert [(r.layer, r.direction, r.algo, r.workspace, r.math_name) for r in table] == [
        ("conv1", "forward", 1, 10, "CUDNN_TENSOR_OP_MATH"), ("conv1", "backward_filter", 2, 20, "CUDNN_TENSOR_OP_MATH"),
        ("conv2", "forward", 3, 30, "CUDNN_TENSOR_OP_MATH"), ("conv2", "backward_filter", 4, 40, "CUDNN_TENSOR_OP_MATH"),
        ("conv2", "backward_data", 5, 50, "CUDNN_TENSOR_OP_MATH")]


# ---- dump's algorithm table: a cudnn dump holds its step's table beside the tensors ----

class ChoosingModel:  # what the dump's table reads of a DenoiseCNN: its choices and the GPU's name
    ctx = SimpleNamespace(gpu_name="Test GPU")

    def algorithms(self):
        from cudnn_denoise.layers.algorithms import Choice

        choices = {}
        for r in ROWS:
            choices.setdefault(r.layer, {})[r.direction] = Choice(r.algo, r.algo_name, r.workspace, r.math_type,
                                                                  True, -1.0)
        return choices


def reference_record() -> dict:
    """A record_step result in the dump's names and shapes (the reference backend's, batch 4 of 8 x 8)."""
    from cudnn_denoise.network.reference import ReferenceModel

    x = np.random.default_rng(0).random((4, 1, 8, 8), np.float32)
    return ReferenceModel(params.init_params(0)).record_step(x, x, 0.1)


def test_a_cudnn_dump_holds_its_algorithm_table_and_the_manifest_lists_it(roundtrip, tmp_path):
    from cudnn_denoise import dump
    from cudnn_denoise.port import dump_format

    out = tmp_path / "dump"
    tables = dump.algorithm_tables(ChoosingModel(), "cudnn", 4, 24, 32, "fp32")
    manifest = dump_format.write_dump(out, reference_record(), {}, tables)
    assert manifest["tables"] == [algorithm_table.FILE_NAME]
    assert json.loads((out / "manifest.json").read_text())["tables"] == [algorithm_table.FILE_NAME]
    header, rows = algorithm_table.read(out / algorithm_table.FILE_NAME)
    assert header == {"batch": 4, "height": 24, "width": 32, "math": "fp32"}
    assert rows == [algorithm_table.Row(r.layer, r.direction, r.algo, r.algo_name, r.workspace, r.math_type,
                                        rows[i].math_name) for i, r in enumerate(ROWS)]
    assert "# Test GPU, cuDNN " in (out / algorithm_table.FILE_NAME).read_text()
    assert sorted(p.name for p in out.iterdir()) == sorted(dump_format.dump_members(out))
    dump._check_out(out, overwrite=True)  # a dump with its table is still a dump --overwrite replaces
    # the Fortran program takes it as --algorithms
    result = run([roundtrip, out / algorithm_table.FILE_NAME, tmp_path / "back.txt", 4, 24, 32, "fp32"])
    assert result.returncode == 0, result.stderr
    # a reference dump over it chose no algorithms: the old table goes
    assert dump.algorithm_tables(ChoosingModel(), "reference", 4, 24, 32, "fp32") == {}
    assert dump_format.write_dump(out, reference_record(), {})["tables"] == []
    assert not (out / algorithm_table.FILE_NAME).exists()
    dump._check_out(out, overwrite=True)


def test_the_docs_list_the_files_a_dump_holds():
    from cudnn_denoise.port import dump_format

    doc = (HERE.parents[1] / "docs" / "fortran.md").read_text()
    item = doc[doc.index("- Dump (`python -m cudnn_denoise.dump`)"):]
    item = item[:item.index("\n- ") if "\n- " in item else item.index("\n\n")]
    for name in ("`<name>.bin`", f"`{dump_format.MANIFEST_FILE}`", f"`{algorithm_table.FILE_NAME}`", '`"tables"`'):
        assert name in item, name


def test_the_reference_trainer_writes_no_table(tmp_path):
    # the table is the cudnn backend's (its chosen algorithms); a NumPy run has none to write
    data = write_dataset(tmp_path / "data", 4, 16, seed=0)
    cli = [sys.executable, "-m", "cudnn_denoise.train", "--backend", "reference", "--data", data.noisy.parent,
           "--out", tmp_path / "run", "--max-steps", 1, "--batch-size", 2]
    assert run(cli).returncode == 0
    assert not (tmp_path / "run" / algorithm_table.FILE_NAME).exists()
    assert np.fromfile(tmp_path / "run" / "checkpoint" / "params.bin", "<f4").size == params.NUM_PARAMS


# ---- failures name the call and give the library's words ----

@pytest.fixture(scope="module")
def check_errors(build):
    return built_program("check_errors", build, ["denoise_check.o", "cudnn_interfaces.o"])


def test_a_failed_cudnn_call_ends_the_program_naming_it_with_cudnns_message(check_errors):
    result = run([check_errors, "cudnn"])
    assert result.returncode == 1
    assert result.stderr.startswith("denoise_train: cudnnSetTensor4dDescriptor (test) failed: "
                                    "CUDNN_STATUS_BAD_PARAM (2000): ")
    assert "<= 0" in result.stderr  # cudnnGetLastErrorString's explanation, as Python's CudnnError has it
    assert len(result.stderr.splitlines()) == 1 and "Backtrace" not in result.stderr


def test_a_failed_cublas_status_is_named_with_cublas_words(check_errors):
    result = run([check_errors, "cublas"])
    assert result.returncode == 1
    assert result.stderr.startswith("denoise_train: cublasSaxpy_v2 (test) failed: CUBLAS_STATUS_INVALID_VALUE (7): ")
    assert result.stderr.strip().endswith(": an unsupported value or parameter was passed to the function")


@pytest.mark.skipif(gpu_status()[0], reason="a GPU is visible here: cudaGetDeviceCount succeeds")
def test_a_failed_cuda_call_names_the_runtimes_error(check_errors):
    result = run([check_errors, "cuda"])
    assert result.returncode == 1
    assert result.stderr.startswith("denoise_train: cudaGetDeviceCount (test) failed: cudaError")
    assert "(35): " in result.stderr or "(100): " in result.stderr
