"""The package's layout: every module imports on the CPU, every folder ships in the wheel, and the
format names that look like module paths keep their spelling when modules move."""

import importlib
import pkgutil
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import cudnn_denoise

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cudnn_denoise"


def modules():
    """Every module but __main__, which runs the command when imported."""
    found = pkgutil.walk_packages(cudnn_denoise.__path__, "cudnn_denoise.")
    return sorted(m.name for m in found if m.name != "cudnn_denoise.__main__")


@pytest.mark.parametrize("name", modules())
def test_every_module_imports_without_a_gpu(name):
    """Imports inside functions run only on a GPU or at call time; a module that names a moved
    module at its top fails here, and its lazy imports are resolved by test_lazy_imports_resolve."""
    importlib.import_module(name)


def test_lazy_imports_resolve():
    """Every `from X import Y` of the package, at any depth in any function, names a module that
    exists and a name that it defines (or a submodule)."""
    import ast

    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        package = parts if parts[-1] == "__init__" else parts[:-1]
        package = [p for p in package if p != "__init__"]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package[: len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "cudnn_denoise":
                base = node.module.split(".")
            else:
                continue
            module = importlib.import_module(".".join(base))
            for alias in node.names:
                if not hasattr(module, alias.name):
                    try:
                        importlib.import_module(".".join(base + [alias.name]))
                    except ModuleNotFoundError:
                        missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {'.'.join(base)}.{alias.name}")
    assert not missing, missing


def test_top_level_holds_the_programs_and_the_shared_formats():
    """The rule for the top level: programs, the command, the parameter spec and the checkpoint."""
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert top == ["__init__", "__main__", "checkpoint", "cli", "compare", "denoise", "dump",
                   "fortran", "make_dataset", "params", "plan", "train"]


def test_every_package_folder_ships_in_the_wheel(tmp_path):
    """Built from a copy without the egg-info of an earlier install, whose file list setuptools
    would otherwise take as package data and so hide a folder missing from the configuration."""
    source = tmp_path / "source"
    shutil.copytree(PACKAGE, source / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(source)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("cudnn_denoise-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    folders = [p.parent.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("__init__.py")]
    assert len(folders) > 1
    absent = [f for f in folders if f"{f}/__init__.py" not in shipped]
    assert not absent, f"package folders missing from the wheel: {absent}"
    modules_on_disk = {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py")}
    assert modules_on_disk <= shipped


def test_format_names_keep_their_spelling():
    """Files written by earlier versions carry these strings; they name formats, not modules, and
    must not follow a module that moves."""
    from cudnn_denoise import checkpoint
    from cudnn_denoise.data import format, micrographs, synthetic
    from cudnn_denoise.layers import algorithm_cache
    from cudnn_denoise.port import dump_format
    from cudnn_denoise.userio import outdir

    assert checkpoint.FORMAT == "cudnn_denoise.checkpoint"
    assert dump_format.FORMAT == "cudnn_denoise.dump"
    assert format.META_FORMAT == "cudnn_denoise.dataset"
    assert micrographs.GENERATOR == "cudnn_denoise.data.micrographs"
    assert synthetic.SyntheticPatches(size=16, seed=0).settings["generator"] == "cudnn_denoise.data.synthetic"
    assert algorithm_cache.FORMAT == "cudnn_denoise.algorithms/1"
    assert outdir.LOCK_NAME == ".cudnn_denoise.lock"
