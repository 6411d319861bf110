"""Micrograph inputs: files, folders and glob patterns expanded, and each opened by its suffix.

Inputs are .mrc / .mrcs (MRC, through mrcfile), .tif / .tiff (TIFF, through tifffile) and .bin
(raw float32 in the dataset format; denoise only). A folder stands for its files with those
suffixes (not recursive); a pattern is expanded by glob; a RELION .star file named as such stands
for the micrographs its rlnMicrographName column names (star.py), relative to the current folder.
denoise and make_dataset --from-mrc read their inputs through these functions.
"""

from __future__ import annotations

import errno
import glob
import os
from pathlib import Path

from ..data.format import open_readonly
from . import star

MRC_SUFFIXES = (".mrc", ".mrcs")
TIFF_SUFFIXES = (".tif", ".tiff")
RAW_SUFFIXES = (".bin",)
MICROGRAPH_SUFFIXES = MRC_SUFFIXES + TIFF_SUFFIXES  # files with a shape of their own
SUFFIXES = MICROGRAPH_SUFFIXES + RAW_SUFFIXES
EXIT_BAD_INPUTS = 4  # denoise and make_dataset: some inputs were named and skipped, the rest done


def expand(specs: list[str], suffixes: tuple[str, ...] = SUFFIXES,
           stars: list[star.MicrographStar] | None = None) -> tuple[list[Path], list[str]]:
    """(files, problems): the input files named by files, folders, patterns and STAR files, each
    once, in the order given (folders and patterns sorted, a STAR file's in its rows' order); a
    problem line for each name that gives none. Only files whose suffix is in `suffixes` count
    (all readable kinds by default). Each STAR file read is appended to `stars` when given (denoise
    writes it back); one that is not a micrographs STAR file is a DataError naming it."""
    files: list[Path] = []
    seen: set[Path] = set()
    problems = []
    for spec in specs:
        path = Path(spec)
        if path.suffix.lower() == star.SUFFIX and path.exists() and not path.is_dir():
            listing = star.read(path)
            if stars is not None:
                stars.append(listing)
            found = _named_in(listing, suffixes, problems)
        elif path.is_dir():
            entries = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
            found = _usable(entries, problems)
            if not entries:
                problems.append(f"{spec}: a folder without {' / '.join(suffixes)} files")
        elif path.exists():
            if path.suffix.lower() not in suffixes:
                problems.append(f"{spec}: not a {' / '.join(suffixes)} file")
                continue
            found = [path]
        elif path.is_symlink():
            problems.append(f"{spec}: {broken_link(path)}")
            continue
        elif glob.has_magic(spec):
            entries = sorted(Path(p) for p in glob.glob(spec) if Path(p).suffix.lower() in suffixes)
            found = _usable(entries, problems)
            if not entries:
                problems.append(f"{spec}: matches no {' / '.join(suffixes)} file")
        else:
            problems.append(f"{spec}: no such file or folder")
            continue
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                files.append(file)
    return files, problems


def _named_in(listing: star.MicrographStar, suffixes: tuple[str, ...],
              problems: list[str]) -> list[Path]:
    """The micrograph files a STAR file names; a problem line for each that is not one, as for a
    file named on the command line."""
    found = []
    if not listing.names:
        problems.append(f"{listing.path}: a STAR file that names no micrographs")
    for name in listing.names:
        path = Path(name)
        if path.is_file() and path.suffix.lower() in suffixes:
            found.append(path)
            continue
        if path.is_symlink() and not path.exists():
            why = broken_link(path)
        elif not path.exists():
            why = "no such file"
        elif path.is_file():
            why = f"not a {' / '.join(suffixes)} file"
        else:
            why = "not a file"
        problems.append(f"{name}: {why} (named in {listing.path})")
    return found


def broken_link(path: Path) -> str:
    """Why a symlink that leads to no file is of no use: dangling (and to what) or a loop."""
    try:
        os.stat(path)
    except FileNotFoundError:
        try:
            target = os.readlink(path)
        except OSError:
            return "a dangling symlink"
        return f"a dangling symlink (to {target}, which does not exist)"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop (it leads back to itself)"
        return f"a symlink that cannot be followed ({exc.strerror})"
    return "a symlink"


def _usable(entries: list[Path], problems: list[str]) -> list[Path]:
    """The entries that are files; a problem line for each broken symlink among them (the rest, such
    as folders named like inputs, are passed over as before)."""
    found = []
    for entry in entries:
        if entry.is_file():
            found.append(entry)
        elif entry.is_symlink():
            problems.append(f"{entry}: {broken_link(entry)}")
    return found


def open_source(path: Path, height: int | None, width: int | None):
    """An MrcSource, TiffSource or RawSource (DataError naming the file if it cannot be used: also
    when it is not a regular file, which a reader might wait on forever)."""
    os.close(open_readonly(path))
    if path.suffix.lower() in MRC_SUFFIXES:
        from .mrc_io import MrcSource

        return MrcSource(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        from .tiff_io import TiffSource

        return TiffSource(path)
    from .raw_io import RawSource

    return RawSource(path, height, width)
