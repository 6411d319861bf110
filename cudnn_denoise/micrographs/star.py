"""RELION micrograph STAR files through starfile (the optional `star` extra): the micrographs a
STAR file names, and the same file again with those names replaced.

A RELION 3.1+ micrographs.star holds a `data_optics` table and a `data_micrographs` table; a
RELION 3.0 one a single table (`data_`). Either way the micrographs table's `rlnMicrographName`
column names one micrograph per row, relative to the folder RELION runs in (the project folder):
here, the current folder. Writing keeps every table, every other column and the `# version` line
RELION puts before each table (a RELION 3.1+ reader takes a file without it for a 3.0 one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..data.format import DataError
from ..userio.files import read_bytes, write_atomic

SUFFIX = ".star"
NAME = "rlnMicrographName"
TABLE = "micrographs"  # RELION 3.1+; 3.0 files have one unnamed table


class StarfileMissing(RuntimeError):
    """starfile is not installed."""


def require_starfile(path: Path | None = None):
    """The starfile module; StarfileMissing (naming path, with the install command) when it is
    not installed."""
    try:
        import starfile
    except ImportError as exc:
        where = f"{path}: " if path is not None else ""
        raise StarfileMissing(f"{where}STAR files need the starfile package ({exc}); "
                              "pip install 'cudnn_denoise[star]' (or pip install starfile)"
                              ) from None
    return starfile


@dataclass
class MicrographStar:
    """A micrographs STAR file as read: its tables, which one lists the micrographs, and the
    `# version` line before each table (None where there was none)."""

    path: Path
    blocks: dict  # table name -> DataFrame (a loop_) or dict (single values), as starfile reads them
    table: str
    versions: dict[str, str | None]

    @property
    def names(self) -> list[str]:
        """The rlnMicrographName of each row, in order."""
        return [str(name) for name in self.blocks[self.table][NAME]]

    def text(self, names: list[str | None]) -> str:
        """This file as STAR text with row i's rlnMicrographName replaced by names[i]; rows whose
        name is None are left out."""
        starfile = require_starfile(self.path)
        keep = [i for i, name in enumerate(names) if name is not None]
        table = self.blocks[self.table].iloc[keep].copy()
        table[NAME] = [names[i] for i in keep]
        # No path in the comment: RELION takes any line holding "data_" for a table's start.
        out = ["# written by cudnn_denoise\n"]
        for name, block in self.blocks.items():
            if self.versions.get(name):
                out.append(f"\n{self.versions[name]}\n")
            # float_format None: each number as Python's shortest repr, so values read back equal
            text = starfile.to_string({name: table if name == self.table else block},
                                      float_format=None)
            out.append("\n" + text[text.index("data_"):])  # less starfile's dated header line
        return "".join(out)

    def write(self, path: Path, names: list[str | None]) -> Path:
        """text(names) written to path atomically (userio.files.write_atomic)."""
        return write_atomic(path, self.text(names).encode())


def read(path: Path) -> MicrographStar:
    """The micrographs STAR file at path. DataError naming it when it is not text, holds no table,
    or no table of micrographs (data_micrographs, or the only table) with an rlnMicrographName
    column; StarfileMissing without starfile."""
    starfile = require_starfile(path)
    data = read_bytes(path, DataError)  # a regular file (a FIFO is refused, not waited on)
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a STAR file (not UTF-8 text: byte 0x{data[exc.start]:02x} "
                        f"at offset {exc.start})") from None
    try:
        blocks = starfile.read(path, always_dict=True, parse_as_string=[NAME])
    # Only starfile runs here: whatever it raises, the file is not one it can parse.
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path}: not a readable STAR file ({type(exc).__name__}: {exc})") from None
    table = _micrograph_table(path, blocks)
    return MicrographStar(path, blocks, table, _versions(lines))


def _micrograph_table(path: Path, blocks: dict) -> str:
    """The name of the table that lists the micrographs; DataError saying why there is none."""
    if not blocks:
        raise DataError(f"{path}: holds no data_ table: not a STAR file?")
    if TABLE in blocks:
        name = TABLE
    elif len(blocks) == 1:  # RELION 3.0: one table, usually unnamed
        name = next(iter(blocks))
    else:
        tables = ", ".join(f"data_{name}" for name in blocks)
        raise DataError(f"{path}: no data_{TABLE} table (it holds {tables}); a micrographs STAR "
                        f"file has one, or (RELION 3.0) a single table")
    block = blocks[name]
    if not hasattr(block, "columns"):
        raise DataError(f"{path}: its table data_{name} is not a loop_ of micrographs")
    if NAME not in block.columns:
        raise DataError(f"{path}: its table data_{name} has no {NAME} column")
    return name


def _versions(lines: list[str]) -> dict[str, str | None]:
    """Table name -> the `# version NNNNN` line that came before its data_ line, if any."""
    versions, pending = {}, None
    for line in lines:
        line = line.strip()
        if line.startswith("# version"):
            pending = line
        elif line.startswith("data_"):
            versions[line[len("data_"):]], pending = pending, None
    return versions


def relion_path(path: Path) -> str:
    """path as the next RELION job, run in the current folder, reads it: relative to that folder
    when under it, else absolute."""
    where = Path(os.path.realpath(path.parent)) / path.name
    try:
        return str(where.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(where)
