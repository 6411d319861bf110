"""compare: ULP and relative distances between two runs, the report, and its exit status."""

import os

import numpy as np
import pytest

from cudnn_denoise import compare, params


def step_up(value, times: int) -> np.float32:
    """The float32 `times` representable values above value (np.nextafter, one at a time)."""
    x = np.float32(value)
    for _ in range(times):
        x = np.nextafter(x, np.float32(np.inf))
    return x


@pytest.mark.parametrize("a, b, ulps", [
    (1.0, 1.0, 0),
    (1.0, step_up(1.0, 1), 1),
    (1.0, step_up(1.0, 7), 7),
    (0.0, -0.0, 0),  # the same number
    (-np.float32(1e-45), np.float32(1e-45), 2),  # across zero: -tiny, 0, +tiny
    (-1.0, step_up(-1.0, 3), 3),
    (np.finfo(np.float32).max, np.inf, 1),
])
def test_ulp_distance_counts_the_float32_values_between(a, b, ulps):
    got = compare.ulp_distance(np.array([a], np.float32), np.array([b], np.float32))
    assert got.tolist() == [ulps]
    assert compare.ulp_distance(np.array([b], np.float32), np.array([a], np.float32)).tolist() == [ulps]


def test_nan_has_no_ulp_distance_and_no_relative_one():
    a, b = np.array([np.nan, 1.0], np.float32), np.array([np.nan, 1.0], np.float32)
    assert compare.ulp_distance(a, b).tolist() == [-1, 0]
    assert np.isnan(compare.relative_difference(a, b)[0])


def write_run(folder, losses, values, in_checkpoint: bool):
    folder.mkdir()
    (folder / "losses.tsv").write_text("".join(f"{s}\t{v:.9g}\n" for s, v in losses.items()))
    target = folder / "checkpoint" if in_checkpoint else folder
    target.mkdir(exist_ok=True)
    values.astype("<f4").tofile(target / "params.bin")
    return folder


@pytest.fixture
def runs(tmp_path):
    values = params.init_params(3)
    losses = {1: 0.25, 2: 0.125, 3: float(np.float32(0.1))}
    return tmp_path, losses, values


def test_identical_runs_pass_with_every_tensor_reported(runs, capsys):
    tmp_path, losses, values = runs
    a = write_run(tmp_path / "python", losses, values, in_checkpoint=True)  # train's layout
    b = write_run(tmp_path / "fortran", losses, values, in_checkpoint=False)  # denoise_train's
    assert compare.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "losses: 3 steps in A, 3 in B, 3 compared" in out
    assert all(name in out for name in params.views(values))
    assert out.strip().endswith("verdict: identical (0 ULP in every loss and parameter)")


def test_a_difference_is_found_counted_and_placed(runs, capsys):
    tmp_path, losses, values = runs
    a = write_run(tmp_path / "a", losses, values, in_checkpoint=True)
    changed = values.copy()
    index = params.views(np.arange(params.NUM_PARAMS))["conv2.weight"][3, 5, 2, 1]
    changed[index] = step_up(changed[index], 4)
    later = dict(losses)
    later[2] = float(step_up(losses[2], 1))
    b = write_run(tmp_path / "b", later, changed, in_checkpoint=False)
    assert compare.main([str(a), str(b)]) == compare.EXIT_DIFFERENT
    out = capsys.readouterr().out
    assert "worst 4 ULP at conv2.weight[3,5,2,1]" in out
    assert f"worst 4 ULP at conv2.weight (flat {index})" in out
    assert "worst 1 ULP at step 2" in out
    assert "verdict: DIFFERENT (worst 4 ULP" in out
    relative = (float(changed[index]) - float(values[index])) / abs(float(changed[index]))
    assert compare.main([str(a), str(b), "--rtol", str(abs(relative) * 1.01)]) == 0
    assert "verdict: within --rtol" in capsys.readouterr().out
    assert compare.main([str(a), str(b), "--rtol", str(abs(relative) * 0.99)]) == compare.EXIT_DIFFERENT


def test_runs_that_logged_other_steps_differ(runs, capsys):
    tmp_path, losses, values = runs
    a = write_run(tmp_path / "a", losses, values, in_checkpoint=True)
    b = write_run(tmp_path / "b", {1: losses[1], 2: losses[2]}, values, in_checkpoint=True)
    assert compare.main([str(a), str(b), "--rtol", "1"]) == compare.EXIT_DIFFERENT
    assert "the runs logged different steps" in capsys.readouterr().out


def test_an_unreadable_run_is_named_with_exit_2(runs, capsys):
    tmp_path, losses, values = runs
    a = write_run(tmp_path / "a", losses, values, in_checkpoint=True)
    assert compare.main([str(a), str(tmp_path / "missing")]) == 2
    assert "missing: no params.bin" in capsys.readouterr().err
    bad = write_run(tmp_path / "bad", losses, values[:-1], in_checkpoint=False)
    assert compare.main([str(a), str(bad)]) == 2
    assert f"{bad}/params.bin: {4 * (params.NUM_PARAMS - 1)} bytes" in capsys.readouterr().err
    (a / "losses.tsv").write_text("1\t0.5\nstep two\n")
    assert compare.main([str(a), str(a)]) == 2
    assert "losses.tsv:2: not `step<TAB>loss`" in capsys.readouterr().err


@pytest.mark.parametrize("fault, message", [
    ("losses.tsv not text", "losses.tsv: not a losses.tsv (byte 0xff at offset 0 is not text)"),
    ("params.bin a FIFO", "no params.bin in it or in its checkpoint/"),
    ("--rtol nan", "argument --rtol: must be a finite number >= 0, not 'nan'"),
])
def test_unusable_runs_and_flags_are_one_line(tmp_path, capsys, fault, message):
    values = params.init_params(0)
    for name in ("a", "b"):
        write_run(tmp_path / name, {1: 0.5}, values, in_checkpoint=False)
    extra = []
    if fault == "losses.tsv not text":
        (tmp_path / "a" / "losses.tsv").write_bytes(b"\xff\xfe\n")
    elif fault == "params.bin a FIFO":
        (tmp_path / "a" / "params.bin").unlink()
        os.mkfifo(tmp_path / "a" / "params.bin")  # not is_file(): never opened, never waited on
    else:
        extra = ["--rtol", "nan"]
    try:
        code = compare.main([str(tmp_path / "a"), str(tmp_path / "b"), *extra])
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("python -m cudnn_denoise.compare: error: ") and message in err, err


@pytest.mark.parametrize("where", ["A", "both"])
def test_a_nan_parameter_never_passes_and_is_placed(runs, capsys, where):
    tmp_path, losses, values = runs
    bad = values.copy()
    bad[5] = np.nan
    a = write_run(tmp_path / "a", losses, bad, in_checkpoint=True)
    b = write_run(tmp_path / "b", losses, bad if where == "both" else values, in_checkpoint=True)
    for rtol in ([], ["--rtol", "1e-6"], ["--rtol", "1e30"]):
        assert compare.main([str(a), str(b), *rtol]) == compare.EXIT_DIFFERENT
        out = capsys.readouterr().out
        verdict = out.splitlines()[-1]
        assert verdict.startswith("verdict: DIFFERENT: NaN at conv1.weight[0,0,1,2] in "
                                  f"{'A' if where == 'A' else 'A and B'}"), out
        assert "within" not in out


def test_a_nan_loss_never_passes(runs, capsys):
    tmp_path, losses, values = runs
    a = write_run(tmp_path / "a", {**losses, 2: float("nan")}, values, in_checkpoint=True)
    b = write_run(tmp_path / "b", losses, values, in_checkpoint=True)
    assert compare.main([str(a), str(b), "--rtol", "1"]) == compare.EXIT_DIFFERENT
    assert capsys.readouterr().out.splitlines()[-1].startswith(
        "verdict: DIFFERENT: NaN at step 2 in A")


def test_a_step_logged_twice_is_a_broken_run(runs, capsys):
    tmp_path, losses, values = runs
    a = write_run(tmp_path / "a", losses, values, in_checkpoint=True)
    b = write_run(tmp_path / "b", losses, values, in_checkpoint=True)
    with open(b / "losses.tsv", "a") as file:
        file.write("2\t0.125\n")
    assert compare.main([str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert err == (f"python -m cudnn_denoise.compare: error: {b / 'losses.tsv'}:4: step 2 logged again (first at line 2): "
                   "a broken run, not one to compare\n")


def test_different_has_an_exit_code_no_other_program_gives(capsys):
    """1 is an internal error in every program; compare's "different" is a code of its own, in its
    --help."""
    import re

    from cudnn_denoise import denoise, dump, make_dataset, train

    others = {int(code) for module in (train, denoise, make_dataset, dump)
              for code in re.findall(r"^  (\d+) ", module.EXIT_CODES, re.MULTILINE)}
    assert 1 in others and compare.EXIT_DIFFERENT not in others
    with pytest.raises(SystemExit):
        compare.main(["--help"])
    assert f"\n  {compare.EXIT_DIFFERENT}    different" in capsys.readouterr().out
