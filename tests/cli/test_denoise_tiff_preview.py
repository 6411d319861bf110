"""denoise on TIFF inputs (the same pixels as an MRC give the same output), --preview's PNG (decoded
with Pillow, panels recomputed here from the documented rule), and run.log beside the outputs."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest
from micrograph_files import read_mrc, write_mrc, write_tiff

from cudnn_denoise import checkpoint, denoise
from cudnn_denoise.params import init_params

Image = pytest.importorskip("PIL.Image",
                            reason="decoding the previews needs Pillow (matplotlib brings it)")

CPU = ("--backend", "reference")


@pytest.fixture
def ckpt(tmp_path):
    return checkpoint.save(tmp_path / "ckpt", init_params(4), step=3, extra={
        "data_stats": {"mean": 0.45, "std": 0.12, "min": 0.0, "max": 1.0, "samples": 4}})


def counts(shape, seed):
    """Micrograph-like uint16 counts with some structure (a bright disc) to look at."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices(shape[-2:])
    disc = ((rows - shape[-2] / 2) ** 2 + (cols - shape[-1] / 3) ** 2 < (shape[-2] / 4) ** 2) * 40.0
    return rng.poisson(100.0 + disc, shape).astype(np.uint16)


def test_a_tiff_denoises_as_the_same_pixels_in_an_mrc(cli, ckpt, tmp_path):
    single, pages = counts((45, 61), 1), counts((2, 30, 40), 2)
    tif_dir, mrc_dir = tmp_path / "tif", tmp_path / "mrc"
    tif_dir.mkdir(), mrc_dir.mkdir()
    write_tiff(tif_dir / "one.tiff", single)
    write_tiff(tif_dir / "pages.tif", pages)
    write_mrc(mrc_dir / "one.mrc", single)
    write_mrc(mrc_dir / "pages.mrcs", pages, stack=True)
    for folder in (tif_dir, mrc_dir):
        result = cli(denoise.main, "--checkpoint", ckpt, "-o", folder / "out", *CPU, folder)
        assert result.code == 0, result.err
    np.testing.assert_array_equal(read_mrc(tif_dir / "out" / "one.denoised.mrc"),
                                  read_mrc(mrc_dir / "out" / "one.denoised.mrc"))
    stack = read_mrc(tif_dir / "out" / "pages.denoised.mrc")  # a multi-page TIFF: an MRC stack
    assert stack.shape == (2, 30, 40)
    np.testing.assert_array_equal(stack, read_mrc(mrc_dir / "out" / "pages.denoised.mrcs"))
    with mrcfile.open(tif_dir / "out" / "pages.denoised.mrc") as mrc:
        assert mrc.is_image_stack()


def panel(x: np.ndarray, factor: int) -> np.ndarray:
    """The documented preview of one image: factor x factor block means, 1st percentile black, 99th
    white, linear between, clipped."""
    h, w = x.shape[0] // factor, x.shape[1] // factor
    blocks = x[: h * factor, : w * factor].astype(np.float64).reshape(h, factor, w, factor)
    binned = blocks.mean(axis=(1, 3))
    low, high = np.percentile(binned, [1, 99])
    return np.clip((binned - low) / (high - low) * 255.0, 0, 255)


def test_preview_shows_input_and_output_side_by_side_with_one_contrast_rule(cli, ckpt, tmp_path):
    x = counts((100, 130), 3)
    write_tiff(tmp_path / "mic.tif", x)
    write_mrc(tmp_path / "stack.mrcs", counts((2, 30, 30), 4), stack=True)
    out = tmp_path / "out"
    result = cli(denoise.main, "--checkpoint", ckpt, "-o", out, *CPU, "--preview",
                 "--preview-size", 40, tmp_path / "mic.tif", tmp_path / "stack.mrcs")
    assert result.code == 0, result.err
    assert "previews beside them" in result.out
    png = np.asarray(Image.open(out / "mic.denoised.png"))
    factor = 4  # ceil(130 / 40): panels of 25 x 32
    assert png.dtype == np.uint8 and png.shape == (25, 32 + 8 + 32)
    assert (png[:, 32:40] == 255).all()
    left = panel(x, factor)
    right = panel(read_mrc(out / "mic.denoised.mrc"), factor)
    assert np.abs(png[:, :32] - left).max() <= 1.0  # the model-scale input gives the same picture
    assert np.abs(png[:, 40:] - right).max() <= 1.0
    assert np.abs(left - right).mean() > 5  # the denoised panel is not the input again
    assert sorted(p.name for p in out.glob("*.png")) == [
        "mic.denoised.png", "stack.denoised.0000.png", "stack.denoised.0001.png"]


def test_run_log_holds_what_was_printed(cli, ckpt, tmp_path):
    write_tiff(tmp_path / "good.tif", counts((20, 20), 5))
    (tmp_path / "bad.tif").write_bytes(b"II*\0" + b"\0" * 40)
    out = tmp_path / "out"
    result = cli(denoise.main, "--checkpoint", ckpt, "-o", out, *CPU, tmp_path / "good.tif",
                 tmp_path / "bad.tif")
    assert result.code == 4
    log = (out / "run.log").read_text()
    header, *rest = log.splitlines()
    assert header.startswith("=== ") and " python -m cudnn_denoise.denoise --checkpoint " in header
    assert header.endswith("(cudnn_denoise 0.1.0)")
    # stdout and stderr, each line once, in the order they came (the skip before the summary)
    assert sorted(rest) == sorted((result.out + result.err).splitlines())
    skipped = f"skipped: {tmp_path / 'bad.tif'}: not a readable TIFF file"
    assert next(line for line in rest if line.startswith(("skipped", "done"))).startswith(skipped)

    again = cli(denoise.main, "--checkpoint", ckpt, "-o", out, *CPU, tmp_path / "good.tif")
    assert again.code == 0
    assert (out / "run.log").read_text().startswith(log)  # appended to, not replaced
    assert (out / "run.log").read_text().count("=== ") == 2
