"""RELION STAR files as the programs' inputs, run in a RELION project folder (the current folder):
denoise writes the STAR file back beside its outputs, pointing at them, with every other table and
column kept; make_dataset --from-mrc and --even/--odd take the micrographs a STAR file names; a
STAR file without micrographs, or starfile missing, is one line and exit 2."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from cudnn_denoise import checkpoint, denoise, make_dataset
from cudnn_denoise.params import init_params

pytest.importorskip("mrcfile", reason="the MRC tests need the mrc extra: pip install mrcfile")
starfile = pytest.importorskip("starfile", reason="the STAR tests need the star extra: pip install starfile")
from micrograph_files import movie_halves, read_mrc, write_mrc, write_star  # after the skips

CPU = ("--backend", "reference")
MOVIES = "MotionCorr/job002/Movies"
NAMES = [f"{MOVIES}/a.mrc", f"{MOVIES}/b.mrc"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A RELION project folder, the current folder, with micrographs a, b and c in MOVIES (the
    STAR files name a and b) and a checkpoint beside it."""
    (tmp_path / "project" / MOVIES).mkdir(parents=True)
    for seed, name in enumerate("abc"):
        image = np.random.default_rng(seed).normal(1000.0, 40.0, (40, 48)).astype(np.float32)
        write_mrc(tmp_path / "project" / MOVIES / f"{name}.mrc", image, voxel_size=0.885)
    checkpoint.save(tmp_path / "ckpt", init_params(4), step=1,
                    extra={"data_stats": {"mean": 0.45, "std": 0.12}})
    monkeypatch.chdir(tmp_path / "project")
    return tmp_path / "project"


def run_denoise(cli, project, *args):
    return cli(denoise.main, *args, "--checkpoint", project.parent / "ckpt", *CPU)


def without_names(blocks: dict, table: str) -> dict:
    return {name: block.drop(columns="rlnMicrographName") if name == table else block
            for name, block in blocks.items()}


@pytest.mark.parametrize("relion, table", [("3.1", "micrographs"), ("3.0", "")])
def test_denoise_writes_the_star_file_back_pointing_at_its_outputs(cli, project, relion, table):
    Path("CtfFind/job003").mkdir(parents=True)
    given = write_star(Path("CtfFind/job003/micrographs_ctf.star"), NAMES, relion=relion)
    result = run_denoise(cli, project, given, "-o", "External/job010")
    assert result.code == 0, result.err
    written = Path("External/job010/micrographs_ctf.denoised.star")
    assert f"wrote {written}: 2 micrographs" in result.out
    before, after = (starfile.read(path, always_dict=True) for path in (given, written))
    names = list(after[table]["rlnMicrographName"])
    assert names == ["External/job010/a.denoised.mrc", "External/job010/b.denoised.mrc"]
    assert all(Path(name).is_file() for name in names)  # read from the project folder, as RELION does
    np.testing.assert_array_equal(read_mrc(Path(names[0])), read_mrc(written.parent / "a.denoised.mrc"))
    same, kept = without_names(before, table), without_names(after, table)
    assert list(kept) == list(same)  # the optics table too
    for name in same:
        assert kept[name].equals(same[name]), name
    assert not Path("External/job010/c.denoised.mrc").exists()  # not in the STAR file


def test_outputs_outside_the_project_folder_are_named_by_absolute_paths(cli, project):
    write_star(Path("mics.star"), NAMES)
    out = project.parent / "elsewhere"
    result = run_denoise(cli, project, "mics.star", "-o", out)
    assert result.code == 0, result.err
    table = starfile.read(out / "mics.denoised.star", always_dict=True)["micrographs"]
    names = list(table["rlnMicrographName"])
    assert names == [str(out.resolve() / "a.denoised.mrc"), str(out.resolve() / "b.denoised.mrc")]


def test_rows_of_micrographs_not_denoised_are_left_out_and_skipped_ones_kept(cli, project):
    (project / MOVIES / "broken.mrc").write_bytes(b"not an MRC file" * 100)
    names = [NAMES[0], f"{MOVIES}/gone.mrc", f"{MOVIES}/broken.mrc", NAMES[1]]
    write_star(Path("mics.star"), names)
    assert run_denoise(cli, project, NAMES[1], "-o", "out").code == 0  # b done by an earlier run
    result = run_denoise(cli, project, "mics.star", "-o", "out")
    assert result.code == 4
    assert "Traceback" not in result.err
    assert f"skipped: {MOVIES}/gone.mrc: no such file (named in mics.star)" in result.err
    assert f"skipped: {MOVIES}/broken.mrc: not a readable MRC file" in result.err
    assert "skipping 1 input whose output exists" in result.out
    assert ("wrote out/mics.denoised.star: 2 micrographs; 2 rows of mics.star left out: their "
            "micrographs were not denoised (named above)") in result.out
    table = starfile.read("out/mics.denoised.star", always_dict=True)["micrographs"]
    assert list(table["rlnMicrographName"]) == ["out/a.denoised.mrc", "out/b.denoised.mrc"]
    assert list(table["rlnOpticsGroup"]) == [1, 2]  # rows 0 and 3 of the input: groups 1 and 2


def test_no_star_file_is_written_when_no_micrograph_was_denoised(cli, project):
    write_star(Path("mics.star"), [f"{MOVIES}/gone.mrc"])
    result = run_denoise(cli, project, "mics.star", NAMES[0], "-o", "out")
    assert result.code == 4
    assert "no STAR file written for mics.star: none of its micrographs was denoised" in result.err
    assert not Path("out/mics.denoised.star").exists()


def test_a_star_output_that_would_replace_its_input_is_refused(cli, project):
    write_star(Path("mics.star"), NAMES)
    result = run_denoise(cli, project, "mics.star", "-o", ".", "--suffix", "")
    assert result.code == 2
    assert "mics.star: its output mics.star would replace a STAR input" in result.one_line_error()


def test_denoise_help_says_what_becomes_of_a_star_input(capsys):
    with pytest.raises(SystemExit):
        denoise.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "RELION STAR files" in text
    assert "rows whose micrograph could not be denoised (or is missing) are left out" in text


# -- make_dataset --------------------------------------------------------------------------------

def test_make_dataset_from_mrc_takes_the_micrographs_a_star_file_names(cli, project):
    write_star(Path("mics.star"), NAMES)
    made = cli(make_dataset.main, "--out", "ds", "--from-mrc", "mics.star", "--size", 16)
    assert made.code == 0, made.err
    lines = made.out.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == NAMES  # c.mrc, not named, is not used
    assert lines[-1].startswith("wrote 12 pairs of 16x16 float32 from 2 micrographs")


def test_make_dataset_even_odd_take_star_files(cli, project):
    for index in range(2):
        even, odd = movie_halves(32, 32, seed=index)
        write_mrc(project / MOVIES / f"m{index}_EVN.mrc", even)
        write_mrc(project / MOVIES / f"m{index}_ODD.mrc", odd)
    write_star(Path("even.star"), [f"{MOVIES}/m{index}_EVN.mrc" for index in range(2)])
    write_star(Path("odd.star"), [f"{MOVIES}/m{index}_ODD.mrc" for index in range(2)])
    made = cli(make_dataset.main, "--out", "ds", "--even", "even.star", "--odd", "odd.star",
               "--size", 16)
    assert made.code == 0, made.err
    assert f"{MOVIES}/m1_EVN.mrc + {MOVIES}/m1_ODD.mrc: 32x32, 4 patches -> 8 pairs" in made.out
    assert "wrote 16 pairs" in made.out


# -- bad STAR files ------------------------------------------------------------------------------

def _no_name_column(path: Path) -> Path:
    path.write_text("data_micrographs\n\nloop_\n_rlnCtfImage #1\nx.ctf\n")
    return path


def _run(cli, project, program, star):
    if program == "denoise":
        return run_denoise(cli, project, star, "-o", "out")
    return cli(make_dataset.main, "--out", "ds", "--from-mrc", star, "--size", 16)


def _line(result) -> str:
    """The one `PROG: error: ` line's message."""
    return result.one_line_error().removeprefix("error: ")


@pytest.mark.parametrize("program", ["denoise", "make_dataset"])
def test_a_star_file_without_the_name_column_is_one_line_and_exit_2(cli, project, program):
    result = _run(cli, project, program, _no_name_column(Path("mics.star")))
    assert result.code == 2
    assert _line(result) == "mics.star: its table data_micrographs has no rlnMicrographName column"


@pytest.mark.parametrize("program", ["denoise", "make_dataset"])
def test_without_starfile_a_star_input_is_one_line_and_exit_2(cli, project, program, monkeypatch):
    write_star(Path("mics.star"), NAMES)
    monkeypatch.setitem(sys.modules, "starfile", None)  # import starfile raises ImportError
    result = _run(cli, project, program, "mics.star")
    assert result.code == 2
    line = _line(result)
    assert line.startswith("mics.star: STAR files need the starfile package")
    assert line.endswith("pip install 'cudnn_denoise[star]' (or pip install starfile)")
