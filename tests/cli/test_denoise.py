"""The denoise CLI on the CPU (reference backend): raw and MRC inputs, stacks, float16 and int16,
intensity scaling, skip-existing and --overwrite, bad inputs among good ones, and the checks that
come before any work. Tiling itself is tested in tests/inference/test_tiling.py."""

from __future__ import annotations

import io

import numpy as np
import pytest

from cudnn_denoise import checkpoint, denoise
from cudnn_denoise.data.format import write_meta
from cudnn_denoise.inference import tiling
from cudnn_denoise.params import init_params
from cudnn_denoise.network.reference import forward_fixed_order

mrcfile = pytest.importorskip("mrcfile", reason="the MRC tests need the mrc extra: pip install mrcfile")
from micrograph_files import read_mrc, write_mrc  # after the skip: they need mrcfile

CPU = ("--backend", "reference")
TRAIN_MEAN, TRAIN_STD = 0.45, 0.12  # the checkpoint's data_stats


@pytest.fixture
def ckpt(tmp_path):
    """A checkpoint as train writes it: parameters, config and the training inputs' statistics."""
    return checkpoint.save(tmp_path / "ckpt", init_params(4), step=12, extra={
        "config": {"batch_size": 4, "lr": 0.001},
        "data_stats": {"mean": TRAIN_MEAN, "std": TRAIN_STD, "min": 0.0, "max": 1.0, "samples": 16}})


@pytest.fixture
def bare_ckpt(tmp_path):
    """A checkpoint without data_stats."""
    return checkpoint.save(tmp_path / "bare", init_params(4), step=1)


def micrograph(height=37, width=53, seed=0) -> np.ndarray:
    """Real-micrograph-like intensities: counts around 1000, far from the training range [0, 1]."""
    return np.random.default_rng(seed).normal(1000.0, 40.0, (height, width)).astype(np.float32)


def forward(x: np.ndarray) -> np.ndarray:
    """The checkpoint's model on one whole frame (H, W), its edges mirrored (tiling.extended)."""
    h = tiling.HALO
    return forward_fixed_order(init_params(4), tiling.extended(x))[h:-h, h:-h]


def expected(x: np.ndarray, normalize: bool = False) -> np.ndarray:
    """What the documented intensity scaling promises for one frame, written out here in float64."""
    x64 = x.astype(np.float64)
    mean, std = x64.mean(), x64.std()
    y = forward(((x64 - mean) * (TRAIN_STD / std) + TRAIN_MEAN).astype(np.float32)).astype(np.float64)
    return y if normalize else (y - TRAIN_MEAN) * (std / TRAIN_STD) + mean


def close(ours, ref, rtol=1e-5):
    """Within float32 rounding of the scaling's few operations, relative to the values' spread."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= rtol * max(np.abs(ref).max(), 1.0), np.abs(ours - ref).max()


# -- values ----------------------------------------------------------------------------------------

def test_raw_file_with_normalize_is_the_model_forward(cli, bare_ckpt, tmp_path):
    """No data_stats + --normalize: frames go in unchanged, so the output is the forward, bit for bit."""
    frames = np.random.default_rng(1).random((3, 37, 53), dtype=np.float32)
    data = tmp_path / "data"
    data.mkdir()
    frames.tofile(data / "noisy.bin")
    write_meta(data, 37, 53, 3, {"generator": "test"})
    out = tmp_path / "out"
    result = cli(denoise.main, data / "noisy.bin", "--checkpoint", bare_ckpt, "-o", out, "--format", "raw",
                 "--normalize", *CPU)
    assert result.code == 0, result.err
    assert "no data_stats" in result.out
    got = np.fromfile(out / "noisy.denoised.bin", dtype="<f4").reshape(3, 37, 53)
    for i in range(3):
        np.testing.assert_array_equal(got[i], forward(frames[i]))


def test_intensities_go_in_at_the_training_scale_and_come_back(cli, ckpt, tmp_path):
    x = micrograph()
    write_mrc(tmp_path / "a.mrc", x)
    write_mrc(tmp_path / "b.mrc", x * 3.0 - 500.0)  # the same picture on another scale
    out, norm = tmp_path / "out", tmp_path / "norm"
    assert cli(denoise.main, tmp_path / "a.mrc", tmp_path / "b.mrc", "--checkpoint", ckpt, "-o", out, *CPU).code == 0
    assert cli(denoise.main, tmp_path / "a.mrc", "--checkpoint", ckpt, "-o", norm, "--normalize", *CPU).code == 0
    a = read_mrc(out / "a.denoised.mrc")
    close(a, expected(x))
    close(read_mrc(norm / "a.denoised.mrc"), expected(x, normalize=True))
    # standardising first makes the output follow the input's scale: denoise(3x - 500) = 3 denoise(x) - 500
    close(read_mrc(out / "b.denoised.mrc"), a.astype(np.float64) * 3.0 - 500.0)
    # (an untrained model's output is offset by a few standard deviations, on either scale)
    assert abs(a.mean() - x.mean()) < 5 * x.std()  # on the input's scale: counts around 1000
    assert abs(read_mrc(norm / "a.denoised.mrc").mean() - TRAIN_MEAN) < 5 * TRAIN_STD  # on the model's


def test_tile_size_is_used_and_exact(cli, ckpt, tmp_path):
    write_mrc(tmp_path / "a.mrc", micrograph(60, 70))
    whole, tiles = tmp_path / "whole", tmp_path / "tiles"
    assert cli(denoise.main, tmp_path / "a.mrc", "--checkpoint", ckpt, "-o", whole, *CPU).code == 0
    result = cli(denoise.main, tmp_path / "a.mrc", "--checkpoint", ckpt, "-o", tiles, "--tile-size", 16, *CPU)
    assert result.code == 0, result.err
    assert "tiles of 16" in result.out
    close(read_mrc(tiles / "a.denoised.mrc"), read_mrc(whole / "a.denoised.mrc"), rtol=1e-6)


# -- MRC -------------------------------------------------------------------------------------------

def test_mrc_round_trip_keeps_the_header_and_validates(cli, ckpt, tmp_path):
    # x, y and z voxel sizes differ, so that a swap of two of them shows
    src = write_mrc(tmp_path / "mic.mrc", micrograph(), voxel_size=(0.83, 1.06, 2.5),
                    origin=(12.5, -3.0, 0.0), labels=["motion corrected", "dose weighted"])
    out = tmp_path / "out"
    result = cli(denoise.main, src, "--checkpoint", ckpt, "-o", out, *CPU)
    assert result.code == 0, result.err
    assert f"{src} -> {out / 'mic.denoised.mrc'}" in result.out
    dst = out / "mic.denoised.mrc"
    report = io.StringIO()
    assert mrcfile.validate(dst, print_file=report), report.getvalue()
    with mrcfile.open(src) as before, mrcfile.open(dst) as after:
        assert after.header.mode == 2 and after.data.dtype == np.float32
        assert after.data.shape == before.data.shape
        voxel = after.voxel_size
        assert (voxel.x, voxel.y, voxel.z) == pytest.approx((0.83, 1.06, 2.5), rel=1e-6)
        assert after.header.origin.item() == before.header.origin.item()
        labels = after.get_labels()
        assert labels[:-1] == [label.rstrip() for label in before.get_labels()]
        assert labels[-1].startswith("cudnn_denoise") and "ckpt step 12" in labels[-1]
        data = after.data.astype(np.float64)
        assert after.header.dmin == pytest.approx(data.min(), rel=1e-6)
        assert after.header.dmax == pytest.approx(data.max(), rel=1e-6)
        assert after.header.dmean == pytest.approx(data.mean(), rel=1e-5)
        assert after.header.rms == pytest.approx(data.std(), rel=1e-4)
    # no temporary left
    assert sorted(p.name for p in out.iterdir()) == ["mic.denoised.mrc", "run.log"]


def test_mrcs_stack_is_denoised_frame_by_frame(cli, ckpt, tmp_path):
    frames = np.stack([micrograph(seed=s) * (1 + s) for s in range(3)])  # each frame its own scale
    src = write_mrc(tmp_path / "movie.mrcs", frames, voxel_size=0.8, stack=True)
    out = tmp_path / "out"
    result = cli(denoise.main, src, "--checkpoint", ckpt, "-o", out, *CPU)
    assert result.code == 0, result.err
    assert "3 frames of 37x53" in result.out
    assert "3 micrographs" in result.out
    dst = out / "movie.denoised.mrcs"
    assert mrcfile.validate(dst, print_file=io.StringIO())
    with mrcfile.open(dst) as mrc:
        assert mrc.is_image_stack() and mrc.data.shape == (3, 37, 53)
        assert mrc.voxel_size.x == pytest.approx(0.8)
        for i in range(3):
            close(mrc.data[i], expected(frames[i]))


@pytest.mark.parametrize("dtype", [np.float16, np.int16])
def test_float16_and_int16_inputs_read_as_float32(cli, ckpt, tmp_path, dtype):
    """Values exact in both types: the outputs must equal those of the same file in float32."""
    values = np.random.default_rng(5).integers(-1000, 1000, (37, 53)).astype(np.float32)
    write_mrc(tmp_path / "f32.mrc", values)
    write_mrc(tmp_path / "low.mrc", values.astype(dtype))
    with mrcfile.open(tmp_path / "low.mrc") as mrc:
        assert mrc.header.mode == {np.float16: 12, np.int16: 1}[dtype]
    out = tmp_path / "out"
    assert cli(denoise.main, tmp_path / "f32.mrc", tmp_path / "low.mrc", "--checkpoint", ckpt, "-o", out, *CPU).code == 0
    with mrcfile.open(out / "low.denoised.mrc") as mrc:
        assert mrc.header.mode == 2
    np.testing.assert_array_equal(read_mrc(out / "low.denoised.mrc"), read_mrc(out / "f32.denoised.mrc"))


# -- reruns ----------------------------------------------------------------------------------------

def test_existing_outputs_are_skipped_unless_overwrite(cli, ckpt, tmp_path):
    for name in "abc":
        write_mrc(tmp_path / f"{name}.mrc", micrograph(seed=ord(name)))
    out = tmp_path / "out"
    assert cli(denoise.main, tmp_path / "a.mrc", "--checkpoint", ckpt, "-o", out, *CPU).code == 0
    first = (out / "a.denoised.mrc").read_bytes()
    (out / "a.denoised.mrc").write_bytes(b"kept")  # as if a stopped run had finished it
    result = cli(denoise.main, tmp_path, "--checkpoint", ckpt, "-o", out, *CPU)  # the folder: a, b, c
    assert result.code == 0, result.err
    assert "skipping 1 input whose output exists" in result.out
    assert "done: 2 files" in result.out
    assert (out / "a.denoised.mrc").read_bytes() == b"kept"
    assert (out / "b.denoised.mrc").exists() and (out / "c.denoised.mrc").exists()
    result = cli(denoise.main, tmp_path / "a.mrc", "--checkpoint", ckpt, "-o", out, "--overwrite", *CPU)
    assert result.code == 0, result.err
    assert (out / "a.denoised.mrc").read_bytes() == first


def test_outputs_beside_the_inputs_are_not_denoised_again(cli, ckpt, tmp_path):
    write_mrc(tmp_path / "a.mrc", micrograph())
    for _ in range(2):
        result = cli(denoise.main, tmp_path, "--checkpoint", ckpt, "-o", tmp_path, *CPU)
        assert result.code == 0, result.err
    assert "ignoring 1 input " in result.out
    assert sorted(p.name for p in tmp_path.glob("*.mrc")) == ["a.denoised.mrc", "a.mrc"]


# -- bad inputs and early checks -------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:Data array contains NaN:RuntimeWarning")  # mrcfile, writing nan.mrcs
def test_bad_inputs_are_named_and_skipped_and_the_run_goes_on(cli, ckpt, tmp_path):
    good1 = write_mrc(tmp_path / "good1.mrc", micrograph(seed=1))
    (tmp_path / "broken.mrc").write_bytes(b"not an MRC file" * 100)
    volume = write_mrc(tmp_path / "volume.mrc", np.zeros((4, 8, 8), np.float32))  # ISPG 1: a volume
    nan = micrograph(seed=3)
    nan[5, 5] = np.nan
    write_mrc(tmp_path / "nan.mrcs", np.stack([micrograph(seed=2), nan]), stack=True)  # fails at frame 1
    good2 = write_mrc(tmp_path / "good2.mrc", micrograph(seed=2))
    out = tmp_path / "out"
    result = cli(denoise.main, good1, tmp_path / "broken.mrc", volume, tmp_path / "nan.mrcs", good2,
                 tmp_path / "missing.mrc", "--checkpoint", ckpt, "-o", out, *CPU)
    assert result.code == denoise.EXIT_BAD_INPUTS == 4
    assert "Traceback" not in result.err
    err = result.err.strip().splitlines()
    assert any(line.startswith("skipped: ") and "broken.mrc" in line for line in err), result.err
    assert any("volume.mrc" in line and "volume" in line.split("volume.mrc")[1] for line in err), result.err
    assert any("nan.mrcs frame 1" in line and "NaN" in line for line in err), result.err
    assert any("missing.mrc: no such file" in line for line in err), result.err
    assert err[-1] == f"{result.prog}: error: 4 of 6 inputs could not be denoised (named above)"
    # no partial
    assert sorted(p.name for p in out.iterdir()) == ["good1.denoised.mrc", "good2.denoised.mrc",
                                                    "run.log"]


def test_raw_file_without_a_shape_is_a_bad_input(cli, ckpt, tmp_path):
    np.zeros((8, 8), np.float32).tofile(tmp_path / "frames.bin")
    result = cli(denoise.main, tmp_path / "frames.bin", "--checkpoint", ckpt, "-o", tmp_path / "out", *CPU)
    assert result.code == 4
    assert "needs --height and --width, or a dataset.json" in result.err
    result = cli(denoise.main, tmp_path / "frames.bin", "--checkpoint", ckpt, "-o", tmp_path / "out",
                 "--height", 8, "--width", 8, *CPU)
    assert result.code == 0, result.err
    assert (tmp_path / "out" / "frames.denoised.mrcs").exists()


def test_output_folder_is_checked_before_any_work(cli, ckpt, tmp_path):
    src = write_mrc(tmp_path / "a.mrc", micrograph())
    (tmp_path / "file").write_text("")
    result = cli(denoise.main, src, "--checkpoint", tmp_path / "no-such-ckpt", "-o", tmp_path / "file", *CPU)
    assert result.code == 2
    assert "file: exists and is not a folder" in result.one_line_error()  # before the checkpoint is read
    assert "backend" not in result.out


def test_two_inputs_for_one_output_are_refused(cli, ckpt, tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        write_mrc(tmp_path / folder / "a.mrc", micrograph())
    result = cli(denoise.main, tmp_path / "x", tmp_path / "y", "--checkpoint", ckpt, "-o", tmp_path / "out", *CPU)
    assert result.code == 2
    assert "would both be written to" in result.one_line_error()
    assert not list((tmp_path / "out").iterdir())


def test_previews_that_would_collide_are_refused_before_anything_is_written(cli, ckpt, tmp_path):
    # x.mrc and x.mrcs have two outputs, x.denoised.mrc and x.denoised.mrcs, but one preview name
    write_mrc(tmp_path / "x.mrc", micrograph())
    write_mrc(tmp_path / "x.mrcs", micrograph(seed=1)[None], stack=True)
    out = tmp_path / "out"
    result = cli(denoise.main, tmp_path / "x.mrc", tmp_path / "x.mrcs", "--checkpoint", ckpt, "-o", out,
                 "--preview", *CPU)
    assert result.code == 2
    line = result.one_line_error()
    assert "x.mrc and " in line and "x.mrcs would both write the preview" in line and "x.denoised.png" in line
    assert not out.exists() or not list(out.iterdir())
    without = cli(denoise.main, tmp_path / "x.mrc", tmp_path / "x.mrcs", "--checkpoint", ckpt, "-o", out, *CPU)
    assert without.code == 0, without.err  # without --preview the two outputs do not collide


def test_a_dangling_symlink_among_the_inputs_is_named_and_skipped(cli, ckpt, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write_mrc(src / "a.mrc", micrograph())
    (src / "b.mrc").symlink_to(src / "deleted.mrc")
    result = cli(denoise.main, src, "--checkpoint", ckpt, "-o", tmp_path / "out", *CPU)
    assert result.code == 4, result.err
    assert "skipped: " in result.err and "b.mrc: a dangling symlink" in result.err
    assert "Traceback" not in result.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.suffix == ".mrc") == ["a.denoised.mrc"]


def test_a_bad_checkpoint_stops_at_once(cli, ckpt, tmp_path):
    src = write_mrc(tmp_path / "a.mrc", micrograph())
    manifest = ckpt / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"step": 12', '"step": -1'))
    result = cli(denoise.main, src, "--checkpoint", ckpt, "-o", tmp_path / "out", *CPU)
    assert result.code == 2
    assert "step is -1" in result.one_line_error()


@pytest.mark.parametrize("stats", [{"mean": 0.5, "std": 0.0}, {"mean": "x", "std": 1.0}])
def test_malformed_data_stats_stop_at_once(cli, tmp_path, stats):
    ckpt = checkpoint.save(tmp_path / "ckpt", init_params(0), step=1, extra={"data_stats": stats})
    result = cli(denoise.main, write_mrc(tmp_path / "a.mrc", micrograph()), "--checkpoint", ckpt, *CPU,
                 "-o", tmp_path / "out")
    assert result.code == 2
    assert "data_stats" in result.one_line_error()


def test_a_train_run_folder_is_taken_for_its_checkpoint(cli, tmp_path):
    run = tmp_path / "runs" / "train"
    run.mkdir(parents=True)
    stats = {"mean": TRAIN_MEAN, "std": TRAIN_STD}
    checkpoint.save(run / "checkpoint", init_params(4), step=3, extra={"data_stats": stats})
    src = write_mrc(tmp_path / "a.mrc", micrograph())
    result = cli(denoise.main, src, "--checkpoint", run, "-o", tmp_path / "out", *CPU)
    assert result.code == 0, result.err
    assert f"checkpoint: {run / 'checkpoint'} (step 3)" in result.out
    close(read_mrc(tmp_path / "out" / "a.denoised.mrc"), expected(micrograph()))


def test_no_data_stats_needs_normalize(cli, bare_ckpt, tmp_path):
    src = write_mrc(tmp_path / "a.mrc", micrograph())
    result = cli(denoise.main, src, "--checkpoint", bare_ckpt, "-o", tmp_path / "out", *CPU)
    assert result.code == 2
    assert "has no data_stats" in result.one_line_error() and "--normalize" in result.one_line_error()


def test_help_names_every_exit_code(capsys):
    with pytest.raises(SystemExit):
        denoise.main(["--help"])
    text = capsys.readouterr().out
    for code in ("0", "1", "2", "4", "130"):
        assert f"\n  {code} " in text


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_checkpoint_with_a_non_finite_parameter_is_refused(cli, tmp_path, bad):
    values = init_params(4)
    values[16 * 9 + 3] = bad  # conv1.bias[3]
    ckpt = checkpoint.save(tmp_path / "ckpt", values, step=1)
    write_mrc(tmp_path / "a.mrc", micrograph())
    out = tmp_path / "out"
    result = cli(denoise.main, tmp_path / "a.mrc", "--checkpoint", ckpt, "-o", out, *CPU)
    assert result.code == 2
    assert result.one_line_error() == (
        f"error: {ckpt / 'params.bin'}: 1 parameter is NaN or infinite, the first conv1.bias[3] "
        f"({bad}): a diverged run's parameters denoise every micrograph into NaN")
    assert not out.exists() or not any(out.glob("*.denoised.*"))


def test_inputs_of_another_pixel_size_than_the_training_data_s_get_one_warning_each(cli, tmp_path):
    """Trained at 1.06 A/px: two inputs at 4.24 give one line naming the first and both sizes;
    1.065 is within 1%; an input without a pixel size (0 in its header) says nothing. They are
    all denoised."""
    ckpt = checkpoint.save(tmp_path / "ckpt", init_params(4), step=1, extra={
        "data_stats": {"mean": TRAIN_MEAN, "std": TRAIN_STD}, "data": {"pixel_size": [1.06, 1.06]}})
    sizes = {"a": 4.24, "b": 4.24, "c": 1.065, "d": 0.0, "e": (1.06, 1.2, 1.0)}
    for name, size in sizes.items():
        write_mrc(tmp_path / f"{name}.mrc", micrograph(), voxel_size=size)
    inputs = [tmp_path / f"{name}.mrc" for name in sizes]
    result = cli(denoise.main, *inputs, "--checkpoint", ckpt, "-o", tmp_path / "out", *CPU)
    assert result.code == 0, result.err
    warnings = [line for line in result.err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: {tmp_path / 'a.mrc'} (and 1 more): pixel size 4.24 A/px, the model was trained at "
        "1.06 A/px; it denoises features at the scale in pixels it learned, so bin or rescale the "
        "micrographs to its pixel size",
        f"warning: {tmp_path / 'e.mrc'}: pixel size 1.06 x 1.2 A/px, the model was trained at 1.06 A/px; "
        "it denoises features at the scale in pixels it learned, so bin or rescale the micrographs "
        "to its pixel size"]
    assert all((tmp_path / "out" / f"{name}.denoised.mrc").exists() for name in sizes)


def test_a_checkpoint_without_the_training_pixel_size_warns_of_none(cli, ckpt, tmp_path):
    write_mrc(tmp_path / "a.mrc", micrograph(), voxel_size=4.24)
    result = cli(denoise.main, tmp_path / "a.mrc", "--checkpoint", ckpt, "-o", tmp_path / "out", *CPU)
    assert result.code == 0, result.err
    assert "warning:" not in result.err
