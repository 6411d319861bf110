"""convert.py on MRC and TIFF files written with mrcfile and tifffile: patch counts and positions,
the scaling, dataset.json's new keys, bit-for-bit reproducibility, even/odd pairs, and bad files
among good ones. The expected values follow the documented rules, computed here with NumPy."""

import json

import numpy as np
import pytest
from micrograph_files import identity_micrograph, write_mrc, write_tiff

from cudnn_denoise.micrographs.convert import NothingUsable, convert
from cudnn_denoise.data.format import CLEAN_NAME, META_NAME, NOISY_NAME, DataError, check_values
from cudnn_denoise.data.micrographs import Preprocessing


def unit(frames, lo_pct=0.1, hi_pct=99.9):
    """The documented scaling of frames that share one map: their pooled percentiles to 0 and 1."""
    low, high = np.percentile(np.concatenate([f.ravel() for f in frames]), [lo_pct, hi_pct])
    return [np.clip((f.astype(np.float64) - low) / (high - low), 0, 1) for f in frames]


def samples(dataset):
    shape = (dataset.count, dataset.height, dataset.width)
    return (np.fromfile(dataset.noisy, "<f4").reshape(shape),
            np.fromfile(dataset.clean, "<f4").reshape(shape))


def rng_image(shape, seed, dtype=np.float32, scale=50.0, offset=1000.0):
    return (np.random.default_rng(seed).normal(offset, scale, shape)).astype(dtype)


@pytest.fixture
def mixed(tmp_path):
    """A float32 micrograph of odd size with an anisotropic voxel size, an int16 .mrcs stack of 3
    frames and a uint16 TIFF of 2 pages, in one folder."""
    folder = tmp_path / "mics"
    folder.mkdir()
    files = {
        "a": write_mrc(folder / "a.mrc", rng_image((70, 100), 1), voxel_size=(1.1, 1.3, 1.0)),
        "b": write_mrc(folder / "b.mrcs", rng_image((3, 40, 50), 2, np.int16),
                       voxel_size=(1.1, 1.3, 1.0), stack=True),
        "t": write_tiff(folder / "t.tif", rng_image((2, 33, 65), 3, np.uint16, 9.0, 100.0)),
    }
    return folder, files


def test_patch_counts_positions_and_scaling(mixed, tmp_path):
    folder, files = mixed
    report = convert(tmp_path / "ds", Preprocessing(size=32), inputs=[str(folder)])
    # a: rows 0, 32 and columns 0, 32, 64 (6); b: one 32x32 per 40x50 frame (3);
    # t: 1 x 2 per page (4)
    dataset = report.dataset
    assert (dataset.count, dataset.height, dataset.width) == (13, 32, 32)
    assert report.micrographs == 6 and report.skipped == []
    noisy, clean = samples(dataset)
    with_a = unit([np.asarray(files_data(files["a"]), np.float64)])[0]
    for k, (r, c) in enumerate([(0, 0), (0, 32), (0, 64), (32, 0), (32, 32), (32, 64)]):
        np.testing.assert_allclose(clean[k], with_a[r:r + 32, c:c + 32], atol=2e-6)
    for frame in range(3):  # each frame of the stack scaled on its own
        scaled = unit([files_data(files["b"])[frame]])[0]
        np.testing.assert_allclose(clean[6 + frame], scaled[:32, :32], atol=2e-6)
    pages = files_data(files["t"])
    np.testing.assert_allclose(clean[12], unit([pages[1]])[0][:32, 32:64], atol=2e-6)
    assert 0.0 <= noisy.min() and noisy.max() <= 1.0 and clean.min() == 0.0 and clean.max() == 1.0
    check_values(dataset)

    meta = json.loads((tmp_path / "ds" / META_NAME).read_text())
    assert meta["value_range"] == [0.0, 1.0]
    assert meta["made_by"] == {
        "generator": "cudnn_denoise.data.micrographs", "generator_version": 1, "mode": "noise",
        "size": 32, "stride": 32, "border": 0, "edges": "drop", "percentiles": [0.1, 99.9],
        "seed": 0, "dose": 5.0, "gaussian_sigma": 0.05}
    assert meta["pixel_size"] is None  # the TIFF's is unknown
    where = [(s["file"].rsplit("/", 1)[1], s["frame"], s["first_sample"], s["samples"],
              s["pixel_size"]) for s in meta["sources"]]
    assert where == [("a.mrc", 0, 0, 6, [1.1, 1.3]), ("b.mrcs", 0, 6, 1, [1.1, 1.3]),
                     ("b.mrcs", 1, 7, 1, [1.1, 1.3]), ("b.mrcs", 2, 8, 1, [1.1, 1.3]),
                     ("t.tif", 0, 9, 2, None), ("t.tif", 1, 11, 2, None)]
    low, high = np.percentile(files_data(files["a"]), [0.1, 99.9])
    first = meta["sources"][0]
    assert (first["low"], first["high"]) == pytest.approx((low, high), rel=1e-6)


def files_data(path):
    """The pixels of an MRC or TIFF file as written, as float64."""
    if path.suffix == ".tif":
        import tifffile

        return tifffile.imread(path).astype(np.float64)
    import mrcfile

    with mrcfile.open(path, permissive=True) as mrc:
        return mrc.data.astype(np.float64)


def test_an_anisotropic_pixel_size_is_kept(tmp_path):
    for name in ("x", "y"):
        write_mrc(tmp_path / f"{name}.mrc", rng_image((40, 40), 4), voxel_size=(0.83, 0.91, 1.0))
    convert(tmp_path / "ds", Preprocessing(size=32), inputs=[str(tmp_path / "*.mrc")])
    meta = json.loads((tmp_path / "ds" / META_NAME).read_text())
    assert meta["pixel_size"] == [0.83, 0.91]
    assert [s["pixel_size"] for s in meta["sources"]] == [[0.83, 0.91]] * 2


def test_the_same_inputs_and_settings_give_the_same_bytes(mixed, tmp_path):
    folder, _ = mixed
    p = Preprocessing(size=16, seed=3, edges="cover")
    one = convert(tmp_path / "one", p, inputs=[str(folder)]).dataset
    two = convert(tmp_path / "two", p, inputs=[str(folder)], workers=2).dataset
    other = convert(tmp_path / "other", Preprocessing(size=16, seed=4, edges="cover"),
                    inputs=[str(folder)]).dataset
    for name in (NOISY_NAME, CLEAN_NAME, META_NAME):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert one.clean.read_bytes() == other.clean.read_bytes()  # the seed moves the noise only
    assert one.noisy.read_bytes() != other.noisy.read_bytes()
    assert one.count == two.count


def test_even_odd_halves_are_scaled_together_and_paired_both_ways(tmp_path):
    sums = tmp_path / "sums"
    sums.mkdir()
    even = identity_micrograph(40, 70)
    odd = even[::-1, ::-1] * np.float32(1.5) + np.float32(300.0)  # other values, other spread
    write_mrc(sums / "m_EVN.mrc", even)
    write_mrc(sums / "m_ODD.mrc", odd)
    p = Preprocessing(mode="even-odd", size=32)
    dataset = convert(tmp_path / "ds", p, evens=[str(sums)], odds=[str(sums)]).dataset
    even_unit, odd_unit = unit([even, odd])
    noisy, clean = samples(dataset)
    assert dataset.count == 4  # two patches (columns 0 and 32), each both ways round
    for k, c in enumerate((0, 32)):
        e, o = even_unit[:32, c:c + 32], odd_unit[:32, c:c + 32]
        np.testing.assert_allclose(noisy[2 * k], e, atol=2e-6)
        np.testing.assert_allclose(clean[2 * k], o, atol=2e-6)
        np.testing.assert_allclose(noisy[2 * k + 1], o, atol=2e-6)
        np.testing.assert_allclose(clean[2 * k + 1], e, atol=2e-6)

    one_way = convert(tmp_path / "one", Preprocessing(mode="even-odd", size=32, both_ways=False),
                      evens=[str(sums / "m_EVN.mrc")], odds=[str(sums / "m_ODD.mrc")]).dataset
    noisy1, clean1 = samples(one_way)
    np.testing.assert_array_equal(noisy1, noisy[0::2])
    np.testing.assert_array_equal(clean1, clean[0::2])
    meta = json.loads((tmp_path / "ds" / META_NAME).read_text())
    assert meta["made_by"]["mode"] == "even-odd" and meta["made_by"]["both_ways"] is True
    assert "dose" not in meta["made_by"]
    source = meta["sources"][0]
    assert (source["even"], source["odd"]) == (str(sums / "m_EVN.mrc"), str(sums / "m_ODD.mrc"))
    assert (source["patches"], source["samples"]) == (2, 4)


def test_halves_of_different_shapes_are_named(tmp_path):
    write_mrc(tmp_path / "m_EVN.mrc", rng_image((40, 40), 1))
    write_mrc(tmp_path / "m_ODD.mrc", rng_image((40, 48), 2))
    write_mrc(tmp_path / "n_EVN.mrc", rng_image((40, 40), 3))
    write_mrc(tmp_path / "n_ODD.mrc", rng_image((40, 40), 4))
    lines = []
    report = convert(tmp_path / "ds", Preprocessing(mode="even-odd", size=32),
                     evens=[str(tmp_path)], odds=[str(tmp_path)], on_skip=lines.append)
    assert report.dataset.count == 2 and report.skipped == lines
    assert lines == [(f"{tmp_path / 'm_EVN.mrc'} (1 frame of 40x40) and "
                      f"{tmp_path / 'm_ODD.mrc'} (1 frame of 40x48): the two halves differ "
                      "in shape")]


def test_bad_files_are_named_and_skipped_and_the_rest_written(tmp_path):
    folder = tmp_path / "mics"
    folder.mkdir()
    write_mrc(folder / "good.mrc", rng_image((40, 40), 1))
    (folder / "garbage.mrc").write_bytes(b"not an MRC file" * 100)
    write_tiff(folder / "cut.tif", rng_image((3, 40, 40), 2, np.uint16))
    whole = (folder / "cut.tif").read_bytes()
    (folder / "cut.tif").write_bytes(whole[: len(whole) // 2])  # its last pages' data are gone
    write_mrc(folder / "volume.mrc", rng_image((4, 40, 40), 3))  # 3-D, not a stack
    write_mrc(folder / "small.mrc", rng_image((40, 20), 4))
    nan = rng_image((40, 40), 5)
    nan[3, 4] = np.nan
    with pytest.warns(RuntimeWarning, match="NaN"):  # mrcfile's, on writing
        write_mrc(folder / "nan.mrc", nan)
    write_mrc(folder / "flat.mrc", np.full((40, 40), 5.0, np.float32))
    lines = []
    report = convert(tmp_path / "ds", Preprocessing(size=32),
                     inputs=[str(folder), str(folder / "none*.mrc")], on_skip=lines.append)
    assert report.skipped == lines
    named = sorted(line.split(":")[0].rsplit("/", 1)[-1] for line in lines)
    assert named == ["cut.tif", "flat.mrc", "garbage.mrc", "nan.mrc", "none*.mrc", "small.mrc",
                     "volume.mrc"]
    said = "\n".join(lines)
    assert "garbage.mrc: not a readable MRC file" in said
    assert "small.mrc: 40x20 holds no 32x32 patch" in said
    assert "nan.mrc: holds 1 NaN and 0 infinite values" in said
    assert "flat.mrc: its 0.1 and 99.9 percentiles are both 5.0" in said
    assert "volume.mrc: a 3-D volume" in said
    assert "cut.tif: not a readable TIFF file (" in said  # its chain of pages is broken
    # good.mrc and the readable pages of cut.tif are in the dataset.
    meta = json.loads((tmp_path / "ds" / META_NAME).read_text())
    files = {s["file"].rsplit("/", 1)[1] for s in meta["sources"]}
    assert "good.mrc" in files and files <= {"good.mrc", "cut.tif"}


def test_a_damaged_page_is_named_and_the_other_pages_used(tmp_path):
    import tifffile

    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, rng_image((3, 40, 40), 6, np.uint16), photometric="minisblack",
                     compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset, length = tif.pages[1].dataoffsets[0], tif.pages[1].databytecounts[0]
    data = bytearray(path.read_bytes())
    data[offset:offset + length] = b"\xff" * length  # page 1's compressed pixels, garbled
    path.write_bytes(bytes(data))
    lines = []
    report = convert(tmp_path / "ds", Preprocessing(size=32), inputs=[str(path)],
                     on_skip=lines.append)
    assert len(lines) == 1 and lines[0].startswith(f"{path}: page 1 cannot be read (")
    meta = json.loads((tmp_path / "ds" / META_NAME).read_text())
    assert [s["frame"] for s in meta["sources"]] == [0, 2] and report.dataset.count == 2


def test_when_nothing_is_usable_nothing_is_written_and_an_old_dataset_stays(tmp_path):
    good = write_mrc(tmp_path / "a.mrc", rng_image((16, 16), 1))
    convert(tmp_path / "ds", Preprocessing(size=16), inputs=[str(good)])
    names = (NOISY_NAME, CLEAN_NAME, META_NAME)
    before = {name: (tmp_path / "ds" / name).read_bytes() for name in names}
    write_mrc(tmp_path / "flat.mrc", np.zeros((40, 40), np.float32))
    with pytest.raises(NothingUsable, match="none of the 1 micrograph"):
        convert(tmp_path / "ds", Preprocessing(size=16), inputs=[str(tmp_path / "flat.mrc")],
                overwrite=True)
    assert {name: (tmp_path / "ds" / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == sorted(before)  # no partial file
    with pytest.raises(DataError, match="no input micrographs: .*nothing.mrc: no such file"):
        convert(tmp_path / "ds2", Preprocessing(size=16), inputs=[str(tmp_path / "nothing.mrc")])
    with pytest.raises(DataError, match="already exists"):
        convert(tmp_path / "ds", Preprocessing(size=16), inputs=[str(tmp_path / "a.mrc")])
