"""The dump CLI on the CPU (reference backend): every file against PyTorch (float64) for the same
parameters and batch, the manifest, the printed checksum lines, defaults and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_support import samples
from torch_oracle import rel_error, torch_record

from cudnn_denoise import checkpoint, dump, train
from cudnn_denoise.bindings.device import gpu_status
from cudnn_denoise.params import init_params
from cudnn_denoise.port import dump_format
from cudnn_denoise.port.checksum import checksum, format_checksum
from cudnn_denoise.port.dump_format import read_dump

CPU = ("--backend", "reference")


@pytest.fixture(scope="module")
def trained(data32, tmp_path_factory):
    """A checkpoint after 3 steps of a run with batch 3 and lr 0.02 (the dump's defaults come from it)."""
    out = tmp_path_factory.mktemp("trained")
    code = train.main([str(a) for a in ("--data", data32.noisy.parent, *CPU, "--out", out, "--batch-size", 3,
                                        "--lr", 0.02, "--max-steps", 3, "--no-shuffle")])
    assert code == 0
    return checkpoint.load(out / "checkpoint")


def test_dump_equals_pytorch(cli, data32, trained, tmp_path):
    out = tmp_path / "dump"
    result = cli(dump.main, "--checkpoint", trained.path, "--data", data32.noisy.parent, "--index", 5,
                 "--out", out, *CPU)
    assert result.code == 0, result.err
    files = read_dump(out)
    assert list(files) == list(dump_format.ORDER)
    x, target = samples(data32, [5, 6, 7])  # batch 3, from the checkpoint's run
    np.testing.assert_array_equal(files["x"], x)
    np.testing.assert_array_equal(files["target"], target)
    np.testing.assert_array_equal(files["params"], trained.params)
    oracle = torch_record(trained.params, x, target, 0.02)
    errors = {name: rel_error(files[name], oracle[name]) for name in dump_format.ORDER}
    assert {name: e for name, e in errors.items() if not e < 1e-5} == {}, errors


def test_manifest_lists_every_file_with_shape_and_checksum(cli, data32, trained, tmp_path):
    out = tmp_path / "dump"
    assert cli(dump.main, "--checkpoint", trained.path, "--data", data32.noisy.parent, "--index", 0,
               "--out", out, *CPU).code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "cudnn_denoise.dump" and manifest["version"] == 1
    assert [t["name"] for t in manifest["tensors"]] == list(dump_format.ORDER)
    assert sorted(p.name for p in out.iterdir()) == sorted([t["file"] for t in manifest["tensors"]] + ["manifest.json"])
    hidden, image = [3, 16, 32, 32], [3, 1, 32, 32]
    shapes = {"x": image, "target": image, "conv1": hidden, "relu2": hidden, "conv3": image, "dconv3": image,
              "drelu1": hidden, "loss": [], "lr": [], "params": [2625], "dparams": [2625],
              "dconv2.weight": [16, 16, 3, 3], "dconv3.bias": [1]}
    for entry in manifest["tensors"]:
        if entry["name"] in shapes:
            assert entry["shape"] == shapes[entry["name"]], entry["name"]
        assert entry["file"] == entry["name"] + ".bin"
        assert (entry["dtype"], entry["byte_order"]) == ("float32", "little")
        data = np.fromfile(out / entry["file"], dtype="<f4")
        assert data.size == int(np.prod(entry["shape"])), entry["name"]
        assert {k: entry[k] for k in ("n", "sum", "abssum", "min", "max")} == checksum(data), entry["name"]
    settings = manifest["settings"]
    assert settings["checkpoint"]["path"] == str(trained.path) and settings["checkpoint"]["step"] == 3
    assert settings["data"]["noisy"] == str(data32.noisy) and settings["data"]["clean"] == str(data32.clean)
    assert (settings["index"], settings["batch_size"], settings["lr"]) == (0, 3, 0.02)
    assert settings["backend"] == "reference" and "numpy" in settings["versions"]


def test_printed_lines_are_the_files_checksums(cli, data32, trained, tmp_path):
    out = tmp_path / "dump"
    result = cli(dump.main, "--checkpoint", trained.path, "--data", data32.noisy.parent, "--index", 10,
                 "--out", out, *CPU)
    assert result.code == 0, result.err
    expected = [format_checksum(name, array) for name, array in read_dump(out).items()]
    assert result.out.splitlines() == expected  # stdout holds these lines and nothing else


def test_defaults_and_overrides(cli, data32, tmp_path):
    bare = checkpoint.save(tmp_path / "bare", init_params(1), step=0)  # no run config: 4 and 0.001
    out = tmp_path / "default"
    args = ("--checkpoint", bare, "--data", data32.noisy.parent, *CPU)
    assert cli(dump.main, *args, "--index", 36, "--out", out).code == 0
    settings = json.loads((out / "manifest.json").read_text())["settings"]
    assert (settings["batch_size"], settings["lr"]) == (4, 0.001)
    assert read_dump(out)["x"].shape == (4, 1, 32, 32)

    out = tmp_path / "given"
    assert cli(dump.main, *args, "--index", 1, "--batch-size", 2, "--lr", 0.5, "--out", out).code == 0
    files = read_dump(out)
    np.testing.assert_array_equal(files["x"], samples(data32, [1, 2])[0])
    assert files["lr"] == np.float32(0.5)
    # SGD in float32, as the saxpy: params.updated = params - lr * dparams.
    np.testing.assert_array_equal(files["params.updated"], files["params"] - np.float32(0.5) * files["dparams"])


def test_overwrite(cli, data32, trained, tmp_path):
    out = tmp_path / "dump"
    args = ("--checkpoint", trained.path, "--data", data32.noisy.parent, "--out", out, *CPU)
    assert cli(dump.main, *args, "--index", 0).code == 0
    assert cli(dump.main, *args, "--index", 4).code == 2
    assert cli(dump.main, *args, "--index", 4, "--overwrite").code == 0
    np.testing.assert_array_equal(read_dump(out)["x"], samples(data32, [4, 5, 6])[0])


NO_GPU = pytest.mark.skipif(gpu_status()[0], reason="a GPU is visible: --backend cudnn would run")
BAD = {  # name: (arguments given tmp_path, what the error line must say); batch 3 of 40 samples
    "index past the end": (lambda t: ["--index", 38], "--index 38 with batch 3 needs samples 38..40"),
    "negative index": (lambda t: ["--index", -1],
                       "argument --index: must be an integer >= 0, not '-1'"),
    "lr nan": (lambda t: ["--index", 0, "--lr", "nan"],
               "argument --lr: must be a finite number > 0, not 'nan'"),
    "lr inf": (lambda t: ["--index", 0, "--lr", "inf"],
               "argument --lr: must be a finite number > 0, not 'inf'"),
    "batch past the end": (lambda t: ["--index", 30, "--batch-size", 11], "needs samples 30..40"),
    "missing checkpoint": (lambda t: ["--index", 0, "--checkpoint", t / "none"], "none: no checkpoint folder"),
    "missing data": (lambda t: ["--index", 0, "--data", t / "nodata"], "nodata: --data must be a directory"),
    "non-empty out": (lambda t: ["--index", 0, "--out", t], "not empty (write into it anyway with --overwrite)"),
    "cudnn without GPU": (lambda t: ["--index", 0, "--backend", "cudnn"], "use --backend reference"),
}


@pytest.mark.parametrize("case", [pytest.param(case, marks=NO_GPU if "GPU" in case else ()) for case in BAD])
def test_bad_inputs_give_one_line_errors(cli, data32, trained, tmp_path, case):
    extra, message = BAD[case]
    (tmp_path / "something").write_text("x")
    out = tmp_path / "dump"
    result = cli(dump.main, "--checkpoint", trained.path, "--data", data32.noisy.parent, "--out", out, *CPU,
                 *extra(tmp_path))
    assert result.code == 2
    assert message in result.one_line_error()
    assert not out.exists()


@pytest.mark.parametrize("what", ["checkpoint", "run folder", "foreign file", "other manifest"])
def test_overwrite_replaces_only_a_dump(cli, data32, trained, tmp_path, what):
    args = ("--checkpoint", trained.path, "--data", data32.noisy.parent, *CPU, "--index", 0, "--overwrite")
    if what == "checkpoint":
        out = trained.path
    elif what == "run folder":
        out = trained.path.parent
    else:
        out = tmp_path / "dump"
        assert cli(dump.main, *args, "--out", out).code == 0
        if what == "foreign file":
            (out / "notes.txt").write_text("mine")
        else:
            (out / "manifest.json").write_text('{"format": "something.else"}')
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = cli(dump.main, *args, "--out", out)
    assert result.code == 2
    assert f"--out {out}: not a dump" in result.one_line_error()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
