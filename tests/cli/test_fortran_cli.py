"""The fortran program's --out and --doc on what they cannot use: one error line naming the argument,
exit 2, no traceback, and the named file or folder left as it was."""

from __future__ import annotations

import os

import pytest

from cudnn_denoise import fortran
from cudnn_denoise.port.fortran_source import STEP_MARKER


def test_out_onto_a_file_is_refused(cli, tmp_path):
    target = tmp_path / "file"
    target.write_text("mine")
    result = cli(fortran.main, "--out", target)
    assert result.code == 2
    assert result.one_line_error() == f"error: --out {target}: exists and is not a folder"
    assert target.read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_onto_a_read_only_folder_is_refused(cli, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        result = cli(fortran.main, "--out", folder)
    finally:
        folder.chmod(0o755)
    assert result.code == 2
    assert result.one_line_error().startswith(f"error: --out {folder}: permission denied")
    assert not list(folder.iterdir())


def test_out_that_cannot_be_written_is_refused(cli, tmp_path, monkeypatch):
    # as a read-only folder answers a non-root user (root writes anywhere, so the refusal is simulated)
    def refuse(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(type(tmp_path), "write_bytes", refuse)
    result = cli(fortran.main, "--out", tmp_path / "ro")
    assert result.code == 2
    assert result.one_line_error().startswith(f"error: --out {tmp_path / 'ro'}: permission denied")


BLOCK = f"{STEP_MARKER}\n```fortran\nOLDSTEP\n```\n"
DOCS = {  # name: (make the --doc path in a folder, what the line says after "--doc PATH: ")
    "missing": (lambda d: d / "none.md", "no such file"),
    "a folder": (lambda d: d, "is not a regular file"),
    "a FIFO": (lambda d: (os.mkfifo(d / "fifo"), d / "fifo")[1], "is not a regular file"),
    "no marker": (lambda d: (d / "a.md").write_text("# a\n") and d / "a.md", "the marker line"),
    "the marker twice": (lambda d: (d / "a.md").write_text(BLOCK + BLOCK) and d / "a.md", "2 times, not once"),
    "marker without block": (lambda d: (d / "a.md").write_text(STEP_MARKER + "\ntext\n") and d / "a.md",
                             "no ```fortran block"),
}


@pytest.mark.parametrize("case", DOCS)
def test_a_doc_that_cannot_take_the_step_is_refused(cli, tmp_path, case):
    make, says = DOCS[case]
    doc = make(tmp_path)
    before = doc.read_bytes() if doc.is_file() else None
    result = cli(fortran.main, "--doc", doc)
    assert result.code == 2
    line = result.one_line_error()
    assert line.startswith(f"error: --doc {doc}: ") and says in line, line
    assert (doc.read_bytes() if doc.is_file() else None) == before


def test_a_doc_with_one_marker_and_block_gets_the_step(cli, tmp_path):
    doc = tmp_path / "a.md"
    doc.write_text("# a\n" + BLOCK + "after\n")
    result = cli(fortran.main, "--doc", doc)
    assert result.code == 0, result.err
    text = doc.read_text()
    assert text.startswith("# a\n" + STEP_MARKER + "\n```fortran\n") and "OLDSTEP" not in text and text.endswith("after\n")


@pytest.mark.parametrize("variable, value", [("CUDNN_DENOISE_CUDNN", "/nonexistent/libcudnn.so.9"),
                                             ("CUDNN_DENOISE_CUDART", "not-a-library")],
                         ids=["missing-file", "not-a-library"])
def test_link_flags_with_a_bad_library_variable_is_one_line(tmp_path, variable, value):
    """A library variable naming nothing loadable (as in an install without the GPU wheels): the
    program says which library in one line, exit 2, no traceback."""
    import subprocess
    import sys

    if value == "not-a-library":
        value = str(tmp_path / "libcudart.so.13")
        (tmp_path / "libcudart.so.13").write_text("not a shared library")
    env = {**os.environ, variable: value}
    done = subprocess.run([sys.executable, "-m", "cudnn_denoise.fortran", "--link-flags"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("python -m cudnn_denoise.fortran: error: --link-flags:") and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and done.stdout == ""


def test_link_flags_without_the_gpu_libraries_is_one_line_saying_which_and_how(cli, monkeypatch):
    """A CPU-only install (`pip install -e .`: no nvidia wheels, none on the system): the library
    search finds nothing, and the one line names the library and the pip command."""
    from cudnn_denoise import bindings
    from cudnn_denoise.bindings import _load

    monkeypatch.setattr(_load, "candidates", lambda spec: [])
    loaders = (bindings.load, bindings.load_cudart)  # cached: what an earlier test found is forgotten
    try:
        for loader in loaders:
            loader.cache_clear()
        result = cli(fortran.main, "--link-flags")
    finally:
        for loader in loaders:
            loader.cache_clear()
    assert result.code == 2 and result.out == ""
    line = result.one_line_error()
    assert line.startswith("error: --link-flags: ") and "cuBLAS could not be loaded" in line, line
    assert "pip install 'cudnn_denoise[cuda13]'" in line, line
