"""The training micrographs' pixel size, from their MRC headers to the denoised inputs: make-dataset
records it in dataset.json, train keeps it in the checkpoint, denoise warns of inputs at another."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cudnn_denoise import checkpoint, denoise, make_dataset, train
from cudnn_denoise.training.run_record import read

pytest.importorskip("mrcfile", reason="the MRC tests need the mrc extra: pip install mrcfile")
from micrograph_files import write_mrc  # after the skip: it needs mrcfile

CPU = ("--backend", "reference")


def micrograph(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(1000.0, 40.0, (64, 64)).astype(np.float32)


def test_the_pixel_size_goes_from_the_micrographs_to_the_checkpoint_to_denoise(cli, tmp_path):
    write_mrc(tmp_path / "train.mrc", micrograph(0), voxel_size=1.06)
    made = cli(make_dataset.main, "--out", tmp_path / "data", "--from-mrc", tmp_path / "train.mrc",
               "--size", 32)
    assert made.code == 0, made.err
    assert json.loads((tmp_path / "data" / "dataset.json").read_text())["pixel_size"] == [1.06, 1.06]
    trained = cli(train.main, "--data", tmp_path / "data", *CPU, "--out", tmp_path / "run",
                  "--max-steps", 1)
    assert trained.code == 0, trained.err
    saved = checkpoint.load(tmp_path / "run" / "checkpoint")
    assert read(saved).data["pixel_size"] == [1.06, 1.06]
    write_mrc(tmp_path / "coarse.mrc", micrograph(1), voxel_size=4.24)
    result = cli(denoise.main, tmp_path / "coarse.mrc", "--checkpoint", tmp_path / "run", "-o",
                 tmp_path / "out", *CPU)
    assert result.code == 0, result.err
    assert (f"warning: {tmp_path / 'coarse.mrc'}: pixel size 4.24 A/px, the model was trained at "
            "1.06 A/px") in result.err


def test_a_dataset_of_unknown_pixel_size_keeps_it_unknown(cli, data32, tmp_path):
    assert cli(train.main, "--data", data32.noisy.parent, *CPU, "--out", tmp_path / "run",
               "--max-steps", 1).code == 0
    assert read(checkpoint.load(tmp_path / "run" / "checkpoint")).data["pixel_size"] is None
