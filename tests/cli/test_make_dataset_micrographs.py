"""make_dataset --from-mrc and --even/--odd as a user runs them: the lines it prints, the exit codes
(0, 2 for bad flags or no inputs, 4 for skipped files), and train running on what it wrote."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
from micrograph_files import movie_halves, write_mrc, write_tiff

from cudnn_denoise import make_dataset, train
from cudnn_denoise.data.format import META_NAME

CPU = ("--backend", "reference")


@pytest.fixture
def mics(tmp_path):
    """Two 64 x 96 MRC micrographs (pixel 1.06 A) and a 2-page TIFF of 64 x 64."""
    folder = tmp_path / "mics"
    folder.mkdir()
    for index in range(2):
        even, odd = movie_halves(64, 96, seed=index)
        write_mrc(folder / f"m{index}.mrc", even + odd, voxel_size=1.06)
    write_tiff(folder / "t.tif", np.stack([movie_halves(64, 64, seed=5)[0]] * 2).astype(np.uint16))
    return folder


def test_from_mrc_to_a_trained_checkpoint(cli, mics, tmp_path):
    data = tmp_path / "ds"
    made = cli(make_dataset.main, "--out", data, "--from-mrc", mics, "--size", 32, "--check-data")
    assert made.code == 0, made.err
    assert made.err == ""
    lines = made.out.splitlines()
    assert re.fullmatch(rf"{mics / 'm0.mrc'}: 64x96, 6 patches; \[\S+, \S+\] -> \[0, 1\]", lines[0])
    assert lines[2].startswith(f"{mics / 't.tif'} frame 0: 64x64, 4 patches;")
    assert lines[-1].startswith(f"wrote 20 pairs of 32x32 float32 from 4 micrographs to {data} ")
    pixel = "pixel size differs among the micrographs: 1.06 x 1.06 A, unknown; values checked"
    assert pixel in lines[-1]

    out = tmp_path / "run"
    trained = cli(train.main, "--data", data, "--val-data", data, *CPU, "--out", out,
                  "--max-steps", 5, "--batch-size", 2, "--log-every", 5)
    assert trained.code == 0, trained.err
    assert (out / "checkpoint" / "params.bin").exists()
    assert f"data range [0, 1] ({data / META_NAME})" in trained.out
    assert "data: 20 pairs of 32x32" in trained.out


def test_even_odd_sums_in_one_folder(cli, tmp_path):
    sums = tmp_path / "sums"
    sums.mkdir()
    for index in range(2):
        even, odd = movie_halves(48, 40, seed=index)
        write_mrc(sums / f"movie{index}_EVN.mrc", even)
        write_mrc(sums / f"movie{index}_ODD.mrc", odd)
    made = cli(make_dataset.main, "--out", tmp_path / "ds", "--even", sums, "--odd", sums,
               "--size", 16)
    assert made.code == 0, made.err
    pair = f"{sums / 'movie0_EVN.mrc'} + {sums / 'movie0_ODD.mrc'}"
    assert f"{pair}: 48x40, 6 patches -> 12 pairs;" in made.out
    assert "wrote 24 pairs of 16x16 float32 from 2 micrographs" in made.out
    one = cli(make_dataset.main, "--out", tmp_path / "one", "--even", sums, "--odd", sums,
              "--size", 16, "--one-way", "--quiet")
    assert one.code == 0 and "wrote 12 pairs" in one.out
    assert json.loads((tmp_path / "one" / META_NAME).read_text())["made_by"]["both_ways"] is False


def test_dangling_and_looping_symlinks_are_named_and_skipped(cli, mics, tmp_path):
    (mics / "gone.mrc").symlink_to(mics / "deleted.mrc")
    (mics / "loop.mrc").symlink_to(mics / "loop.mrc")
    made = cli(make_dataset.main, "--out", tmp_path / "ds", "--from-mrc", mics, "--size", 32)
    (mics / "gone.mrc").unlink()
    (mics / "loop.mrc").unlink()
    assert made.code == 4, made.err
    assert "Traceback" not in made.err
    assert f"skipped: {mics / 'gone.mrc'}: a dangling symlink" in made.err
    assert f"skipped: {mics / 'loop.mrc'}: a symlink loop" in made.err


def test_bad_files_are_named_the_rest_written_and_the_exit_code_is_4(cli, mics, tmp_path):
    (mics / "broken.mrc").write_bytes(b"\0" * 100)
    made = cli(make_dataset.main, "--out", tmp_path / "ds", "--from-mrc", mics, "'nothing/*.mrc'",
               "--size", 32)
    assert made.code == 4
    assert "Traceback" not in made.err
    errors = made.err.strip().splitlines()
    assert errors[0].startswith("skipped: 'nothing/*.mrc': ")
    assert errors[1].startswith(f"skipped: {mics / 'broken.mrc'}: not a readable MRC file")
    assert errors[2] == (f"{made.prog}: error: 2 inputs or micrographs could not be used "
                         "(named above)")
    assert "wrote 20 pairs" in made.out

    (tmp_path / "flat").mkdir()
    write_mrc(tmp_path / "flat" / "f.mrc", np.ones((40, 40), np.float32))
    nothing = cli(make_dataset.main, "--out", tmp_path / "ds2", "--from-mrc", tmp_path / "flat",
                  "--size", 32)
    assert nothing.code == 4
    assert nothing.err.strip().splitlines()[-1] == (
        f"{nothing.prog}: error: no dataset written: none of the 1 micrograph could be used "
        "(named above)")
    assert not (tmp_path / "ds2" / META_NAME).exists()


@pytest.mark.parametrize("flags, words", [
    (("--from-mrc", "M", "--samples", "3"), "--samples: not used with --from-mrc"),
    (("--from-mrc", "M", "--no-ctf"), "--no-ctf: not used with --from-mrc"),
    (("--from-mrc", "M", "--one-way"), "--one-way: not used with --from-mrc"),
    (("--even", "M", "--odd", "M", "--dose", "3"), "--dose: not used with --even/--odd"),
    (("--even", "M", "--odd", "M", "--seed", "1", "--sigma", "0.1"),
     "--sigma, --seed: not used with"),
    (("--even", "M"), "--even and --odd come together"),
    (("--from-mrc", "M", "--even", "M", "--odd", "M"), "choose one"),
    (("--from-mrc", "M", "--percentiles", "99", "1"), "--percentiles needs 0 <= LOW < HIGH <= 100"),
    (("--from-mrc", "M", "--stride", "0"), "--stride must be at least 1, not 0"),
    (("--from-mrc", "M", "--dose", "nan"),
     "argument --dose: must be a finite number > 0, not 'nan'"),
    ((), "say what to make: --from-mrc INPUT..."),
    (("--from-mrc", "no_such_dir"), "no input micrographs: no_such_dir: no such file or folder"),
])
def test_flags_that_mean_nothing_are_refused_in_one_line(cli, tmp_path, flags, words):
    flags = [str(tmp_path) if flag == "M" else flag for flag in flags]
    result = cli(make_dataset.main, "--out", tmp_path / "ds", *flags)
    assert result.code == 2
    assert words in result.one_line_error()  # make_dataset's line, or argparse's for a flag's rule
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("package, suffix, extra", [("mrcfile", "mrc", "mrc"),
                                                    ("tifffile", "tif", "tiff")])
def test_a_reader_package_not_installed_is_one_line_with_its_install(cli, tmp_path, monkeypatch,
                                                                     package, suffix, extra):
    """Without mrcfile or tifffile (they are extras), one line says which and how to install it,
    exit 2, no dataset: as denoise says it."""
    image = np.random.default_rng(0).random((40, 40), dtype=np.float32)
    source = (write_mrc if suffix == "mrc" else write_tiff)(tmp_path / f"m.{suffix}", image)
    monkeypatch.setitem(sys.modules, package, None)  # `import package` raises ImportError
    result = cli(make_dataset.main, "--out", tmp_path / "ds", "--from-mrc", source, "--size", 32)
    assert result.code == 2
    line = result.one_line_error()
    assert f"need the {package} package" in line and f"pip install 'cudnn_denoise[{extra}]'" in line
    assert not (tmp_path / "ds" / META_NAME).exists()
