"""console.plural: the one way the programs count things in their output."""

from __future__ import annotations

import ast
import inspect

import pytest

from cudnn_denoise import compare, denoise, dump, make_dataset
from cudnn_denoise.userio.console import plural


def test_plural():
    assert [plural(n, "pair") for n in (0, 1, 2)] == ["0 pairs", "1 pair", "2 pairs"]
    assert [plural(n, "patch", "patches") for n in (1, 6)] == ["1 patch", "6 patches"]


@pytest.mark.parametrize("module", [denoise, make_dataset, compare, dump], ids=lambda m: m.__name__)
def test_no_program_prints_a_noun_with_s_in_brackets(module):
    """`input(s)` reads as a shrug: the programs count with plural()."""
    nodes = list(ast.walk(ast.parse(inspect.getsource(module))))
    docstrings = {ast.get_docstring(node, clean=False) for node in nodes
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))}
    strings = [node.value for node in nodes if isinstance(node, ast.Constant)
               and isinstance(node.value, str) and node.value not in docstrings]
    assert not [s for s in strings if "(s)" in s]


def test_one_pair_is_one_pair(tmp_path, capsys):
    assert make_dataset.main(["-o", str(tmp_path / "one"), "--samples", "1", "--size", "16"]) == 0
    assert capsys.readouterr().out.startswith("wrote 1 pair of 16x16 float32 to ")
