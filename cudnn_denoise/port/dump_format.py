"""The dump format (docs/formats.md, "Dump"): one step's every intermediate as OUT/<name>.bin (raw
little-endian float32, C order, no header) and OUT/manifest.json with each tensor's checksums;
a cudnn dump also holds the algorithm table of its step (port/algorithm_table.py), listed in the
manifest's "tables".
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..data.format import DTYPE
from ..network.buffers import ACTIVATIONS, GRADIENTS
from ..params import PARAMS
from ..userio.files import read_json
from ..userio.outdir import Staging, make_folder
from .checksum import checksum

FORMAT = "cudnn_denoise.dump"
VERSION = 1
MANIFEST_FILE = "manifest.json"

# The order of the files: reference.ReferenceModel.record_step's (the cuDNN model's dict has the
# same names in another order). The gradients run backwards: dconv3 drelu2 dconv2 drelu1 dconv1.
ORDER: tuple[str, ...] = (
    "x", "target", "params", *(b.intermediate for b in ACTIVATIONS), "loss",
    *(b.intermediate for b in GRADIENTS),
    *(f"d{p.name}" for p in PARAMS), "dparams", "lr", "params.updated",
)


def write_dump(out: Path, record: dict, settings: dict, tables: dict[str, str] | None = None) -> dict:
    """Write record's tensors as OUT/<name>.bin in ORDER, the tables (file name -> text), and
    OUT/manifest.json; return the manifest.

    The files are written beside OUT's old ones and moved in together, the manifest last
    (outdir.Staging): OUT holds a whole dump, old or new, and a manifest means a whole dump. A
    table the old dump listed and the new one has not (a cudnn dump replaced by a reference one)
    is removed after: it would name algorithms that the new step did not run.
    """
    tables = tables or {}
    if set(record) != set(ORDER):
        raise RuntimeError(f"record_step gave {sorted(set(record) ^ set(ORDER))} unlike dump_format.ORDER")
    tensors = []
    for name in ORDER:
        array = np.asarray(record[name], dtype=DTYPE)  # 0-d stays 0-d: shape []
        sums = {key: _json_number(value) for key, value in checksum(array.astype(np.float32)).items()}
        tensors.append({"name": name, "file": f"{name}.bin", "shape": list(array.shape),
                        "dtype": "float32", "byte_order": "little", **sums})
    manifest = {"format": FORMAT, "version": VERSION, "tensors": tensors, "tables": sorted(tables),
                "settings": settings}
    text = _manifest_text(manifest)  # before touching the disk: refuses what JSON cannot hold
    make_folder(out, "--out")
    old = dump_members(out) if foreign_in_dump(out) is None else set()
    with Staging(out, MANIFEST_FILE) as stage:
        for name, entry in zip(ORDER, tensors):
            array = np.asarray(record[name], dtype=DTYPE)
            (stage.path / entry["file"]).write_bytes(array.tobytes(order="C"))
        for name, table in tables.items():
            (stage.path / name).write_text(table)
        (stage.path / MANIFEST_FILE).write_text(text)
        stage.commit()
    for name in old - dump_members(out):
        (Path(out) / name).unlink(missing_ok=True)
    return manifest


def _manifest_text(manifest: dict) -> str:
    """manifest.json's text: strict JSON (no NaN), one line per tensor."""
    rows = ",\n".join("  " + json.dumps(t, allow_nan=False) for t in manifest["tensors"])
    settings = json.dumps(manifest["settings"], indent=1, allow_nan=False).replace("\n", "\n ")
    return (f'{{\n "format": {json.dumps(manifest["format"])},\n "version": {manifest["version"]},\n'
            f' "tensors": [\n{rows}\n ],\n "tables": {json.dumps(manifest["tables"])},\n'
            f' "settings": {settings}\n}}\n')


def foreign_in_dump(out: Path) -> str | None:
    """Why OUT is not a dump that --overwrite may replace (None when it is one): a dump is a
    manifest.json of FORMAT and the files it lists, nothing else (ignore: names to leave out)."""
    try:
        manifest = json.loads((Path(out) / MANIFEST_FILE).read_text())
    except FileNotFoundError:
        return f"holds no {MANIFEST_FILE}"
    except (OSError, ValueError) as exc:
        return f"its {MANIFEST_FILE} is unreadable ({type(exc).__name__})"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return f"its {MANIFEST_FILE} is not of format {FORMAT!r}"
    tensors = manifest.get("tensors")
    listed = {t.get("file") for t in tensors if isinstance(t, dict)} if isinstance(tensors, list) else set()
    return None if listed else f"its {MANIFEST_FILE} lists no tensors"


def dump_members(out: Path) -> set[str]:
    """The names a dump's manifest lists (tensor files, tables), with manifest.json (call after
    foreign_in_dump is None)."""
    manifest = json.loads((Path(out) / MANIFEST_FILE).read_text())
    tables = manifest.get("tables", [])  # dumps written before tables were listed have none
    tables = {name for name in tables if isinstance(name, str)} if isinstance(tables, list) else set()
    return {t.get("file") for t in manifest["tensors"] if isinstance(t, dict)} | tables | {MANIFEST_FILE}


def read_dump(out: Path) -> dict[str, np.ndarray]:
    """Name -> array of a dump folder, in the manifest's order and shapes (for tests and comparisons)."""
    manifest = read_json(Path(out) / MANIFEST_FILE)
    return {t["name"]: np.fromfile(Path(out) / t["file"], dtype=DTYPE).reshape(t["shape"])
            for t in manifest["tensors"]}


def _json_number(value):
    """value, or for NaN and the infinities the text that the checksum line shows (JSON has none)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value
