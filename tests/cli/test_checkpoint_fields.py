"""A checkpoint's extra (run_record) type-checked field by field: each malformed field gives train
--resume, dump and denoise the same one-line error naming the manifest and the field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cudnn_denoise import checkpoint, denoise, dump, train
from cudnn_denoise.params import init_params
from cudnn_denoise.port.dump_format import read_dump
from cudnn_denoise.training import run_record

CPU = ("--backend", "reference")
FAULTS = {  # name: (what replaces part of a good extra, what the error names)
    "config an int": ({"config": 5}, "extra.config is 5, expected a JSON object"),
    "null batch size": (
        {"config": {"batch_size": None}},
        "extra.config.batch_size is null, expected an integer >= 1",
    ),
    "bool seed": (
        {"config": {"seed": True}},
        "extra.config.seed is true, expected an integer >= 0",
    ),
    "float epochs": (
        {"config": {"epochs": 2.0}},
        "extra.config.epochs is 2.0, expected an integer >= 1",
    ),
    "string lr": (
        {"config": {"lr": "fast"}},
        'extra.config.lr is "fast", expected a finite number',
    ),
    "string position": ({"position": "3"}, 'extra.position is "3", expected an integer >= 0'),
    "null loss sum": (
        {"loss_sum": None},
        "extra.loss_sum is null, expected a finite number >= 0.0",
    ),
    "stats a list": (
        {"data_stats": [0.5, 0.1]},
        "extra.data_stats is [0.5, 0.1], expected a JSON object",
    ),
    "string mean": (
        {"data_stats": {"mean": "x", "std": 0.1}},
        'extra.data_stats.mean is "x", expected a finite',
    ),
    "negative height": (
        {"data": {"height": -32}},
        "extra.data.height is -32, expected an integer >= 1",
    ),
    "pixel size a number": (
        {"data": {"pixel_size": 1.06}},
        "extra.data.pixel_size is 1.06, expected an array of 2 finite numbers > 0 or null",
    ),
    "nested deep": (
        {"config": {"seed": [[[[[]]]]]}},
        "extra.config.seed is [[[[[]]]]], expected an integer",
    ),
}


def good_extra(data) -> dict:
    """The extra a training run of data32 at step 2 writes."""
    position = run_record.Position(step=2, epoch=0, batch=2, loss_sum=0.5, last_loss=0.25)
    stats = {"mean": 0.5, "std": 0.1, "min": 0.0, "max": 1.0, "samples": 16}
    return run_record.extra(run_record.Config(backend="reference"), position, stats, data)


def faulty(tmp_path, data, fault):
    """A run folder whose checkpoint's extra has `fault` merged in (one level deep)."""
    extra = good_extra(data)
    for key, value in FAULTS[fault][0].items():
        extra[key] = (
            {**extra[key], **value}
            if isinstance(value, dict) and isinstance(extra[key], dict)
            else value
        )
    (tmp_path / "run").mkdir()
    return checkpoint.save(tmp_path / "run" / "checkpoint", init_params(0), step=2, extra=extra)


PROGRAMS = ["train --resume", "dump", "denoise"]


def run_program(cli, program, ckpt, data, tmp_path):
    """One of PROGRAMS reading the checkpoint `ckpt` (in the run folder tmp_path/run)."""
    if program == "train --resume":
        return cli(
            train.main, "--data", data.noisy.parent, *CPU, "--out", tmp_path / "run", "--resume"
        )
    if program == "dump":
        return cli(
            dump.main,
            "--checkpoint",
            ckpt,
            "--data",
            data.noisy.parent,
            *CPU,
            "--index",
            0,
            "--out",
            tmp_path / "dump",
        )
    return cli(
        denoise.main,
        data.noisy,
        "--height",
        32,
        "--width",
        32,
        "--checkpoint",
        ckpt,
        *CPU,
        "-o",
        tmp_path / "denoised",
    )


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("program", PROGRAMS)
def test_a_malformed_field_is_named_by_every_reader(cli, data32, tmp_path, fault, program):
    ckpt = faulty(tmp_path, data32, fault)
    result = run_program(cli, program, ckpt, data32, tmp_path)
    assert result.code == 2
    assert result.one_line_error().startswith(
        f"error: {ckpt / 'manifest.json'}: {FAULTS[fault][1]}"
    )


@pytest.mark.parametrize("program", PROGRAMS)
def test_an_absurdly_nested_manifest_is_one_line(cli, data32, tmp_path, program):
    ckpt = faulty(tmp_path, data32, "null batch size")
    (ckpt / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    result = run_program(cli, program, ckpt, data32, tmp_path)
    assert result.code == 2
    assert (
        result.one_line_error()
        == f"error: {ckpt / 'manifest.json'}: is not usable JSON (nested too deeply)"
    )


def test_the_good_extra_is_accepted(cli, data32, tmp_path):
    """The same runs without a fault: the faults above are what the errors are about."""
    (tmp_path / "run").mkdir()
    ckpt = checkpoint.save(
        tmp_path / "run" / "checkpoint", init_params(0), step=2, extra=good_extra(data32)
    )
    record = run_record.read(checkpoint.load(ckpt))
    assert record.position == run_record.Position(
        step=2, epoch=0, batch=2, loss_sum=0.5, last_loss=0.25
    )
    assert record.config["batch_size"] == 4 and record.data["height"] == 32
    result = cli(
        dump.main,
        "--checkpoint",
        ckpt,
        "--data",
        data32.noisy.parent,
        *CPU,
        "--index",
        0,
        "--out",
        tmp_path / "dump",
    )
    assert result.code == 0, result.err
    assert (
        json.loads((tmp_path / "dump" / "manifest.json").read_text())["settings"]["batch_size"] == 4
    )
    np.testing.assert_array_equal(read_dump(tmp_path / "dump")["params"], init_params(0))
