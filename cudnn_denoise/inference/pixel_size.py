"""The model's pixel size against the micrographs': a model learns features of a size in pixels."""

from __future__ import annotations

from pathlib import Path

from ..micrographs import sources

PIXEL_SIZE_TOLERANCE = 0.01  # relative: headers round, and 1% is far below what the model notices


def warnings(trained: list[float] | None, jobs, height, width) -> list[str]:
    """A warning per pixel size of the inputs (MRC headers) that differs from the training data's
    by more than PIXEL_SIZE_TOLERANCE, naming its first file: the model learned features of a size
    in pixels. Unknown on either side (an old checkpoint, a TIFF or raw input): no warning."""
    if trained is None:
        return []
    differing: dict[tuple, list] = {}  # input pixel size -> its files
    for job in jobs:
        size = input_pixel_size(job.source, height, width)
        if size is not None and any(abs(a - b) > PIXEL_SIZE_TOLERANCE * b for a, b in zip(size, trained)):
            differing.setdefault(tuple(size), []).append(job.source)
    return [f"warning: {paths[0]}{f' (and {len(paths) - 1} more)' if len(paths) > 1 else ''}: pixel "
            f"size {angstrom(size)}, the model was trained at {angstrom(trained)}; it denoises "
            "features at the scale in pixels it learned, so bin or rescale the micrographs to its "
            "pixel size" for size, paths in differing.items()]


def input_pixel_size(path: Path, height, width) -> list[float] | None:
    """[x, y] in angstrom from the file's MRC header; None when it has none or cannot be opened
    (the run names that input when it comes to it)."""
    try:
        source = sources.open_source(path, height, width)
    except (ValueError, OSError):
        return None
    try:
        return source.header.pixel_size if source.header is not None else None
    finally:
        source.close()


def angstrom(size) -> str:
    x, y = size
    return f"{x:g} A/px" if x == y else f"{x:g} x {y:g} A/px"
