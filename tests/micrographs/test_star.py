"""star.py and sources.expand on RELION micrograph STAR files written as RELION writes them (3.1:
data_optics + data_micrographs; 3.0: one unnamed table): the names read, relative to the current
folder, the file written back with every other table and column, and bad STAR files named."""

from __future__ import annotations

import sys

import pytest
from micrograph_files import write_star

from cudnn_denoise.data.format import DataError
from cudnn_denoise.micrographs import sources, star

starfile = pytest.importorskip("starfile", reason="the STAR tests need the star extra: pip install starfile")

NAMES = ["MotionCorr/job002/Movies/a.mrc", "MotionCorr/job002/Movies/b.mrc"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A RELION project folder, the current folder, holding the two micrographs NAMES."""
    (tmp_path / "MotionCorr/job002/Movies").mkdir(parents=True)
    for name in NAMES:
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_relion_31_file_gives_its_micrographs_table_and_keeps_the_optics(tmp_path):
    listing = star.read(write_star(tmp_path / "mics.star", NAMES))
    assert listing.table == "micrographs"
    assert listing.names == NAMES
    assert list(listing.blocks) == ["optics", "micrographs"]
    assert list(listing.blocks["optics"]["rlnOpticsGroup"]) == [1, 2]
    assert listing.versions == {"optics": "# version 30001", "micrographs": "# version 30001"}


def test_a_relion_30_file_gives_its_one_table(tmp_path):
    listing = star.read(write_star(tmp_path / "mics.star", NAMES, relion="3.0"))
    assert listing.table == ""
    assert listing.names == NAMES
    assert listing.versions == {"": None}


@pytest.mark.parametrize("relion", ["3.1", "3.0"])
def test_names_are_relative_to_the_current_folder_not_the_star_file(project, relion):
    (project / "Select/job005").mkdir(parents=True)
    path = write_star(project / "Select/job005/micrographs.star", NAMES, relion=relion)
    listings = []
    files, problems = sources.expand(["Select/job005/micrographs.star"], stars=listings)
    assert (files, problems) == ([project.joinpath(name).relative_to(project) for name in NAMES], [])
    assert all(file.is_file() for file in files)
    assert [listing.path for listing in listings] == [path.relative_to(project)]


def test_a_missing_micrograph_is_named_like_a_missing_input(project):
    write_star(project / "mics.star", NAMES + ["MotionCorr/job002/Movies/gone.mrc", "notes.txt"])
    (project / "notes.txt").write_text("")
    files, problems = sources.expand(["mics.star"])
    assert [str(f) for f in files] == NAMES
    assert problems == ["MotionCorr/job002/Movies/gone.mrc: no such file (named in mics.star)",
                        "notes.txt: not a .mrc / .mrcs / .tif / .tiff / .bin file (named in mics.star)"]


@pytest.mark.parametrize("relion", ["3.1", "3.0"])
def test_written_back_the_tables_are_the_same_but_for_the_names(tmp_path, relion):
    listing = star.read(write_star(tmp_path / "mics.star", NAMES, relion=relion))
    new = [f"denoised/{name.rsplit('/', 1)[1]}" for name in NAMES]
    out = listing.write(tmp_path / "out.star", new)
    before = starfile.read(tmp_path / "mics.star", always_dict=True)
    after = starfile.read(out, always_dict=True)
    assert list(after) == list(before)
    assert list(after[listing.table]["rlnMicrographName"]) == new
    for name, table in before.items():
        if name == listing.table:
            assert list(after[name].columns) == list(table.columns)
            table, after[name] = (t.drop(columns="rlnMicrographName") for t in (table, after[name]))
        assert after[name].equals(table), (name, after[name], table)
    # RELION 3.1+ reads a table without its version line as a 3.0 one
    versions = [line for line in out.read_text().splitlines() if line.startswith("# version")]
    assert versions == (["# version 30001"] * 2 if relion == "3.1" else [])


def test_rows_named_none_are_left_out(tmp_path):
    listing = star.read(write_star(tmp_path / "mics.star", NAMES))
    out = starfile.read(listing.write(tmp_path / "out.star", [None, "b.mrc"]), always_dict=True)
    assert list(out["micrographs"]["rlnMicrographName"]) == ["b.mrc"]
    assert list(out["micrographs"]["rlnOpticsGroup"]) == [2]  # row b's other values
    assert len(out["optics"]) == 2


@pytest.mark.parametrize("text, words", [
    ("data_micrographs\n\nloop_\n_rlnCtfImage #1\nx.ctf\n",
     "its table data_micrographs has no rlnMicrographName column"),
    ("data_\n\nloop_\n_rlnDefocusU #1\n1.0\n", "its table data_ has no rlnMicrographName column"),
    ("# nothing here\n", "holds no data_ table"),
    # a RELION 3.1 particles file: rlnMicrographName, but one row per particle
    ("data_optics\n\nloop_\n_rlnOpticsGroup #1\n1\n\ndata_particles\n\nloop_\n_rlnMicrographName #1\na.mrc\n",
     "no data_micrographs table (it holds data_optics, data_particles)"),
    ("data_micrographs\n\n_rlnMicrographName a.mrc\n", "data_micrographs is not a loop_"),
])
def test_a_star_file_without_micrographs_is_a_data_error_naming_it(tmp_path, text, words):
    path = tmp_path / "bad.star"
    path.write_text(text)
    with pytest.raises(DataError) as caught:
        sources.expand([str(path)])
    assert str(caught.value).startswith(f"{path}: ") and words in str(caught.value)


def test_a_binary_star_file_is_a_data_error(tmp_path):
    (tmp_path / "bin.star").write_bytes(b"\xff\xfe" * 10)
    with pytest.raises(DataError, match="bin.star: not a STAR file .not UTF-8"):
        star.read(tmp_path / "bin.star")


def test_without_starfile_the_error_names_the_file_and_the_install(tmp_path, monkeypatch):
    path = write_star(tmp_path / "mics.star", NAMES)
    monkeypatch.setitem(sys.modules, "starfile", None)  # import starfile raises ImportError
    with pytest.raises(star.StarfileMissing) as caught:
        sources.expand([str(path)])
    assert str(caught.value).startswith(f"{path}: STAR files need the starfile package")
    assert "pip install 'cudnn_denoise[star]'" in str(caught.value)


def test_relion_paths_are_relative_under_the_current_folder_else_absolute(tmp_path, monkeypatch):
    (tmp_path / "project/External/job010").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "project")
    assert star.relion_path(tmp_path / "project/External/job010/a.mrc") == "External/job010/a.mrc"
    assert star.relion_path(tmp_path.joinpath("project/External/job010/a.mrc").relative_to(
        tmp_path / "project")) == "External/job010/a.mrc"
    assert star.relion_path(tmp_path / "elsewhere/a.mrc") == str(tmp_path.resolve() / "elsewhere/a.mrc")
