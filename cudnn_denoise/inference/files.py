"""Which files: inputs expanded from files, folders and glob patterns; outputs named and checked.

Inputs are .mrc / .mrcs (MRC, through mrcfile), .tif / .tiff (TIFF, through tifffile) and .bin
(raw float32 in the dataset format; denoise only). A folder stands for its files with those
suffixes (not recursive); a pattern is expanded by glob. Output i is OUT/<stem><suffix><ext>: ext
is .mrc or .mrcs after the input's for MRC inputs, .mrc for TIFF ones, .mrcs for raw ones (the
dataset format is a stack) with --format mrc, .bin with --format raw. Everything here runs before
the first micrograph is read. make_dataset reads its micrographs through the same functions.
"""

from __future__ import annotations

import glob
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..data.format import open_readonly
from ..userio.files import UserFileError

MRC_SUFFIXES = (".mrc", ".mrcs")
TIFF_SUFFIXES = (".tif", ".tiff")
RAW_SUFFIXES = (".bin",)
MICROGRAPH_SUFFIXES = MRC_SUFFIXES + TIFF_SUFFIXES  # files with a shape of their own
SUFFIXES = MICROGRAPH_SUFFIXES + RAW_SUFFIXES
FORMATS = ("mrc", "raw")
EXIT_BAD_INPUTS = 4  # denoise and make_dataset: some inputs were named and skipped, the rest done


class OutputError(UserFileError):
    """The output folder cannot be used, or two inputs would write one output."""


@dataclass(frozen=True)
class Job:
    """One input file and the output it becomes."""

    source: Path
    output: Path

    @property
    def is_mrc(self) -> bool:
        return self.source.suffix.lower() in MRC_SUFFIXES

    @property
    def is_tiff(self) -> bool:
        return self.source.suffix.lower() in TIFF_SUFFIXES


def expand(specs: list[str], suffixes: tuple[str, ...] = SUFFIXES) -> tuple[list[Path], list[str]]:
    """(files, problems): the input files named by files, folders and patterns, each once, in the
    order given (folders and patterns sorted); a problem line for each name that gives none.
    Only files whose suffix is in `suffixes` count (all readable kinds by default)."""
    files: list[Path] = []
    seen: set[Path] = set()
    problems = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.suffix.lower() in suffixes and p.is_file())
            if not found:
                problems.append(f"{spec}: a folder without {' / '.join(suffixes)} files")
        elif path.exists():
            if path.suffix.lower() not in suffixes:
                problems.append(f"{spec}: not a {' / '.join(suffixes)} file")
                continue
            found = [path]
        elif glob.has_magic(spec):
            found = sorted(Path(p) for p in glob.glob(spec)
                           if Path(p).suffix.lower() in suffixes and Path(p).is_file())
            if not found:
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


def without_outputs(files: list[Path], out_dir: Path, suffix: str) -> tuple[list[Path], int]:
    """(files, dropped): the inputs less those in out_dir named like outputs (<stem><suffix>.*),
    so that a rerun over a folder that also holds the outputs does not denoise them again."""
    if not suffix:
        return files, 0
    out_dir = out_dir.resolve()
    kept = [f for f in files if not (f.resolve().parent == out_dir and f.stem.endswith(suffix))]
    return kept, len(files) - len(kept)


def output_path(source: Path, out_dir: Path, suffix: str, fmt: str) -> Path:
    """OUT/<stem><suffix><ext> of one input (see the module's docstring for ext)."""
    if fmt == "raw":
        ext = ".bin"
    elif source.suffix.lower() in MRC_SUFFIXES:
        ext = source.suffix.lower()
    elif source.suffix.lower() in TIFF_SUFFIXES:
        ext = ".mrc"  # a multi-page TIFF becomes a stack in it (ISPG 0), read back as one
    else:
        ext = ".mrcs"
    return out_dir / f"{source.stem}{suffix}{ext}"


def check_out_dir(out_dir: Path) -> None:
    """Make OUT if needed and check that files can be created in it; OutputError if not."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"-o {out_dir}: exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        raise OutputError(f"-o {out_dir}: cannot write there ({exc.strerror or exc})") from None


def plan_jobs(files: list[Path], out_dir: Path, suffix: str, fmt: str) -> list[Job]:
    """A job per file; OutputError when an output would replace an input or another job's output."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}: choose from {', '.join(FORMATS)}")
    jobs, claimed = [], {}
    inputs = {file.resolve() for file in files}
    for file in files:
        output = output_path(file, out_dir, suffix, fmt)
        key = output.resolve()
        if key in inputs:
            raise OutputError(f"{file}: its output {output} would replace an input; choose another -o or --suffix")
        if key in claimed:
            raise OutputError(f"{claimed[key]} and {file} would both be written to {output}; "
                              "denoise them into different -o folders")
        claimed[key] = file
        jobs.append(Job(file, output))
    return jobs


def open_source(path: Path, height: int | None, width: int | None):
    """An MrcSource, TiffSource or RawSource (DataError naming the file if it cannot be used: also
    when it is not a regular file, which a reader might wait on forever)."""
    os.close(open_readonly(path))
    if path.suffix.lower() in MRC_SUFFIXES:
        from ..micrographs.mrc_io import MrcSource

        return MrcSource(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        from ..micrographs.tiff_io import TiffSource

        return TiffSource(path)
    from ..micrographs.raw_io import RawSource

    return RawSource(path, height, width)


def open_writer(job: Job, source, fmt: str, label: str):
    """The writer of job.output for the frames of `source` (MrcWriter or RawWriter)."""
    if fmt == "raw":
        from ..micrographs.raw_io import RawWriter

        return RawWriter(job.output)
    from ..micrographs.mrc_io import MrcWriter

    stack = source.frames > 1 or job.output.suffix == ".mrcs"
    return MrcWriter(job.output, source.frames, source.height, source.width, stack=stack,
                     header=source.header, label=label)


def is_done(job: Job) -> bool:
    """Whether job.output exists (outputs appear complete, by rename, or not at all)."""
    return os.path.lexists(job.output)
