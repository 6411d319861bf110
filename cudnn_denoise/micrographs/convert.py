"""Micrograph files into a dataset: read, scale, cut, add noise or pair even/odd halves, write.

make_dataset --from-mrc and --even/--odd call convert(). The inputs are listed and every file's
header read first (micrographs/sources.py and its readers: MRC through mrcfile, TIFF through
tifffile), so an unreadable file or a shape without a patch is named before any pixel is read.
Then each micrograph (a file, a frame of a stack, or a frame of an even/odd pair) is read,
scaled and cut (data/micrographs.py), in order, in worker processes when asked (each depends
only on its own input), and its samples are streamed to the dataset by writer.write_pairs. A
micrograph that cannot be used is reported, left out, and the others go on. dataset.json gains
`pixel_size` and `sources` (docs/formats.md, "Micrograph datasets").
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.format import DataError, Dataset
from ..data.micrographs import (
    EDGES,
    PERCENTILES,
    Preprocessing,
    cut,
    grid,
    match_halves,
    noisy_patches,
    robust_range,
    to_unit,
)
from ..data.writer import check_target, ordered_map, write_pairs
from ..userio.console import plural
from . import sources


class NothingUsable(DataError):
    """Inputs were found, but not one micrograph could be used (each was reported)."""


@dataclass(frozen=True)
class Micrograph:
    """Frame `frame` of `paths`: one file, or the even and odd sums of one movie."""

    number: int  # the input's (or pair's) place in the list: it seeds the noise
    paths: tuple[Path, ...]
    frame: int
    frames: int  # of the file(s)
    height: int
    width: int
    pixel_size: list[float] | None  # angstrom, [x, y], from an MRC header

    @property
    def name(self) -> str:
        frame = f" frame {self.frame}" if self.frames > 1 else ""
        return " + ".join(map(str, self.paths)) + frame

    def entry(self) -> dict:
        """This micrograph's item in dataset.json's sources (the patch counts are added later)."""
        where = ({"file": str(self.paths[0].resolve())} if len(self.paths) == 1 else
                 {"even": str(self.paths[0].resolve()), "odd": str(self.paths[1].resolve())})
        return {**where, "frame": self.frame, "height": self.height, "width": self.width,
                "pixel_size": self.pixel_size}


@dataclass
class Cut:
    """What one micrograph gave: its samples, or why it gave none."""

    micrograph: Micrograph
    noisy: np.ndarray | None = None  # (n, size, size) float32
    clean: np.ndarray | None = None
    low: float = 0.0
    high: float = 0.0
    patches: int = 0
    error: str | None = None


@dataclass
class Report:
    """The outcome: the dataset, and every input or micrograph left out."""

    dataset: Dataset
    micrographs: int  # used
    skipped: list[str] = field(default_factory=list)
    pixel_sizes: set = field(default_factory=set)  # each distinct (x, y), None for unknown


def convert(out_dir: Path, p: Preprocessing, *, inputs: tuple[str, ...] = (),
            evens: tuple[str, ...] = (), odds: tuple[str, ...] = (), overwrite: bool = False,
            workers: int = 1, dtype: str = "float32",
            on_cut: Callable[[Cut], None] = lambda cut: None,
            on_skip: Callable[[str], None] = lambda line: None,
            on_start: Callable[[int], None] = lambda total: None) -> Report:
    """Write the dataset of micrograph files into out_dir; see the module's docstring.

    inputs (mode "noise") or evens and odds (mode "even-odd") are files, folders or glob
    patterns; dtype is the stored values' (writer.write_pairs). on_skip(line) is called for each input or micrograph left out, on_start(total)
    once the micrographs are counted, on_cut(cut) after each one written. DataError when no
    input file is found, or out_dir cannot be written; NothingUsable when none could be used.
    """
    skipped: list[str] = []

    def skip(line: str) -> None:
        skipped.append(line)
        on_skip(line)

    groups = _groups(p, inputs, evens, odds, skip)
    check_target(out_dir, overwrite)
    micrographs = _scan(groups, p, skip)
    on_start(len(micrographs))
    sources: list[dict] = []

    def samples():
        written = 0
        with ordered_map(functools.partial(cut_micrograph, p), micrographs, workers) as cuts:
            for result in cuts:
                if result.error is not None:
                    skip(result.error)
                    continue
                sources.append({**result.micrograph.entry(), "low": result.low, "high": result.high,
                                "patches": result.patches, "first_sample": written,
                                "samples": len(result.noisy)})
                yield result.noisy, result.clean
                written += len(result.noisy)
                on_cut(result)
        if not sources:
            raise NothingUsable(f"no dataset written: none of the {plural(len(micrographs), 'micrograph')} "
                                "could be used (named above)")

    def meta() -> dict:
        return {"pixel_size": _common_pixel_size(sources), "sources": sources}

    dataset = write_pairs(out_dir, samples(), p.size, p.size, p.made_by(), overwrite=overwrite,
                          meta=meta, dtype=dtype)
    return Report(dataset, len(sources), skipped, _pixel_sizes(sources))


def cut_micrograph(p: Preprocessing, m: Micrograph) -> Cut:
    """Read one micrograph (both halves for a pair), scale it and cut its samples."""
    try:
        frames = [_read(path, m.frame) for path in m.paths]
    except (ValueError, OSError) as exc:  # DataErrors name the file
        return Cut(m, error=str(exc) if isinstance(exc, DataError) else f"{m.name}: {exc}")
    try:
        low, high = robust_range(frames, p.percentiles)
    except DataError as exc:
        return Cut(m, error=f"{m.name}: {exc}")
    at = grid(m.height, m.width, p)
    scaled = [cut(to_unit(frame, low, high), at, p.size) for frame in frames]
    if p.mode == "noise":
        clean = scaled[0]
        return Cut(m, noisy_patches(clean, p, m.number, m.frame), clean, low, high, len(at))
    even, odd = scaled
    if not p.both_ways:
        return Cut(m, even, odd, low, high, len(at))
    # Sample 2k: even -> odd of patch k; sample 2k + 1: odd -> even.
    noisy, clean = np.empty((2, 2 * len(at), p.size, p.size), np.float32)
    noisy[0::2], noisy[1::2] = even, odd
    clean[0::2], clean[1::2] = odd, even
    return Cut(m, noisy, clean, low, high, len(at))


def _groups(p: Preprocessing, inputs, evens, odds, skip) -> list[tuple[Path, ...]]:
    """The files of each micrograph group: (file,) or (even, odd); DataError when there is none."""
    if p.mode == "noise":
        found, problems = sources.expand(list(inputs), sources.MICROGRAPH_SUFFIXES)
        groups = [(path,) for path in found]
    else:
        even_files, problems = sources.expand(list(evens), sources.MICROGRAPH_SUFFIXES)
        odd_files, odd_problems = sources.expand(list(odds), sources.MICROGRAPH_SUFFIXES)
        pairs, unmatched = match_halves(even_files, odd_files)
        problems += odd_problems
        groups = pairs
        if pairs:
            problems += unmatched
        else:
            problems += unmatched or ["--even and --odd name no files"]
    if not groups:
        raise DataError("no input micrographs: " + "; ".join(problems))
    for line in problems:
        skip(line)
    return groups


def _scan(groups: list[tuple[Path, ...]], p: Preprocessing, skip) -> list[Micrograph]:
    """Every micrograph of the groups, from the files' headers; a skip line for each group that
    cannot be used (unreadable, halves of different shapes, no patch in it)."""
    out = []
    for number, paths in enumerate(groups):
        try:
            shapes = [_header(path) for path in paths]
        except (ValueError, OSError) as exc:
            skip(str(exc) if isinstance(exc, DataError) else f"{paths[0]}: {exc}")
            continue
        if len({shape[:3] for shape in shapes}) > 1:
            told = " and ".join(f"{path} ({plural(f, 'frame')} of {h}x{w})"
                                for path, (f, h, w, _) in zip(paths, shapes))
            skip(f"{told}: the two halves differ in shape")
            continue
        frames, height, width, pixel_size = shapes[0]
        if not grid(height, width, p):
            inside = f" inside a border of {p.border}" if p.border else ""
            skip(f"{paths[0]}: {height}x{width} holds no {p.size}x{p.size} patch{inside}")
            continue
        out += [Micrograph(number, paths, frame, frames, height, width, pixel_size)
                for frame in range(frames)]
    return out


def _header(path: Path) -> tuple[int, int, int, list[float] | None]:
    """(frames, height, width, pixel size [x, y] in angstrom or None) of one file."""
    source = sources.open_source(path, None, None)
    try:
        pixel = source.header.pixel_size if source.header is not None else None
        return source.frames, source.height, source.width, pixel
    finally:
        source.close()


def _read(path: Path, frame: int) -> np.ndarray:
    source = sources.open_source(path, None, None)
    try:
        return source.read(frame)
    finally:
        source.close()


def _pixel_sizes(sources: list[dict]) -> set:
    """Each distinct pixel size of the sources, as (x, y); None for an unknown one."""
    return {tuple(s["pixel_size"]) if s["pixel_size"] else None for s in sources}


def _common_pixel_size(sources: list[dict]) -> list[float] | None:
    """The pixel size all sources share, or None (unknown for some, or not one size)."""
    sizes = _pixel_sizes(sources)
    return list(sizes.pop()) if len(sizes) == 1 and None not in sizes else None


# ---- the make_dataset flags ----


def add_arguments(parser) -> None:
    """make_dataset's flags for micrographs (the seed's preprocessing; docs/formats.md)."""
    g = parser.add_argument_group(
        "micrographs (real data: each micrograph scaled to [0, 1] by percentiles and cut into "
        "--size patches; docs/formats.md, \"Micrograph datasets\")")
    g.add_argument("--from-mrc", nargs="+", metavar="INPUT",
                   help="micrographs: .mrc files, .mrcs stacks (frame by frame), .tif / .tiff "
                        "(page by page), folders holding them, quoted glob patterns, or RELION "
                        "STAR files (.star: the micrographs its rlnMicrographName column names, "
                        "relative to the current folder; the star extra). The "
                        "scaled patch is the clean target; the noisy input adds --dose / --sigma "
                        "noise (seeded by --seed)")
    g.add_argument("--even", nargs="+", metavar="INPUT",
                   help="Noise2Noise pairs: the even-frame sums of the movies (files, folders, "
                        "patterns, STAR files); with --odd. No noise is added: each half is the "
                        "other's target")
    g.add_argument("--odd", nargs="+", metavar="INPUT",
                   help="the odd-frame sums, paired with --even by name: x_EVN.mrc with x_ODD.mrc "
                        "(also _even/_odd), or even/x.mrc with odd/x.mrc; both flags may name one "
                        "folder holding both halves")
    g.add_argument("--one-way", action="store_true",
                   help="even/odd: write each patch once, even -> odd (default: also odd -> even, "
                        "so twice the samples)")
    g.add_argument("--percentiles", nargs=2, type=float, metavar=("LOW", "HIGH"),
                   default=list(PERCENTILES),
                   help="these percentiles of each micrograph's pixels become 0 and 1, values "
                        f"beyond are clipped (default {PERCENTILES[0]} {PERCENTILES[1]})")
    g.add_argument("--stride", type=int, metavar="PX",
                   help="pixels between patch corners (default --size: side by side; less "
                        "overlaps)")
    g.add_argument("--border", type=int, default=0, metavar="PX",
                   help="pixels left out along every edge, e.g. motion-correction edge artefacts "
                        "(default 0)")
    g.add_argument("--edges", choices=EDGES, default="drop",
                   help="what is left at the right and bottom, narrower than a patch: drop "
                        "(default) it, or cover it with one more patch flush with the edge, which "
                        "overlaps its neighbour")


def preprocessing_from(args) -> Preprocessing | None:
    """The Preprocessing that make_dataset's flags ask for; None for synthetic data. ValueError
    naming the flag for a combination that means nothing."""
    if args.even is None and args.odd is None and args.from_mrc is None:
        return None
    if args.from_mrc is not None and (args.even is not None or args.odd is not None):
        raise ValueError("--from-mrc adds noise to micrographs; --even/--odd pair two halves: "
                         "choose one")
    if (args.even is None) != (args.odd is None):
        raise ValueError("--even and --odd come together: the two halves of each movie")
    synthetic = [flag for flag, given in (("--samples", args.samples is not None),
                                          ("--no-ctf", not args.ctf)) if given]
    mode = "noise" if args.from_mrc is not None else "even-odd"
    if mode == "even-odd":
        synthetic += [flag for flag, given in (("--dose", args.dose is not None),
                                               ("--sigma", args.sigma is not None),
                                               ("--seed", args.seed is not None)) if given]
    elif args.one_way:
        synthetic.append("--one-way")
    if synthetic:
        why = ("it cuts every patch of its micrographs; --samples and --no-ctf are for synthetic "
               "data, --one-way for --even/--odd" if mode == "noise" else
               "each half is the other's noisy twin: no noise is drawn, --samples and --no-ctf are "
               "for synthetic data")
        raise ValueError(f"{', '.join(synthetic)}: not used with "
                         f"{'--from-mrc' if mode == 'noise' else '--even/--odd'} ({why})")
    chosen = {name: value for name, value in (("dose", args.dose), ("sigma", args.sigma),
                                              ("seed", args.seed)) if value is not None}
    return Preprocessing(mode=mode, size=args.size, stride=args.stride, border=args.border,
                         edges=args.edges, percentiles=tuple(args.percentiles),
                         both_ways=not args.one_way, **chosen)
