"""train's run.log (what it printed, appended to on resume, nothing before its folder exists) and
its validation PSNR on the value range that the held-out set's dataset.json gives; the log's tee
on its own (progress bars left out, an internal error's traceback kept)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from cudnn_denoise.userio import runlog
from cudnn_denoise import train

CPU = ("--backend", "reference")


def test_train_writes_what_it_prints_to_run_log_and_appends_on_resume(cli, data32, tmp_path):
    out = tmp_path / "run"
    first = cli(train.main, "--data", data32.noisy.parent, *CPU, "--out", out, "--max-steps", 3)
    assert first.code == 0, first.err
    header, *lines = (out / "run.log").read_text().splitlines()
    assert header.startswith("=== ") and "python -m cudnn_denoise.train --data " in header
    assert lines == first.out.splitlines() and first.err == ""
    again = cli(train.main, "--data", data32.noisy.parent, *CPU, "--out", out, "--max-steps", 6,
                "--resume")
    assert again.code == 0, again.err
    log = (out / "run.log").read_text()
    assert log.count("=== ") == 2 and log.endswith(again.out)


def test_no_run_log_where_train_stopped_before_its_output_folder(cli, tmp_path):
    result = cli(train.main, "--data", tmp_path / "missing", *CPU, "--out", tmp_path / "run")
    assert result.code == 2
    assert not (tmp_path / "run").exists()


def with_range(dataset, value_range):
    """The dataset's folder after its dataset.json says value_range (the values stay in [0, 1])."""
    path = dataset.noisy.parent / "dataset.json"
    meta = json.loads(path.read_text())
    meta["value_range"] = value_range
    path.write_text(json.dumps(meta))
    return dataset.noisy.parent


def metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_validation_psnr_uses_the_data_range_of_dataset_json(cli, data32, make_data, tmp_path):
    val = with_range(make_data(8, seed=4, name="val"), [0.0, 2.0])
    out = tmp_path / "run"
    result = cli(train.main, "--data", data32.noisy.parent, "--val-data", val, *CPU, "--out", out,
                 "--max-steps", 4, "--log-every", 4)
    assert result.code == 0, result.err
    row = metrics(out)[-1]
    assert row["val_psnr"] == pytest.approx(10 * math.log10(2.0**2 / row["val_loss"]), rel=1e-12)
    assert row["val_data_range"] == 2.0
    assert f"R = 2: the data range [0, 2] ({val / 'dataset.json'})" in result.out
    assert "(data range 2)" in result.out


def test_without_dataset_json_the_range_is_the_formats(cli, data32, make_data, tmp_path):
    val = make_data(8, seed=4, name="val")
    (val.noisy.parent / "dataset.json").unlink()
    out = tmp_path / "run"
    result = cli(train.main, "--data", data32.noisy.parent, "--val-noisy", val.noisy, "--val-clean",
                 val.clean, "--val-patch-size", 32, *CPU, "--out", out, "--max-steps", 4,
                 "--log-every", 4)
    assert result.code == 0, result.err
    row = metrics(out)[-1]
    assert row["val_psnr"] == pytest.approx(10 * math.log10(1.0 / row["val_loss"]), rel=1e-12)
    assert "the data range [0, 1] (the format's," in result.out


@pytest.mark.parametrize("bad", [[1.0, 0.0], [0.0], "0 1", [0.0, float("inf")], [False, True]])
def test_a_malformed_value_range_is_a_one_line_error(cli, data32, make_data, tmp_path, bad):
    val = with_range(make_data(8, seed=4, name="val"), bad)
    result = cli(train.main, "--data", data32.noisy.parent, "--val-data", val, *CPU,
                 "--out", tmp_path / "run", "--max-steps", 1)
    assert result.code == 2
    said = result.one_line_error()
    assert f"{val / 'dataset.json'}: value_range must be two finite numbers" in said or (
        f"{val / 'dataset.json'}: is not valid JSON (Infinity is not a JSON number)" in said)


def test_the_tee_leaves_out_progress_bars_and_keeps_a_traceback(tmp_path, capsys):
    with pytest.raises(ZeroDivisionError), runlog.capture("prog", ["--flag", "a b"]):
        print("before the folder")
        runlog.attach(tmp_path / "run.log")
        sys.stderr.write("\r[#####     ] 5/10\x1b[K")
        print("after", file=sys.stderr)
        1 / 0  # noqa: B018
    log = (tmp_path / "run.log").read_text()
    assert log.splitlines()[0].endswith(" prog --flag 'a b' (cudnn_denoise 0.1.0)")
    assert log.splitlines()[1:3] == ["before the folder", "after"]
    assert "Traceback" in log and "ZeroDivisionError: division by zero" in log
    assert "\r" not in log
    assert capsys.readouterr().err.startswith("\r[#####")  # the terminal still gets the bar
    runlog.attach(tmp_path / "other.log")  # outside capture(): nothing
    assert not (tmp_path / "other.log").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (every write: ENOSPC)")
def test_a_run_log_on_a_full_disk_does_not_stop_the_command(capsys):
    with runlog.capture("prog", []):
        print("before the log")
        runlog.attach(Path("/dev/full"))  # the file opens; every write fails with ENOSPC
        print("after the log")
    assert capsys.readouterr().out == "before the log\nafter the log\n"
