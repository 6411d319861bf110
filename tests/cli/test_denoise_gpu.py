"""The denoiser on the cuDNN backend: a 4096 x 4096 micrograph tiled against whole, the tile
chosen from free memory, a small image against the NumPy reference, and the CLI's throughput.

Tolerances follow the math mode, once: strict fp32 (CUDNN_FMA_MATH). Tiled against whole is the
same model on other window shapes (cuDNN may pick other algorithms): 1e-6 of the output's largest
magnitude. Against the NumPy float32 reference: 1e-5, as the train and dump GPU tests.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from cudnn_denoise import checkpoint, denoise
from cudnn_denoise.inference import tiling
from cudnn_denoise.inference.engine import Denoiser
from cudnn_denoise.params import init_params
from cudnn_denoise.network.reference import ReferenceModel

pytestmark = pytest.mark.gpu

SIZE = 4096


def rel_max_error(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def micrograph(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size), dtype=np.float32)


def test_4096_tiled_matches_whole():
    params = init_params(0)
    x = micrograph(SIZE)
    whole_model = Denoiser("cudnn", params, math="fp32", tile=SIZE)
    tiled_model = Denoiser("cudnn", params, math="fp32", tile=1000)
    try:
        whole = whole_model.denoise(x)
        tiled = tiled_model.denoise(x)
        assert max(tiling.window_shape(SIZE, SIZE, tiled_model.tile_for(SIZE, SIZE))) < SIZE  # really tiled
    finally:
        whole_model.close()
        tiled_model.close()
    assert np.isfinite(whole).all()
    assert rel_max_error(tiled, whole) < 1e-6


def test_tile_from_free_memory_covers_a_4096_micrograph():
    denoiser = Denoiser("cudnn", init_params(0), math="fp32")
    try:
        tile = denoiser.tile_for(SIZE, SIZE)
        out = denoiser.denoise(micrograph(SIZE, seed=1))
    finally:
        denoiser.close()
    assert 32 <= tile and out.shape == (SIZE, SIZE)


def test_small_image_matches_the_reference():
    params = init_params(0)
    x = micrograph(300, seed=2)[:, :257]
    denoiser = Denoiser("cudnn", params, math="fp32", tile=64)
    try:
        ours = denoiser.denoise(np.ascontiguousarray(x))
    finally:
        denoiser.close()
    h = tiling.HALO
    reference = ReferenceModel(params).forward(tiling.extended(x)[None, None])[0, 0, h:-h, h:-h]
    assert rel_max_error(ours, reference) < 1e-5


def test_cli_throughput_on_4096_mrc_files(cli, tmp_path, capsys):
    mrcfile = pytest.importorskip("mrcfile", reason="the MRC tests need the mrc extra: pip install mrcfile")
    ckpt = checkpoint.save(tmp_path / "ckpt", init_params(0), step=1,
                           extra={"data_stats": {"mean": 0.5, "std": 0.1, "min": 0.0, "max": 1.0}})
    folder = tmp_path / "mics"
    folder.mkdir()
    for i in range(8):
        with mrcfile.new(folder / f"mic{i}.mrc") as mrc:
            mrc.set_data(micrograph(SIZE, seed=i) * 100 + 1000)
            mrc.voxel_size = 1.0
    result = cli(denoise.main, folder, "--checkpoint", ckpt, "-o", tmp_path / "out", "--backend", "cudnn")
    assert result.code == 0, result.err
    assert len(list((tmp_path / "out").glob("*.denoised.mrc"))) == 8
    rate = float(re.search(r"\(([\d.]+) micrographs/s\)", result.out).group(1))
    with capsys.disabled():
        print(f"\ndenoise CLI, cudnn tf32: {rate:.2f} micrographs/s of {SIZE}x{SIZE} "
              "(8 MRC files, reading, scaling and writing included)")
    assert rate > 0
