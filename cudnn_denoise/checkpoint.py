"""Checkpoints: a folder with params.bin and manifest.json, written atomically, checked on load.

Format (docs/formats.md, "Checkpoint"; the Fortran port reads and writes it too):
    DIR/params.bin     every parameter as little-endian float32, concatenated in params.PARAMS
                       order (PyTorch's state_dict order), each in PyTorch's layout (KCRS, K)
    DIR/manifest.json  format, version, dtype, byte_order, tensors (name, shape, offset_bytes),
                       params_bytes, sha256 of params.bin, step, and the caller's `extra` object
No pickle: JSON and raw bytes only.

Replacing DIR (see save()): write DIR.tmp-<id>, rename DIR to DIR.old-<id>, rename DIR.tmp-<id> to
DIR, remove DIR.old-<id>. A crash at any point leaves DIR or DIR.old-<id> complete; load(DIR)
falls back to DIR.old-<id> when DIR is missing. One writer per DIR at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cudnn_denoise.params import NUM_PARAMS, PARAMS, views
from cudnn_denoise.userio.fields import Fields
from cudnn_denoise.userio.files import UserFileError, fsync_dir, read_bytes, read_json

FORMAT = "cudnn_denoise.checkpoint"
VERSION = 1
PARAMS_FILE = "params.bin"
MANIFEST_FILE = "manifest.json"
_ITEMSIZE = 4  # float32
_TMP = ".tmp-"  # DIR.tmp-<id>: a checkpoint being written
_OLD = ".old-"  # DIR.old-<id>: the previous checkpoint while the new one is renamed in
RUN_SUBFOLDER = "checkpoint"  # train --out DIR keeps its checkpoint in DIR/checkpoint


class CheckpointError(UserFileError):
    """A checkpoint cannot be read: the message names the file and what does not match."""


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: params (NUM_PARAMS,) float32, the step, the whole manifest, and the
    folder it was read from (DIR, or DIR.old-<id> when recovered after a crash)."""

    params: np.ndarray
    step: int
    manifest: dict
    path: Path

    @property
    def extra(self) -> dict:
        return self.manifest["extra"]


def _tensor_table() -> list[dict]:
    """The manifest's "tensors": name, PyTorch shape and byte offset of each parameter."""
    return [
        {"name": p.name, "shape": list(p.shape), "offset_bytes": p.offset * _ITEMSIZE}
        for p in PARAMS
    ]


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save_leftovers(name: str) -> tuple[str, str]:
    """Glob patterns, beside a checkpoint folder `name`, of what a save leaves while it runs (and a
    crash leaves behind): the checkpoint being written and the previous one being replaced."""
    return f"{name}{_TMP}*", f"{name}{_OLD}*"


def _siblings(path: Path, infix: str) -> list[Path]:
    """The DIR<infix><id> folders beside DIR (DIR.tmp-* or DIR.old-*), sorted by name."""
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(path.name + infix))


def _remove_leftovers(path: Path) -> None:
    """Remove the DIR.tmp-* and DIR.old-* that crashed saves left (DIR itself is complete)."""
    for stale in _siblings(path, _TMP) + _siblings(path, _OLD):
        shutil.rmtree(stale)


def save(path, params: np.ndarray, *, step: int, extra: dict | None = None) -> Path:
    """Write params (NUM_PARAMS,) float32 and step to the folder `path`, replacing it atomically.

    extra: a JSON object stored as the manifest's "extra" (the train CLI keeps e.g. "epoch",
    "position", "config", "data_stats", "rng" there); NaN and infinity are refused.
    """
    path = Path(path)
    params = np.asarray(params)
    if params.shape != (NUM_PARAMS,) or params.dtype != np.float32:
        raise ValueError(
            f"params must be float32 ({NUM_PARAMS},), got {params.dtype} {params.shape}"
        )
    if not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    data = params.astype("<f4").tobytes()
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": "float32",
        "byte_order": "little",
        "tensors": _tensor_table(),
        "params_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "step": step,
        "extra": extra if extra is not None else {},
    }
    text = json.dumps(manifest, indent=1, allow_nan=False) + "\n"  # before touching the disk

    token = secrets.token_hex(4)
    tmp = path.with_name(path.name + _TMP + token)
    old = path.with_name(path.name + _OLD + token)
    try:
        tmp.mkdir()
        _write_file(tmp / PARAMS_FILE, data)
        _write_file(tmp / MANIFEST_FILE, text.encode())
        fsync_dir(tmp)
    except OSError as exc:  # a full disk: name the checkpoint, leave nothing half written
        shutil.rmtree(tmp, ignore_errors=True)
        kept = "; the previous checkpoint stays" if exists(path) else ""
        raise OSError(exc.errno, f"{exc.strerror} (writing the checkpoint{kept})",
                      str(path)) from None
    # From here on DIR or DIR.old-<id> is a complete checkpoint at every moment.
    if path.exists():
        os.rename(path, old)
    os.rename(tmp, path)
    fsync_dir(path.parent)
    _remove_leftovers(path)
    fsync_dir(path.parent)
    return path


def _check(condition: bool, file: Path, message: str) -> None:
    if not condition:
        raise CheckpointError(f"{file}: {message}")


def _read_manifest(file: Path) -> dict:
    """manifest.json parsed, every field type-checked, and checked against this format and
    params.PARAMS (`extra` only for being an object: its readers check its fields)."""
    manifest = read_json(file, CheckpointError)
    fields = Fields(manifest, file, error=CheckpointError)
    expected = {"format": FORMAT, "version": VERSION, "dtype": "float32", "byte_order": "little"}
    for key, value in expected.items():
        got = manifest.get(key)
        _check(type(got) is type(value) and got == value, file,
               f"{key} is {got!r}, expected {value!r}")

    tensors = fields.array("tensors")
    table = _tensor_table()
    _check(len(tensors) == len(table), file, f"{len(tensors)} tensors, expected {len(table)}")
    for i, (got, want) in enumerate(zip(tensors, table)):
        _check(isinstance(got, dict), file, f"tensors[{i}] is not an object")
        for key in ("name", "shape", "offset_bytes"):
            _check(
                got.get(key) == want[key],
                file,
                f"tensors[{i}] ({want['name']}) {key} is {got.get(key)!r}, expected {want[key]!r}",
            )
    expected_bytes = NUM_PARAMS * _ITEMSIZE
    _check(
        fields.integer("params_bytes") == expected_bytes,
        file,
        f"params_bytes is {manifest.get('params_bytes')!r}, expected {expected_bytes}",
    )
    fields.integer("step", minimum=0)
    sha256 = fields.string("sha256")
    _check(len(sha256) == 64 and all(c in "0123456789abcdef" for c in sha256), file,
           f"sha256 is {sha256[:70]!r}, expected 64 lower-case hex digits")
    fields.object("extra")
    return manifest


def _load_folder(folder: Path) -> Checkpoint:
    manifest = _read_manifest(folder / MANIFEST_FILE)
    file = folder / PARAMS_FILE
    data = read_bytes(file, CheckpointError)
    expected = manifest["params_bytes"]
    _check(len(data) == expected, file, f"{len(data)} bytes, manifest expects {expected}")
    digest = hashlib.sha256(data).hexdigest()
    _check(
        digest == manifest["sha256"], file, f"sha256 {digest}, manifest says {manifest['sha256']}"
    )
    params = np.frombuffer(data, dtype="<f4").astype(np.float32)  # (NUM_PARAMS,), writable
    _check_finite(params, file)
    return Checkpoint(params=params, step=manifest["step"], manifest=manifest, path=folder)


def _check_finite(params: np.ndarray, file: Path) -> None:
    """Refuse NaN and infinite parameters (a run that diverged, a damaged file): every output
    computed from them would be NaN, and training from them would be too."""
    bad = ~np.isfinite(params)
    if not bad.any():
        return
    first = int(np.argmax(bad))
    for name, index in views(np.arange(NUM_PARAMS)).items():
        if first in index:
            where = ",".join(str(int(k)) for k in np.argwhere(index == first)[0])
            break
    count = int(bad.sum())
    raise CheckpointError(
        f"{file}: {count} parameter{'s are' if count > 1 else ' is'} NaN or infinite, the first "
        f"{name}[{where}] ({params[first]}): a diverged run's parameters denoise every micrograph "
        "into NaN")


def load(path) -> Checkpoint:
    """Read and check the checkpoint folder `path`; raises CheckpointError naming what is wrong.

    `path` may also be a train run's folder (--out), which holds the checkpoint as checkpoint/.
    If the folder is missing but a save crashed while replacing it, the previous checkpoint
    (path.old-<id>; the one with the highest step if several) is loaded instead.
    """
    path = Path(path)
    if path.is_dir() and not (path / MANIFEST_FILE).exists() and exists(path / RUN_SUBFOLDER):
        path = path / RUN_SUBFOLDER
    if path.exists():
        _check(path.is_dir(), path, f"is a file; a checkpoint is a folder holding {MANIFEST_FILE} "
               f"and {PARAMS_FILE}")
        return _load_folder(path)
    olds = _siblings(path, _OLD) if path.parent.is_dir() else []
    _check(
        bool(olds), path, f"no checkpoint folder (and no {path.name}{_OLD}* left by a crashed save)"
    )
    return max((_load_folder(old) for old in olds), key=lambda ckpt: ckpt.step)


def exists(path) -> bool:
    """Whether the checkpoint folder `path`, or what a crashed save left of it, exists."""
    path = Path(path)
    return path.exists() or (path.parent.is_dir() and bool(_siblings(path, _OLD)))
