"""Fixtures of the CLI tests: small synthetic datasets and in-process CLI runs (cli_support.py
holds the plain helpers)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from cudnn_denoise import cli as command
from cudnn_denoise.data.synthetic import write_dataset


@dataclass
class Result:
    """What one in-process CLI run returned and printed."""

    code: int
    out: str
    err: str
    prog: str  # the program's name, which begins its error lines

    def one_line_error(self) -> str:
        """stderr's single line, checked to be one `PROG: error: ...` line without a traceback;
        returned without its `PROG: `."""
        assert "Traceback" not in self.err, self.err
        lines = self.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{self.prog}: error: "), self.err
        return lines[0][len(f"{self.prog}: "):]


@pytest.fixture
def cli(capsys):
    """run(main, *args) -> Result: a CLI's main() called in this process, its output captured."""

    def run(main, *args) -> Result:
        capsys.readouterr()  # drop what came before
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse: a bad argument (code 2) or --help (0)
            code = exc.code
        out, err = capsys.readouterr()
        return Result(code, out, err, command.prog(main.__module__.rsplit(".", 1)[1]))

    return run


@pytest.fixture(scope="session")
def data64(tmp_path_factory):
    """40 synthetic pairs of 64 x 64 (10 batches of 4): read only, shared by the tests."""
    return write_dataset(tmp_path_factory.mktemp("data64"), 40, 64, seed=0)


@pytest.fixture
def make_data(tmp_path):
    """Factory: write `samples` synthetic pairs of size x size into tmp_path/name and open them."""

    def make(samples: int, size: int = 32, seed: int = 2, name: str = "data"):
        return write_dataset(tmp_path / name, samples, size, seed)

    return make
