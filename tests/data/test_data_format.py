"""format.py: opening and validating a dataset, the value scan, and the shared CLI flags."""

import argparse
import json
import os

import numpy as np
import pytest

from cudnn_denoise.data.flags import add_data_arguments, dataset_from_args
from cudnn_denoise.data.format import (
    CLEAN_NAME,
    META_NAME,
    NOISY_NAME,
    DataError,
    check_values,
    open_dataset,
    open_dir,
    read_exact,
)


def write_pair(directory, count_noisy, count_clean, side=4):
    """Raw noisy/clean files (no dataset.json) of side x side samples, all values 0.25."""
    directory.mkdir(exist_ok=True)
    np.full((count_noisy, side, side), 0.25, "<f4").tofile(directory / NOISY_NAME)
    np.full((count_clean, side, side), 0.25, "<f4").tofile(directory / CLEAN_NAME)
    return directory


def test_open_reads_shape_from_dataset_json(identity_dataset):
    dataset = identity_dataset(5, height=8, width=6)
    assert (dataset.height, dataset.width, dataset.count) == (8, 6, 5)
    assert dataset.sample_nbytes == 8 * 6 * 4
    assert dataset.nbytes == 2 * 5 * 8 * 6 * 4
    assert dataset.meta["made_by"] == {"generator": "tests/data/conftest.py"}


def test_open_without_json_uses_patch_size(tmp_path):
    write_pair(tmp_path / "d", 3, 3, side=4)
    dataset = open_dir(tmp_path / "d", patch_size=4)
    assert (dataset.height, dataset.width, dataset.count) == (4, 4, 3)


def test_missing_file(tmp_path):
    write_pair(tmp_path / "d", 3, 3)
    (tmp_path / "d" / CLEAN_NAME).unlink()
    with pytest.raises(DataError, match=rf"{CLEAN_NAME}: no such file"):
        open_dir(tmp_path / "d", patch_size=4)


def test_data_dir_missing(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: --data must be a directory"):
        open_dir(tmp_path / "nowhere")


def test_size_not_multiple_of_sample(tmp_path):
    write_pair(tmp_path / "d", 3, 3, side=4)
    with open(tmp_path / "d" / NOISY_NAME, "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(DataError, match=rf"{NOISY_NAME}: size 194 bytes is not a positive multiple "
                                        r"of one 4x4 float32 sample \(64 bytes\)"):
        open_dir(tmp_path / "d", patch_size=4)


def test_without_json_or_patch_size_the_shape_is_not_guessed(tmp_path):
    """256 samples of 128x128 fill as many bytes as 4 of 1024x1024: no shape is assumed."""
    write_pair(tmp_path / "d", 256, 256, side=128)
    with pytest.raises(DataError) as error:
        open_dir(tmp_path / "d")
    assert str(error.value) == (f"{tmp_path / 'd'}: has no {META_NAME} to give the samples' shape; pass "
                                f"--patch-size PX (the side of its square samples) or write a {META_NAME} "
                                "with height and width")
    with pytest.raises(DataError, match=r"pass --val-patch-size PX"):
        open_dir(tmp_path / "d", flag="--val-patch-size")
    assert open_dir(tmp_path / "d", patch_size=128).count == 256


def test_empty_file(tmp_path):
    write_pair(tmp_path / "d", 0, 3, side=4)
    with pytest.raises(DataError, match=rf"{NOISY_NAME}: size 0 bytes"):
        open_dir(tmp_path / "d", patch_size=4)


def test_count_mismatch(tmp_path):
    write_pair(tmp_path / "d", 3, 4)
    with pytest.raises(DataError,
                       match=rf"{NOISY_NAME} holds 3 samples but .*{CLEAN_NAME} holds 4"):
        open_dir(tmp_path / "d", patch_size=4)


def test_json_count_mismatch(identity_dataset):
    dataset = identity_dataset(4)
    with open(dataset.noisy, "ab") as f, open(dataset.clean, "ab") as g:
        f.write(bytes(dataset.sample_nbytes))
        g.write(bytes(dataset.sample_nbytes))
    with pytest.raises(DataError, match=rf"{META_NAME}: says count 4 but the files hold 5"):
        open_dir(dataset.noisy.parent)


def test_patch_size_contradicting_json(identity_dataset):
    dataset = identity_dataset(2, height=8, width=6)
    with pytest.raises(DataError, match=rf"--patch-size 8 contradicts .*{META_NAME} \(8x6\)"):
        open_dir(dataset.noisy.parent, patch_size=8)


def test_json_not_json(identity_dataset):
    dataset = identity_dataset(2)
    (dataset.noisy.parent / META_NAME).write_text("height: 8")
    with pytest.raises(DataError, match=rf"{META_NAME}: is not valid JSON"):
        open_dir(dataset.noisy.parent)


@pytest.mark.parametrize("meta, message", [
    ({"height": 0, "width": 6}, "height is 0, expected an integer >= 1"),
    ({"height": 8, "width": -6}, "width is -6, expected an integer >= 1"),
    ({"height": "8", "width": 6}, 'height is "8", expected an integer >= 1'),
    ({"height": None, "width": 6}, "height is null, expected an integer >= 1"),
    ({"height": True, "width": 6}, "height is true, expected an integer >= 1"),
    ({"width": 6}, "height is missing, expected an integer >= 1"),
    ({"height": 8, "width": 6, "count": -2}, "count is -2, expected an integer >= 1"),
    ({"height": 8, "width": 6, "dtype": "float64"},
     "dtype 'float64' is not supported (float32 or float16)"),
    ({"height": 8, "width": 6, "byte_order": 1}, 'byte_order is 1, expected one of "little"'),
    ({"height": 8, "width": 6, "made_by": 3}, "made_by is 3, expected a JSON object"),
    ({"height": 8, "width": 6, "pixel_size": [1.06, 0]},
     "pixel_size is [1.06, 0], expected an array of 2 finite numbers > 0 or null"),
    ([8, 6], "the content is [8, 6], expected a JSON object"),
])
def test_every_dataset_json_field_is_type_checked(identity_dataset, meta, message):
    dataset = identity_dataset(2)
    path = dataset.noisy.parent / META_NAME
    path.write_text(json.dumps(meta))
    with pytest.raises(DataError) as error:
        open_dir(dataset.noisy.parent)
    assert str(error.value) == f"{path}: {message}"


def test_not_a_regular_file(tmp_path):
    write_pair(tmp_path / "d", 3, 3)
    (tmp_path / "d" / NOISY_NAME).unlink()
    (tmp_path / "d" / NOISY_NAME).mkdir()
    with pytest.raises(DataError, match=rf"{NOISY_NAME}: is not a regular file"):
        open_dir(tmp_path / "d", patch_size=4)


def test_unreadable_file(tmp_path, monkeypatch):
    write_pair(tmp_path / "d", 3, 3)
    noisy = tmp_path / "d" / NOISY_NAME
    noisy.chmod(0)
    if os.geteuid() == 0:  # root reads mode-0 files: make the open fail as it would for a user
        real_open = os.open

        def refusing_open(path, *args, **kwargs):
            if os.fspath(path) == os.fspath(noisy):
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(DataError, match=rf"{NOISY_NAME}: cannot be read: Permission denied"):
        open_dir(tmp_path / "d", patch_size=4)


def test_read_exact_continues_partial_reads(tmp_path, monkeypatch):
    path = tmp_path / "f"
    data = np.arange(1000, dtype="<f4")
    data.tofile(path)
    real_preadv = os.preadv
    calls = []

    def trickle(fd, buffers, offset):  # at most 100 bytes a call, as a slow device may do
        calls.append(offset)
        return real_preadv(fd, [buffers[0][:100]], offset)

    monkeypatch.setattr(os, "preadv", trickle)
    out = np.zeros(900, "<f4")
    fd = os.open(path, os.O_RDONLY)
    try:
        read_exact(fd, memoryview(out).cast("B"), 400, path)
    finally:
        os.close(fd)
    np.testing.assert_array_equal(out, data[100:])
    assert len(calls) == 36


def test_read_exact_reports_end_of_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(bytes(100))
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(DataError, match=r"f: short read at offset 64: got 36 of 64 bytes"):
            read_exact(fd, memoryview(bytearray(64)), 64, path)
    finally:
        os.close(fd)


@pytest.mark.parametrize("bad, what", [(np.nan, "1 NaN, 0 Inf and 0 values"),
                                       (np.inf, "0 NaN, 1 Inf and 0 values"),
                                       (1.5, "0 NaN, 0 Inf and 1 values"),
                                       (-0.25, "0 NaN, 0 Inf and 1 values")])
def test_check_values_names_the_bad_sample(tmp_path, bad, what):
    write_pair(tmp_path / "d", 40, 40)
    values = np.fromfile(tmp_path / "d" / CLEAN_NAME, "<f4")
    values[37 * 16 + 5] = bad  # sample 37: in the third 16-sample chunk
    values.tofile(tmp_path / "d" / CLEAN_NAME)
    dataset = open_dir(tmp_path / "d", patch_size=4)
    with pytest.raises(DataError, match=rf"{CLEAN_NAME}: sample 37 has {what} outside \[0, 1\]"):
        check_values(dataset)


def test_check_values_reports_the_lowest_sample_across_files(tmp_path):
    write_pair(tmp_path / "d", 8, 8)
    for name, sample in ((NOISY_NAME, 5), (CLEAN_NAME, 2)):
        values = np.fromfile(tmp_path / "d" / name, "<f4")
        values[sample * 16] = 2.0
        values.tofile(tmp_path / "d" / name)
    with pytest.raises(DataError, match=rf"{CLEAN_NAME}: sample 2 "):
        check_values(open_dir(tmp_path / "d", patch_size=4))


def test_check_values_accepts_the_bounds(tmp_path):
    write_pair(tmp_path / "d", 3, 3)
    values = np.fromfile(tmp_path / "d" / NOISY_NAME, "<f4")
    values[:2] = [0.0, 1.0]
    values.tofile(tmp_path / "d" / NOISY_NAME)
    check_values(open_dir(tmp_path / "d", patch_size=4))


def parse(argv, prefix=""):
    parser = argparse.ArgumentParser()
    add_data_arguments(parser, prefix)
    return parser.parse_args(argv)


def test_args_data_dir(identity_dataset):
    dataset = identity_dataset(3)
    assert dataset_from_args(parse(["--data", str(dataset.noisy.parent)])) == dataset


def test_args_noisy_clean_with_prefix(tmp_path):
    write_pair(tmp_path / "d", 3, 3)
    args = parse(["--val-noisy", str(tmp_path / "d" / NOISY_NAME), "--val-clean",
                  str(tmp_path / "d" / CLEAN_NAME), "--val-patch-size", "4"], prefix="val-")
    dataset = dataset_from_args(args, prefix="val-")
    assert (dataset.count, dataset.height) == (3, 4)


def test_args_none_given():
    with pytest.raises(DataError,
                       match=r"no dataset: give --data DIR or --noisy FILE --clean FILE"):
        dataset_from_args(parse([]))
    assert dataset_from_args(parse([]), required=False) is None


def test_args_half_a_pair(tmp_path):
    with pytest.raises(DataError, match=r"--noisy needs --clean"):
        dataset_from_args(parse(["--noisy", "a.bin"]))
    with pytest.raises(DataError, match=r"--clean needs --noisy"):
        dataset_from_args(parse(["--clean", "b.bin"]))
    with pytest.raises(DataError, match=r"--data DIR already names the clean file"):
        dataset_from_args(parse(["--data", str(tmp_path), "--clean", "b.bin"]))


def test_args_data_and_noisy_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        parse(["--data", "d", "--noisy", "a.bin"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_args_check_data_scans(identity_dataset):
    dataset = identity_dataset(3)  # identity values run past 1
    directory = str(dataset.noisy.parent)
    assert dataset_from_args(parse(["--data", directory])) == dataset
    with pytest.raises(DataError, match=rf"{NOISY_NAME}: sample 0 has 0 NaN, 0 Inf and 46 values"):
        dataset_from_args(parse(["--data", directory, "--check-data"]))


def test_meta_is_json_with_the_documented_keys(identity_dataset):
    dataset = identity_dataset(3, height=8, width=6)
    meta = json.loads((dataset.noisy.parent / META_NAME).read_text())
    assert {key: meta[key] for key in ("format", "version", "height", "width", "count", "dtype",
                                       "byte_order", "noisy", "clean")} == {
        "format": "cudnn_denoise.dataset", "version": 1, "height": 8, "width": 6, "count": 3,
        "dtype": "float32", "byte_order": "little", "noisy": NOISY_NAME, "clean": CLEAN_NAME}


def test_open_dataset_takes_files_anywhere(tmp_path):
    write_pair(tmp_path / "d", 2, 2)
    os.rename(tmp_path / "d" / NOISY_NAME, tmp_path / "d" / "n.f32")
    dataset = open_dataset(tmp_path / "d" / "n.f32", tmp_path / "d" / CLEAN_NAME, patch_size=4)
    assert dataset.noisy.name == "n.f32"
