"""sources.expand: files, folders and patterns, and the symlinks among them that lead nowhere."""

from __future__ import annotations

import os

import pytest

from cudnn_denoise.micrographs import sources


@pytest.fixture
def folder(tmp_path):
    """good.mrc, a dangling gone.mrc, and loop.mrc pointing at itself."""
    d = tmp_path / "in"
    d.mkdir()
    (d / "good.mrc").write_bytes(b"x")
    os.symlink(d / "missing.mrc", d / "gone.mrc")
    os.symlink(d / "loop.mrc", d / "loop.mrc")
    return d


def _reasons(problems):
    return {line.split(": ", 1)[0].rsplit("/", 1)[-1]: line.split(": ", 1)[1] for line in problems}


@pytest.mark.parametrize("how", ["folder", "glob", "files"])
def test_dangling_and_looping_symlinks_are_named_with_why(folder, how):
    specs = {"folder": [str(folder)], "glob": [str(folder / "*.mrc")],
             "files": [str(folder / name) for name in ("gone.mrc", "good.mrc", "loop.mrc")]}[how]
    files, problems = sources.expand(specs)
    assert files == [folder / "good.mrc"]
    reasons = _reasons(problems)
    assert set(reasons) == {"gone.mrc", "loop.mrc"}, problems
    assert reasons["gone.mrc"].startswith("a dangling symlink (to ") and "missing.mrc" in reasons["gone.mrc"]
    assert reasons["loop.mrc"].startswith("a symlink loop")


def test_a_folder_of_only_broken_symlinks_names_each(folder):
    (folder / "good.mrc").unlink()
    files, problems = sources.expand([str(folder)])
    assert files == [] and set(_reasons(problems)) == {"gone.mrc", "loop.mrc"}
