"""denoise_train's --val-data text without a GPU: module denoise_val_text (the held-out set's
baseline, its noisy inputs' MSE and PSNR, and the validation lines' formats) built into a driver
and compared with what train prints and computes (the GPU run of the whole program against train
is benchmarks/fortran_parity.py's)."""

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from test_denoise_train import built_program
from test_fortran import build, run  # noqa: F401 (build: the Makefile's build, a fixture)

from cudnn_denoise import train
from cudnn_denoise.data.recast import recast_dataset
from cudnn_denoise.data.stats import input_mse
from cudnn_denoise.data.synthetic import write_dataset
from cudnn_denoise.training.loop import versus_baseline

OBJECTS = ["denoise_val_text.o", "denoise_dataset_meta.o", "denoise_json.o", "denoise_check.o",
           "cudnn_interfaces.o", "cudnn_denoise_dataset.o"]


@pytest.fixture(scope="module")
def val_text(build):  # noqa: F811 (the fixture imported above)
    return built_program("val_text", build, OBJECTS)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """A training set of 8 pairs and held-out sets: 6 pairs (float32, float16), 1 pair, 37 pairs (3 chunks of input_mse, the
    last partial) with a value_range of its own."""
    root = tmp_path_factory.mktemp("val_text")
    six = write_dataset(root / "six", 6, 16, seed=9)
    ranged = write_dataset(root / "ranged", 37, 16, seed=3)
    meta = json.loads((root / "ranged" / "dataset.json").read_text())
    meta["value_range"] = [-0.25, 2.5e-5]
    (root / "ranged" / "dataset.json").write_text(json.dumps(meta))
    return {"train": write_dataset(root / "train", 8, 16, seed=1), "six": six, "half": recast_dataset(six, root / "half", "float16"),
            "one": write_dataset(root / "one", 1, 16, seed=4), "ranged": ranged}


def fortran_lines(val_text, folder, tmp_path, pairs=()):
    values = tmp_path / "values.bin"
    np.asarray(pairs, dtype="=f8").tofile(values)
    result = run([val_text, folder, values])
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("name", ["six", "half", "one", "ranged"])
def test_the_start_line_and_baseline_are_trains(val_text, sets, tmp_path, capsys, name):
    folder = sets[name].noisy.parent
    start, mse, *_ = fortran_lines(val_text, folder, tmp_path)
    assert float(mse) == pytest.approx(input_mse(sets[name]), rel=1e-13)
    code = train.main(["--data", str(sets["train"].noisy.parent), "--val-data", str(folder), "--backend",
                       "reference", "--out", str(tmp_path / "run"), "--max-steps", "0"])
    assert code == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("validation: ")]
    assert printed == [start]


def test_the_line_formats_are_pythons(val_text, sets, tmp_path):
    rng = np.random.default_rng(0)
    values = [0.0, -0.0, 1.0, 255.0, 65535.0, 1e6, 999999.5, 123456.7, 1e-4, 9.99999e-5, 1e-5, 2.5e-5,
              1 / 3, -0.25, 0.5, 0.005, 0.015, 0.125, -0.004, 1e100, 1e-100, -2.5e-7, math.inf, -math.inf,
              math.nan, *(rng.standard_normal(300) * 10.0 ** rng.integers(-8, 9, 300)),
              *rng.uniform(5, 40, 100)]
    baselines = [*rng.uniform(5, 40, len(values) - 2), 12.345, math.inf]
    pairs = [v for pair in zip(values, baselines) for v in pair]
    lines = fortran_lines(val_text, sets["one"].noisy.parent, tmp_path, pairs)[2:]
    expected = [f"{a:g}|{a:.4f}|{a:+.2f}|{versus_baseline({'val_psnr': a, 'val_baseline_psnr': b})}"
                for a, b in zip(values, baselines)]
    assert len(lines) == len(expected)
    different = [(f, e) for f, e in zip(lines, expected) if f != e]
    assert not different, f"{len(different)} differ: (Fortran, Python) {different[:5]}"


def test_a_value_range_of_its_own_sets_r_and_the_baseline(val_text, sets, tmp_path):
    start, mse, *_ = fortran_lines(val_text, sets["ranged"].noisy.parent, tmp_path)
    peak = 2.5e-5 + 0.25
    assert f"R = {peak:g}: the data range [-0.25, 2.5e-05] (" in start
    assert start.endswith(f"baseline (noisy input) {10 * math.log10(peak * peak / float(mse)):.2f} dB")
    assert start.startswith("validation: 37 held-out pairs, ")


def test_the_parity_benchmark_compares_the_whole_validation_lines(sets, tmp_path, capsys):
    """benchmarks/fortran_parity.py's validation_lines on train's own output (10 held-out pairs,
    batches of 4, 4 and 2): the start line and the final one whole, each log line from "val loss"."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "fortran_parity.py"
    spec = importlib.util.spec_from_file_location("fortran_parity", path)
    parity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parity)
    assert parity.VAL_PAIRS % parity.BATCH != 0  # the GPU run scores a partial batch
    held_out = write_dataset(tmp_path / "val", parity.VAL_PAIRS, 16, seed=2)
    code = train.main(["--data", str(sets["train"].noisy.parent), "--val-data", str(held_out.noisy.parent),
                       "--backend", "reference", "--out", str(tmp_path / "run"), "--max-steps", "8",
                       "--log-every", "4", "--batch-size", str(parity.BATCH)])
    assert code == 0
    lines = parity.validation_lines(capsys.readouterr().out)
    assert len(lines) == 4, lines
    assert lines[0].startswith(f"validation: {parity.VAL_PAIRS} held-out pairs, ")
    assert lines[0].endswith(" dB") and "; baseline (noisy input) " in lines[0]
    assert all(re.fullmatch(r"val loss \d\.\d{4}  PSNR [\d.]+ dB \([+-][\d.]+ dB: (not )?above the noisy "
                            r"input\)", line) for line in lines[1:3]), lines
    assert lines[3].startswith("validation: loss ") and lines[3].endswith("(data range 1)")


def test_the_help_says_every_pair_is_scored_beside_the_noisy_input(build):  # noqa: F811 (a fixture)
    result = run([build / "denoise_train", "--help"])
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "--val-data: a held-out set, every pair scored at each log line (val loss; PSNR against " \
           "the noisy input's)." in text
