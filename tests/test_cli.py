"""The installed command: pyproject's [project.scripts] entry, every subcommand with --version and
its own --help, the `python -m` forms, and the one-line errors of the dispatcher."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cudnn_denoise import __version__, cli

ROOT = Path(__file__).resolve().parents[1]
SUBCOMMANDS = {"train": "train", "denoise": "denoise", "make-dataset": "make_dataset",
               "dump": "dump", "plan": "plan", "fortran": "fortran", "compare": "compare"}


def test_pyproject_installs_one_command_with_a_subcommand_per_program():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"cudnn-denoise": "cudnn_denoise.cli:main"}
    assert set(cli.COMMANDS) == set(SUBCOMMANDS)


def run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_version_on_each_subcommand_both_ways(command):
    for args in (("-m", "cudnn_denoise", command, "--version"),
                 ("-m", f"cudnn_denoise.{SUBCOMMANDS[command]}", "--version")):
        done = run(*args)
        said = (done.returncode, done.stdout, done.stderr)
        assert said == (0, f"cudnn_denoise {__version__}\n", ""), args


def test_the_command_itself(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"cudnn_denoise {__version__}\n"
    assert cli.main(["--help"]) == 0
    listing = capsys.readouterr().out
    for command in SUBCOMMANDS:
        assert f"\n  {command} " in listing
    assert cli.main([]) == 2
    assert capsys.readouterr().err.startswith("usage: cudnn-denoise COMMAND")
    assert cli.main(["trian"]) == 2
    assert capsys.readouterr().err == ("cudnn-denoise: error: unknown command 'trian'; choose "
                                       "from train, denoise, make-dataset, dump, plan, fortran, "
                                       "compare\n")


def test_subcommand_help_names_the_installed_command(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["make-dataset", "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("usage: cudnn-denoise make-dataset ")
    with pytest.raises(SystemExit):
        cli.main(["plan", "--batch-size", "x"])
    err = capsys.readouterr().err
    assert err.startswith("cudnn-denoise plan: error: argument --batch-size") and "(see cudnn-denoise plan --help)" in err
    assert cli.prog("train") == "python -m cudnn_denoise.train"  # outside the command, as before


def test_a_subcommand_runs_with_its_arguments(capsys):
    assert cli.main(["plan", "--batch-size", "2", "--patch-size", "8"]) == 0
    assert "cudnnConvolutionForward" in capsys.readouterr().out


def bad_inputs(tmp: Path) -> dict[str, list[str]]:
    """A command line per program that names a missing file (plan, which reads none: a shape over
    a C int)."""
    missing = str(tmp / "missing")
    return {"train": ["--data", missing, "--backend", "reference", "--out", str(tmp / "run")],
            "denoise": [missing, "--checkpoint", missing, "--backend", "reference", "-o", str(tmp / "d")],
            "make-dataset": ["--out", str(tmp / "set"), "--from-mrc", missing],
            "dump": ["--checkpoint", missing, "--data", missing, "--index", "0", "--out", str(tmp / "u")],
            "plan": ["--batch-size", "2147483647"],
            "fortran": ["--doc", missing],
            "compare": [missing, missing]}


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_error_line_begins_with_the_program_as_it_was_typed(command, tmp_path, capsys):
    """argparse's errors and the programs' own, run as `cudnn-denoise COMMAND` and as the module:
    one line, `PROG: error: ...`, exit 2."""
    module = importlib.import_module(f"cudnn_denoise.{SUBCOMMANDS[command]}")
    ways = {f"cudnn-denoise {command}": lambda args: cli.main([command, *args]),
            f"python -m cudnn_denoise.{SUBCOMMANDS[command]}": module.main}
    for prog, main in ways.items():
        for args in (["--no-such-flag"], bad_inputs(tmp_path)[command]):
            capsys.readouterr()
            try:
                code = main(args)
            except SystemExit as exc:
                code = exc.code
            err = capsys.readouterr().err
            assert code == 2 and "Traceback" not in err, (prog, args, err)
            assert err.splitlines()[-1].startswith(f"{prog}: error: "), (prog, args, err)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_names_the_program_only_as_it_was_typed(command, capsys):
    """--help under the installed command never says `python -m cudnn_denoise.<module>` (the
    descriptions began with it), nor the module's help the installed command."""
    module = importlib.import_module(f"cudnn_denoise.{SUBCOMMANDS[command]}")
    for prog, main, other in ((f"cudnn-denoise {command}", lambda args: cli.main([command, *args]),
                               "python -m cudnn_denoise"),
                              (cli.prog(SUBCOMMANDS[command]), module.main, "cudnn-denoise")):
        with pytest.raises(SystemExit) as done:
            main(["--help"])
        out = capsys.readouterr().out
        assert done.value.code == 0 and out.startswith(f"usage: {prog} "), out
        assert other not in out, out


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_out_option_has_the_short_form_o(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    if "--out" in out:
        assert re.search(r"^  -o \S+, --out \S+", out, re.MULTILINE), out


def test_plan_spells_each_quantity_as_train_does():
    """plan lays out a training step: its flags are train's (--batch-size, --patch-size, --lr,
    ...), one name per quantity; --keep-intermediates, the dump's buffers, is plan's own."""
    from cudnn_denoise import plan, train

    flags = {f for f in plan.parser()._option_string_actions if f.startswith("--")}
    assert flags - {"--keep-intermediates"} <= set(train.parser()._option_string_actions)


def test_a_program_runs_by_its_module_name_too(capsys):
    """`cudnn-denoise make_dataset`, as the docs' `python -m cudnn_denoise.make_dataset` spells it:
    the same program, named in its errors as typed."""
    for typed in ("make-dataset", "make_dataset"):
        with pytest.raises(SystemExit) as done:
            cli.main([typed, "--samples", "0"])
        assert done.value.code == 2
        assert capsys.readouterr().err.startswith(f"cudnn-denoise {typed}: error: argument --samples")
    assert cli.main(["make dataset"]) == 2
