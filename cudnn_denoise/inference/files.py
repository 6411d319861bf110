"""denoise's jobs: each input's output named and checked, before the first micrograph is read.

The inputs come from micrographs/sources.py (files, folders and patterns). Output i is
OUT/<stem><suffix><ext>: ext
is .mrc or .mrcs after the input's for MRC inputs, .mrc for TIFF ones, .mrcs for raw ones (the
dataset format is a stack) with --format mrc, .bin with --format raw.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..micrographs.sources import MRC_SUFFIXES, TIFF_SUFFIXES
from ..userio.files import UserFileError

FORMATS = ("mrc", "raw")



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


def claim(claimed: dict, inputs: set, source: Path, output: Path, kind: str = "an input") -> None:
    """Record that source writes output (claimed: resolved output -> its source); OutputError when
    output would replace one of `inputs` (resolved paths, `kind` in the message) or be another
    source's output too."""
    key = output.resolve()
    if key in inputs:
        raise OutputError(f"{source}: its output {output} would replace {kind}; choose another -o or --suffix")
    if key in claimed:
        raise OutputError(f"{claimed[key]} and {source} would both be written to {output}; "
                          "denoise them into different -o folders")
    claimed[key] = source


def plan_jobs(files: list[Path], out_dir: Path, suffix: str, fmt: str, previews: bool = False) -> list[Job]:
    """A job per file; OutputError when an output would replace an input or another job's output,
    or (previews) two jobs' previews, OUT/<output's stem>[.NNNN].png, would be one file."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}: choose from {', '.join(FORMATS)}")
    jobs, claimed = [], {}
    inputs = {file.resolve() for file in files}
    for file in files:
        output = output_path(file, out_dir, suffix, fmt)
        claim(claimed, inputs, file, output)
        if previews:  # x.mrc and x.mrcs: two outputs, but one x.denoised.png
            stem = output.name[: -len(output.suffix)] if output.suffix else output.name
            preview = output.with_name(stem + ".png")
            pkey = ("preview", preview.resolve())
            if pkey in claimed:
                raise OutputError(f"{claimed[pkey]} and {file} would both write the preview {preview}; "
                                  "denoise them into different -o folders")
            claimed[pkey] = file
        jobs.append(Job(file, output))
    return jobs


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
