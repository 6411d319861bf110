"""float16 datasets: dataset.json's dtype, the reader's float32 batches, make_dataset --dtype and
--from-dataset (data/recast.py), and the byte layout the Fortran side reads (docs/formats.md)."""

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from cudnn_denoise.data.recast import recast_dataset
from cudnn_denoise.data.format import (
    CLEAN_NAME,
    META_NAME,
    NOISY_NAME,
    DataError,
    check_values,
    open_dir,
)
from cudnn_denoise.data.reader import PairReader
from cudnn_denoise.data.stats import noisy_stats
from cudnn_denoise.data.synthetic import SyntheticPatches, write_dataset
from cudnn_denoise.dump import read_batch
from cudnn_denoise.micrographs.raw_io import RawSource


def make_dataset(*args):
    return subprocess.run([sys.executable, "-m", "cudnn_denoise.make_dataset", *map(str, args)],
                          capture_output=True, text=True, check=False)


def test_dataset_json_float16_means_two_bytes_a_value(identity_dataset):
    dataset = identity_dataset(5, height=8, width=6, dtype="float16")
    assert dataset.dtype == np.dtype("<f2")
    assert dataset.sample_nbytes == 8 * 6 * 2 and dataset.nbytes == 2 * 5 * 8 * 6 * 2
    assert os.path.getsize(dataset.noisy) == dataset.count * dataset.sample_nbytes


def test_missing_dtype_is_float32_and_an_unknown_one_is_refused(identity_dataset):
    dataset = identity_dataset(2)
    meta_path = dataset.noisy.parent / META_NAME
    meta = json.loads(meta_path.read_text())
    del meta["dtype"]
    meta_path.write_text(json.dumps(meta))
    assert open_dir(dataset.noisy.parent).dtype == np.dtype("<f4")
    meta["dtype"] = "bfloat16"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=rf"{META_NAME}: dtype 'bfloat16' is not supported "
                                        r"\(float32 or float16\)"):
        open_dir(dataset.noisy.parent)


def test_a_float32_file_described_as_float16_is_caught_by_its_size(identity_dataset):
    dataset = identity_dataset(3, height=4, width=4, dtype="float16")
    with open(dataset.noisy, "ab") as f:
        f.write(b"\0")
    with pytest.raises(DataError, match=r"size 97 bytes is not a positive multiple of one 4x4 "
                                        r"float16 sample \(32 bytes\)"):
        open_dir(dataset.noisy.parent)


@pytest.mark.parametrize("shuffle, drop_last, workers", [(False, False, 1), (True, False, 3),
                                                        (True, True, 2)])
def test_the_reader_widens_float16_files_into_float32_batches(identity_dataset, pairs, shuffle,
                                                              drop_last, workers):
    dataset = identity_dataset(21, height=6, width=8, dtype="float16")  # values up to 1008.5
    with PairReader(dataset, 4, shuffle=shuffle, seed=2, drop_last=drop_last,
                    workers=workers) as reader:
        for epoch in range(2):
            seen = []
            for batch in reader.epoch(epoch):
                assert batch.x.dtype == batch.y.dtype == np.float32
                want_x, want_y = pairs(batch.indices, 6, 8)
                np.testing.assert_array_equal(batch.x, want_x)
                np.testing.assert_array_equal(batch.y, want_y)
                seen.extend(batch.indices)
            assert len(set(seen)) == len(seen) == (20 if drop_last else 21)


def test_stats_dump_and_raw_inputs_read_float16(identity_dataset, pairs):
    dataset = identity_dataset(6, height=4, width=5, dtype="float16")
    noisy, clean = pairs(range(6), 4, 5)
    x, target = read_batch(dataset, 2, 3)  # dump's batch
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, noisy[2:5])
    np.testing.assert_array_equal(target, clean[2:5])
    stats = noisy_stats(dataset)
    assert stats["max"] == noisy.max() and stats["mean"] == pytest.approx(noisy.mean())
    raw = RawSource(dataset.noisy, None, None)  # denoise's raw .bin input
    assert raw.frames == 6
    np.testing.assert_array_equal(raw.read(4), noisy[4, 0])


def test_check_values_finds_a_bad_float16_sample(identity_dataset):
    dataset = identity_dataset(4, height=2, width=2, dtype="float16")
    values = np.memmap(dataset.clean, dtype="<f2", mode="r+")
    values[:] = 0.5
    values[2 * 4 + 1] = np.nan
    values.flush()
    np.full(16, 0.25, "<f2").tofile(dataset.noisy)
    with pytest.raises(DataError, match=rf"{CLEAN_NAME}: sample 2 has 1 NaN, 0 Inf and 0 values "
                                        r"outside \[0, 1\]"):
        check_values(dataset)


def test_the_bytes_are_ieee_binary16_little_endian_sample_major(identity_dataset):
    """What docs/formats.md tells the Fortran side: value (i, r, c) is the 2 bytes at
    2 * (i*H*W + r*W + c), an IEEE 754 binary16, little-endian (struct's '<e')."""
    dataset = identity_dataset(7, height=5, width=3, dtype="float16")
    raw = dataset.noisy.read_bytes()
    for i, r, c in [(0, 0, 0), (3, 2, 1), (6, 4, 2)]:
        offset = 2 * (i * 5 * 3 + r * 3 + c)
        (value,) = struct.unpack("<e", raw[offset: offset + 2])
        assert value == i * 15 + r * 3 + c
    assert raw[2 * 3: 2 * 3 + 2] == bytes([0x00, 0x42])  # 3.0 = 0x4200, low byte first


def test_make_dataset_writes_float16_rounded_from_the_float32_samples(tmp_path):
    result = make_dataset("--out", tmp_path / "d", "--samples", 3, "--size", 32, "--seed", 4,
                          "--dtype", "float16")
    assert result.returncode == 0, result.stderr
    assert "3 pairs of 32x32 float16" in result.stdout
    dataset = open_dir(tmp_path / "d")
    assert dataset.dtype == np.dtype("<f2") and dataset.meta["dtype"] == "float16"
    maker = SyntheticPatches(32, seed=4)
    for name, which in ((NOISY_NAME, 0), (CLEAN_NAME, 1)):
        stored = np.fromfile(tmp_path / "d" / name, "<f2").reshape(3, 32, 32)
        for i in range(3):
            np.testing.assert_array_equal(stored[i], maker.pair(i)[which].astype(np.float16))


def test_a_copy_rounds_to_float16_and_back_exactly_and_leaves_the_source(tmp_path):
    source = write_dataset(tmp_path / "f32", 20, 16, seed=3)  # 20 samples: two chunks of 16
    before = {name: (tmp_path / "f32" / name).read_bytes() for name in (NOISY_NAME, CLEAN_NAME)}
    result = make_dataset("--from-dataset", tmp_path / "f32", "--out", tmp_path / "f16",
                          "--dtype", "float16")
    assert result.returncode == 0, result.stderr
    half = open_dir(tmp_path / "f16")
    assert (half.count, half.height, half.width, half.dtype) == (20, 16, 16, np.dtype("<f2"))
    assert half.meta["made_by"]["source_dtype"] == "float32"
    assert half.meta["made_by"]["source_made_by"] == source.meta["made_by"]
    for name, data in before.items():
        assert (tmp_path / "f32" / name).read_bytes() == data  # the source is untouched
        expected = np.frombuffer(data, "<f4").astype("<f2")
        np.testing.assert_array_equal(np.fromfile(tmp_path / "f16" / name, "<f2"), expected)
    back = recast_dataset(half, tmp_path / "back", "float32")  # widening is exact
    for name in (NOISY_NAME, CLEAN_NAME):
        np.testing.assert_array_equal(np.fromfile(tmp_path / "back" / name, "<f4"),
                                      np.fromfile(tmp_path / "f16" / name, "<f2").astype("<f4"))
    assert back.dtype == np.dtype("<f4")


def test_a_copy_refuses_to_replace_anything_and_flags_that_mean_nothing(tmp_path):
    source = write_dataset(tmp_path / "src", 2, 16)
    with pytest.raises(DataError, match=r"is the source's folder; a copy never replaces"):
        recast_dataset(source, tmp_path / "src" / ".." / "src", "float16")
    with pytest.raises(DataError, match=r"already holds float32: nothing to do"):
        recast_dataset(source, tmp_path / "other", "float32")
    write_dataset(tmp_path / "taken", 1, 16)
    result = make_dataset("--from-dataset", tmp_path / "src", "--out", tmp_path / "taken",
                          "--dtype", "float16")
    assert result.returncode == 2
    assert f"{tmp_path / 'taken' / NOISY_NAME}: already exists (overwrite it with --overwrite)" \
        in result.stderr
    result = make_dataset("--from-dataset", tmp_path / "nothing", "--out", tmp_path / "x",
                          "--dtype", "float16")
    assert result.returncode == 2
    assert f"--from-dataset {tmp_path / 'nothing'}: is not a folder" in result.stderr
    result = make_dataset("--from-dataset", tmp_path / "src", "--samples", 3, "--seed", 1,
                          "--out", tmp_path / "y", "--dtype", "float16")
    assert result.returncode == 2
    assert "--samples, --seed: not used with --from-dataset" in result.stderr
    assert not (tmp_path / "y").exists()


def test_values_beyond_float16_are_refused_and_the_old_copy_kept(tmp_path):
    source = write_dataset(tmp_path / "f32", 20, 16, seed=3)
    values = np.memmap(source.noisy, dtype="<f4", mode="r+")
    values[17 * 256 + 5] = 1e5  # float16's largest is 65504: this one would be stored as inf
    values.flush()
    del values
    old = write_dataset(tmp_path / "f16", 2, 16, dtype="float16")
    before = {p.name: p.read_bytes() for p in (tmp_path / "f16").iterdir()}
    result = make_dataset("--from-dataset", tmp_path / "f32", "--out", tmp_path / "f16",
                          "--dtype", "float16", "--overwrite")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == (
        f"python -m cudnn_denoise.make_dataset: error: {tmp_path / 'f32'}: noisy sample 17 holds 100000, beyond "
        "float16's range "
        "(65504 at most): store it as float32 or scale the values; the dataset there is "
        "unchanged\n")
    assert {p.name: p.read_bytes() for p in (tmp_path / "f16").iterdir()} == before
    assert old.count == 2


@pytest.mark.parametrize("size", [16, 64])
def test_float16_files_under_a_dataset_json_saying_float32_without_count_are_caught(tmp_path, size):
    half = write_dataset(tmp_path / "d", 8, size, seed=2, dtype="float16")
    meta_path = tmp_path / "d" / META_NAME
    meta = json.loads(meta_path.read_text())
    del meta["count"]  # without it, the sizes fit float32 samples too (8 float16 = 4 float32)
    meta["dtype"] = "float32"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataError) as caught:
        open_dir(tmp_path / "d")
    assert str(caught.value).startswith(
        f"{meta_path}: says dtype float32, but {half.noisy} holds float16 values (")
    assert str(caught.value).endswith('set "dtype": "float16" and "count" there')
    full = write_dataset(tmp_path / "f32", 4, size, seed=2)  # float32 without count: opened
    meta_path = tmp_path / "f32" / META_NAME
    meta = json.loads(meta_path.read_text())
    del meta["count"]
    meta_path.write_text(json.dumps(meta))
    assert open_dir(tmp_path / "f32").count == full.count
