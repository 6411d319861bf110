"""The STAR files denoise writes: each STAR input again, its micrographs' names pointing at the
denoised files (micrographs/star.py reads and writes the tables)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..micrographs import star
from ..userio.console import plural
from . import files


def plan(listings: list, out_dir, suffix: str) -> list[tuple[star.MicrographStar, Path]]:
    """Each STAR input with its output, OUT/<stem><suffix>.star; OutputError when it would replace
    a STAR input or two would be one file."""
    claimed: dict[Path, Path] = {}
    inputs = {listing.path.resolve() for listing in listings}
    plans = []
    for listing in listings:
        path = out_dir / f"{listing.path.stem}{suffix}{star.SUFFIX}"
        files.claim(claimed, inputs, listing.path, path, kind="a STAR input")
        plans.append((listing, path))
    return plans


def write(plans: list, jobs: list, failed: list) -> None:
    """Write each STAR input back with its micrographs' outputs (denoise --help says how)."""
    bad = {job.source for job in failed}
    outputs = {job.source.resolve(): job.output for job in jobs if job.source not in bad}
    for listing, path in plans:
        names = [outputs.get(Path(name).resolve()) for name in listing.names]
        kept = sum(name is not None for name in names)
        if not kept:
            print(f"no STAR file written for {listing.path}: none of its micrographs was denoised",
                  file=sys.stderr)
            continue
        listing.write(path, [None if name is None else star.relion_path(name) for name in names])
        left = len(names) - kept
        print(f"wrote {path}: {plural(kept, 'micrograph')}" + (
            f"; {plural(left, 'row')} of {listing.path} left out: their micrographs were not denoised "
            "(named above)" if left else ""))
