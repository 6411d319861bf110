"""cudnn_denoise.checkpoint: byte layout, every load check, crash safety, PyTorch interchange."""

import json
import os
import shutil

import numpy as np
import pytest

from cudnn_denoise import checkpoint
from cudnn_denoise.checkpoint import CheckpointError
from cudnn_denoise.params import NUM_PARAMS, PARAMS, init_params, views

EXTRA = {
    "epoch": 0,
    "position": 1234,
    "config": {"lr": 0.001, "batch": 4},
    "data_stats": {"mean": 0.5},
}


def saved(tmp_path, step=7, seed=0):
    """A checkpoint folder tmp_path/ckpt holding init_params(seed) at `step`."""
    return checkpoint.save(tmp_path / "ckpt", init_params(seed), step=step, extra=EXTRA)


def read_manifest(path):
    return json.loads((path / "manifest.json").read_text())


def write_manifest(path, manifest):
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_round_trip_bytes_and_manifest(tmp_path):
    params = init_params(0)
    path = saved(tmp_path)
    assert (path / "params.bin").read_bytes() == params.astype("<f4").tobytes()
    manifest = read_manifest(path)
    assert manifest["format"] == "cudnn_denoise.checkpoint" and manifest["version"] == 1
    assert manifest["dtype"] == "float32" and manifest["byte_order"] == "little"
    assert manifest["tensors"][:2] == [
        {"name": "conv1.weight", "shape": [16, 1, 3, 3], "offset_bytes": 0},
        {"name": "conv1.bias", "shape": [16], "offset_bytes": 576},
    ]
    assert [t["name"] for t in manifest["tensors"]] == [p.name for p in PARAMS]
    assert manifest["params_bytes"] == 4 * NUM_PARAMS == 10500
    assert manifest["step"] == 7 and manifest["extra"] == EXTRA

    loaded = checkpoint.load(path)
    np.testing.assert_array_equal(loaded.params, params)
    assert loaded.params.dtype == np.float32 and loaded.params.flags.writeable
    assert loaded.step == 7 and loaded.extra == EXTRA and loaded.manifest == manifest
    assert loaded.path == path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no tmp or old folders left


def test_save_replaces_an_existing_checkpoint(tmp_path):
    saved(tmp_path, step=1, seed=0)
    path = saved(tmp_path, step=2, seed=1)
    loaded = checkpoint.load(path)
    assert loaded.step == 2
    np.testing.assert_array_equal(loaded.params, init_params(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def truncate_params(path):
    data = (path / "params.bin").read_bytes()
    (path / "params.bin").write_bytes(data[:-4])


def flip_a_byte(path):
    data = bytearray((path / "params.bin").read_bytes())
    data[100] ^= 0x01
    (path / "params.bin").write_bytes(bytes(data))


def edit_manifest(**changes):
    def edit(path):
        manifest = read_manifest(path)
        for key, value in changes.items():
            if key == "shape2":  # tensors[2] is conv2.weight
                manifest["tensors"][2]["shape"] = value
            else:
                manifest[key] = value
        write_manifest(path, manifest)

    return edit


def bad_json(path):
    (path / "manifest.json").write_text('{"format": "cudnn_denoise.checkpoint", ')


@pytest.mark.parametrize(
    "damage, file, message",
    [
        (truncate_params, "params.bin", "10496 bytes, manifest expects 10500"),
        (flip_a_byte, "params.bin", "sha256"),
        (lambda p: (p / "params.bin").unlink(), "params.bin", "no such file"),
        (lambda p: (p / "manifest.json").unlink(), "manifest.json", "no such file"),
        (bad_json, "manifest.json", "not valid JSON"),
        (
            edit_manifest(shape2=[16, 16, 3, 2]),
            "manifest.json",
            "tensors[2] (conv2.weight) shape is [16, 16, 3, 2]",
        ),
        (
            edit_manifest(format="npz"),
            "manifest.json",
            "format is 'npz', expected 'cudnn_denoise.checkpoint'",
        ),
        (edit_manifest(version=2), "manifest.json", "version is 2, expected 1"),
        (edit_manifest(dtype="float64"), "manifest.json", "dtype is 'float64'"),
        (edit_manifest(byte_order="big"), "manifest.json", "byte_order is 'big'"),
        (edit_manifest(step=-1), "manifest.json", "step is -1"),
        (edit_manifest(step="7"), "manifest.json", 'step is "7", expected an integer >= 0'),
        (edit_manifest(version=True), "manifest.json", "version is True, expected 1"),
        (edit_manifest(tensors={"conv1": 1}), "manifest.json", "tensors is {"),
        (edit_manifest(params_bytes="10500"), "manifest.json",
         'params_bytes is "10500", expected an integer'),
        (edit_manifest(sha256=12), "manifest.json", "sha256 is 12, expected a string"),
        (edit_manifest(sha256="ab"), "manifest.json",
         "sha256 is 'ab', expected 64 lower-case hex digits"),
        (edit_manifest(extra=5), "manifest.json", "extra is 5, expected a JSON object"),
        (edit_manifest(extra=None), "manifest.json", "extra is null, expected a JSON object"),
    ],
)
def test_load_names_the_file_and_the_mismatch(tmp_path, damage, file, message):
    path = saved(tmp_path)
    damage(path)
    with pytest.raises(CheckpointError) as error:
        checkpoint.load(path)
    text = str(error.value)
    assert text.startswith(f"{path / file}: ") and message in text, text
    assert "\n" not in text


def test_load_without_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        checkpoint.load(tmp_path / "ckpt")


class SimulatedCrash(Exception):
    pass


def crash_on_call(monkeypatch, module, name, call):
    """Make module.name raise SimulatedCrash on its `call`-th call (1-based) during this test."""
    real = getattr(module, name)
    calls = [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == call:
            raise SimulatedCrash(f"{name} call {call}")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


@pytest.mark.parametrize(
    "module, name, call, step_after_crash",
    [
        (os, "fsync", 1, 1),  # while writing params.bin into ckpt.tmp-<id>
        (os, "rename", 1, 1),  # moving ckpt to ckpt.old-<id>
        (os, "rename", 2, 1),  # moving ckpt.tmp-<id> to ckpt: only ckpt.old-<id> is complete
        (shutil, "rmtree", 1, 2),  # removing ckpt.old-<id> after the new one is in place
    ],
)
def test_a_crash_during_save_leaves_a_loadable_checkpoint(
    tmp_path, monkeypatch, module, name, call, step_after_crash
):
    saved(tmp_path, step=1, seed=0)
    crash_on_call(monkeypatch, module, name, call)
    with pytest.raises(SimulatedCrash):
        saved(tmp_path, step=2, seed=1)
    monkeypatch.undo()
    assert len(list(tmp_path.iterdir())) > 1  # the crash left something beside ckpt

    loaded = checkpoint.load(tmp_path / "ckpt")
    assert loaded.step == step_after_crash
    np.testing.assert_array_equal(loaded.params, init_params(step_after_crash - 1))

    saved(tmp_path, step=3)  # the next save works and removes what the crash left
    assert checkpoint.load(tmp_path / "ckpt").step == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_stale_partial_tmp_folder_is_ignored(tmp_path):
    path = saved(tmp_path, step=4)
    partial = tmp_path / "ckpt.tmp-deadbeef"
    partial.mkdir()
    (partial / "params.bin").write_bytes(b"\0" * 100)
    assert checkpoint.load(path).step == 4
    shutil.rmtree(path)
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        checkpoint.load(path)  # a tmp folder is never taken for a checkpoint


def test_save_refuses_bad_arguments_before_touching_the_disk(tmp_path):
    path = tmp_path / "ckpt"
    with pytest.raises(ValueError, match="float32"):
        checkpoint.save(path, init_params(0).astype(np.float64), step=0)
    with pytest.raises(ValueError, match="step"):
        checkpoint.save(path, init_params(0), step=-1)
    with pytest.raises(ValueError, match="JSON compliant"):
        checkpoint.save(path, init_params(0), step=0, extra={"data_stats": {"mean": float("nan")}})
    assert list(tmp_path.iterdir()) == []


def test_pytorch_state_dict_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential()
    model.add_module("conv1", torch.nn.Conv2d(1, 16, 3, padding=1))
    model.add_module("relu1", torch.nn.ReLU())
    model.add_module("conv2", torch.nn.Conv2d(16, 16, 3, padding=1))
    model.add_module("relu2", torch.nn.ReLU())
    model.add_module("conv3", torch.nn.Conv2d(16, 1, 3, padding=1))
    state = model.state_dict()
    assert list(state) == [p.name for p in PARAMS]  # PyTorch's order is ours
    flat = np.concatenate([state[p.name].numpy().ravel() for p in PARAMS])

    loaded = checkpoint.load(checkpoint.save(tmp_path / "ckpt", flat, step=0))
    tensors = {name: torch.from_numpy(v) for name, v in views(loaded.params).items()}
    for name, tensor in state.items():
        assert torch.equal(tensors[name], tensor), name
    model.load_state_dict(tensors)  # strict: every name and shape matches


def test_both_files_are_fsynced_before_the_rename_into_place(tmp_path, monkeypatch):
    saved(tmp_path, step=1)
    events = []
    real_fsync, real_rename = os.fsync, os.rename
    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(a, b):
        events.append(("rename", os.fspath(a), os.fspath(b)))
        real_rename(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    saved(tmp_path, step=2)
    into_place = next(i for i, e in enumerate(events)
                      if e[0] == "rename" and e[2] == str(tmp_path / "ckpt"))
    tmp = events[into_place][1]
    synced = [e[1] for e in events[:into_place] if e[0] == "fsync"]
    assert f"{tmp}/params.bin" in synced and f"{tmp}/manifest.json" in synced and tmp in synced
    assert ("fsync", str(tmp_path)) in events[into_place:]  # the rename itself made durable


def test_a_train_run_folder_loads_its_checkpoint(tmp_path):
    (tmp_path / "run").mkdir()
    checkpoint.save(tmp_path / "run" / "checkpoint", init_params(3), step=9)
    assert checkpoint.load(tmp_path / "run").step == 9
    # what a save that crashed between its two renames leaves
    shutil.move(tmp_path / "run" / "checkpoint", tmp_path / "run" / "checkpoint.old-1234abcd")
    assert checkpoint.load(tmp_path / "run").path == tmp_path / "run" / "checkpoint.old-1234abcd"
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError,
                       match=rf"^{tmp_path / 'file'}: is a file; a checkpoint is a folder"):
        checkpoint.load(tmp_path / "file")


def test_a_full_disk_names_the_checkpoint_and_keeps_the_previous_one(tmp_path, monkeypatch):
    saved(tmp_path, step=1)

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as error:
        saved(tmp_path, step=2)
    assert str(error.value) == ("[Errno 28] No space left on device (writing the checkpoint; the "
                                f"previous checkpoint stays): '{tmp_path / 'ckpt'}'")
    monkeypatch.undo()
    assert checkpoint.load(tmp_path / "ckpt").step == 1
    assert os.listdir(tmp_path) == ["ckpt"]  # the half-written new one is gone
