"""CLI: write a dataset (noisy.bin, clean.bin, dataset.json) from micrographs, or a synthetic one,
or copy one with its values stored as another dtype.

    python -m cudnn_denoise.make_dataset --out DIR --from-mrc INPUT... [--size 1024] [--seed S]
    python -m cudnn_denoise.make_dataset --out DIR --even INPUT... --odd INPUT... [--size 1024]
    python -m cudnn_denoise.make_dataset --out DIR --samples N [--size 1024] [--seed S]
    python -m cudnn_denoise.make_dataset --out DIR --from-dataset SRC --dtype float16

Micrographs go through cudnn_denoise.micrographs.convert; synthetic images come from
cudnn_denoise.data.synthetic, copies from cudnn_denoise.data.recast; --dtype float16 stores any
of them as float16. The format is docs/formats.md's "Dataset".
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

from cudnn_denoise import cli
from cudnn_denoise.data.format import (
    DEFAULT_PATCH_SIZE,
    FILE_DTYPES,
    DataError,
    Dataset,
    check_values,
    open_dir,
)
from cudnn_denoise.data.recast import recast_dataset
from cudnn_denoise.data.synthetic import DEFAULT_DOSE, DEFAULT_SIGMA, write_dataset
from cudnn_denoise.micrographs.convert import (
    NothingUsable,
    add_arguments,
    convert,
    preprocessing_from,
)
from cudnn_denoise.micrographs.mrc_io import MrcfileMissing
from cudnn_denoise.micrographs.sources import EXIT_BAD_INPUTS
from cudnn_denoise.micrographs.star import StarfileMissing
from cudnn_denoise.micrographs.tiff_io import TifffileMissing
from cudnn_denoise.userio import arguments, console, signals
from cudnn_denoise.userio.outdir import OutputLock
from cudnn_denoise.userio.progress import Progress

EXIT_CODES = f"""exit codes:
  0    written
  1    unexpected internal error (a traceback follows: please report it)
  2    bad arguments or STAR input, no input found, mrcfile, tifffile or starfile not installed
       for the inputs, or an output that cannot be written (one line says what)
  {EXIT_BAD_INPUTS}    some micrographs could not be used: each was named when skipped, the others
       were written (none at all: no dataset); the last line gives the count
  130  stopped by SIGINT, 143 by SIGTERM: --out holds what it held before (a dataset is replaced
       only once the new one is whole)"""


def build_parser() -> arguments.ArgumentParser:
    parser = arguments.ArgumentParser(
        prog=cli.prog("make_dataset"),
        description="Write (noisy, clean) patch pairs as a dataset: from micrographs (--from-mrc), "
                    "from even/odd frame sums (--even, --odd), or synthetic (--samples).",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_version(parser)
    parser.add_argument("-o", "--out", required=True, metavar="DIR",
                        help="directory to write noisy.bin, clean.bin and dataset.json into")
    parser.add_argument("--samples", type=arguments.integer(minimum=1), metavar="N",
                        help="synthetic: number of pairs")
    parser.add_argument("--from-dataset", metavar="SRC",
                        help="a copy of the dataset in folder SRC with its values stored as "
                             "--dtype (SRC is never changed; --out must be another folder)")
    parser.add_argument("--dtype", choices=tuple(FILE_DTYPES), default="float32",
                        help="type of the stored values (default float32, the seed's); float16 "
                             "halves the bytes read per sample, each value rounded to within "
                             "2**-12 (docs/formats.md, docs/performance.md)")
    parser.add_argument("--size", type=arguments.integer(minimum=16), default=DEFAULT_PATCH_SIZE,
                        metavar="PX",
                        help="patch height = width in pixels, at least 16 (default "
                             f"{DEFAULT_PATCH_SIZE})")
    parser.add_argument("--seed", type=arguments.integer(minimum=0),
                        help="the same seed, inputs and settings give the same bytes (default 0)")
    parser.add_argument("--dose", type=arguments.number(positive=True),
                        help="Poisson dose, electrons per pixel of clean value 1 "
                             f"(default {DEFAULT_DOSE})")
    parser.add_argument("--sigma", type=arguments.number(minimum=0),
                        help=f"Gaussian noise sigma (default {DEFAULT_SIGMA})")
    parser.add_argument("--no-ctf", dest="ctf", action="store_false",
                        help="synthetic: leave out the CTF-like oscillation (keep the low-pass)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a dataset already in --out: the new one is written beside it "
                             "and replaces it only when whole (room for both is needed)")
    parser.add_argument("--check-data", action="store_true",
                        help="read the written files back and scan them for NaN, Inf and values "
                             "outside [0, 1]")
    parser.add_argument("--workers", type=arguments.integer(minimum=1), default=1, metavar="N",
                        help="processes making samples in parallel; the bytes do not depend on it "
                             "(default 1)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (there is none anyway when stderr is not a terminal)")
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    console.survive_lost_output()
    try:
        with signals.raising():  # from the first line: no traceback for a signal at any moment
            args = build_parser().parse_args(argv)
            try:
                settings = preprocessing_from(args)
                if args.from_dataset is not None:
                    _check_copy_flags(args, settings)
                elif settings is None and args.samples is None:
                    raise ValueError("say what to make: --from-mrc INPUT..., --even INPUT... "
                                     "--odd INPUT..., --samples N (synthetic), or --from-dataset "
                                     "SRC (a copy)")
                with OutputLock(args.out, "make_dataset"):
                    return _run(args, settings)
            # a reader's package missing: one line with the pip command, as denoise gives
            except (ValueError, OSError, MrcfileMissing, TifffileMissing, StarfileMissing) as exc:
                console.error(cli.prog("make_dataset"), console.describe(exc))
                return 2
    except signals.Stopped as exc:
        print(f"stopped by {exc.name}; the output folder holds what it held before, "
              "or the new dataset whole", file=sys.stderr)
        return exc.handled()


def _run(args, settings) -> int:
    """What the flags ask for, in --out (whose lock main() holds)."""
    if settings is not None:
        return _from_micrographs(args, settings)
    if args.from_dataset is not None:
        return _make(args, lambda progress: recast_dataset(
            _source(args.from_dataset), args.out, args.dtype, overwrite=args.overwrite,
            progress=progress), f" from {args.from_dataset}")
    return _make(args, lambda progress: write_dataset(
        args.out, args.samples, args.size, 0 if args.seed is None else args.seed,
        dose=DEFAULT_DOSE if args.dose is None else args.dose,
        sigma=DEFAULT_SIGMA if args.sigma is None else args.sigma, ctf=args.ctf,
        overwrite=args.overwrite, workers=args.workers, dtype=args.dtype, progress=progress))


def _make(args, make, source: str = "") -> int:
    """make(progress) -> Dataset with a progress bar (sized by the total progress(done, total)
    gives), the --check-data scan and the closing line; 2 and one line on a bad input."""
    start = time.perf_counter()
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None and not args.quiet:
            bar = Progress(total, "pairs")
        if bar is not None:
            bar.update(done)

    try:
        dataset = make(progress)
        seconds = time.perf_counter() - start
        if args.check_data:
            check_values(dataset)
    except (ValueError, OSError) as exc:
        console.error(cli.prog("make_dataset"), console.describe(exc))
        return 2
    finally:
        if bar is not None:
            bar.close()
    print(f"wrote {console.plural(dataset.count, 'pair')} of {dataset.height}x{dataset.width} "
          f"{dataset.dtype.name}{source} to {args.out} ({dataset.nbytes / 2**30:.3f} GiB) in {seconds:.1f} s"
          + ("; values checked" if args.check_data else ""))
    return 0


def _check_copy_flags(args, settings) -> None:
    """ValueError naming the flags that mean nothing with --from-dataset."""
    given = [flag for flag, set_ in (("--from-mrc/--even/--odd", settings is not None),
                                     ("--samples", args.samples is not None),
                                     ("--seed", args.seed is not None),
                                     ("--dose", args.dose is not None),
                                     ("--sigma", args.sigma is not None),
                                     ("--no-ctf", not args.ctf)) if set_]
    if given:
        raise ValueError(f"{', '.join(given)}: not used with --from-dataset (the copy holds the "
                         "source's samples; only --dtype changes)")


def _source(folder: str) -> Dataset:
    """The dataset --from-dataset names; DataError when it is not one."""
    if not Path(folder).is_dir():
        raise DataError(f"--from-dataset {folder}: is not a folder holding a dataset (noisy.bin, "
                        "clean.bin, dataset.json)")
    return open_dir(folder)


def _from_micrographs(args, settings) -> int:
    """make_dataset --from-mrc / --even --odd: convert, with a line per micrograph and a summary."""
    quiet = io.StringIO() if args.quiet else None  # not a terminal: no bar
    bar = Progress(0, "micrographs", stream=quiet)
    done = 0

    def start(total: int) -> None:
        bar.total = total

    def cut(result) -> None:
        nonlocal done
        done += 1
        m = result.micrograph
        both = (f" -> {console.plural(len(result.noisy), 'pair')}"
                if len(result.noisy) != result.patches else "")
        patches = console.plural(result.patches, "patch", "patches")
        bar.line(f"{m.name}: {m.height}x{m.width}, {patches}{both}; "
                 f"[{result.low:.5g}, {result.high:.5g}] -> [0, 1]")
        bar.update(done)

    started = time.perf_counter()
    try:
        report = convert(args.out, settings, inputs=args.from_mrc or (), evens=args.even or (),
                         odds=args.odd or (), overwrite=args.overwrite, workers=args.workers,
                         dtype=args.dtype,
                         on_cut=cut, on_start=start,
                         on_skip=lambda line: bar.line(f"skipped: {line}", out=sys.stderr))
        seconds = time.perf_counter() - started
        if args.check_data:
            check_values(report.dataset)
    except NothingUsable as exc:
        console.error(cli.prog("make_dataset"), str(exc))
        return EXIT_BAD_INPUTS
    except (ValueError, OSError) as exc:
        console.error(cli.prog("make_dataset"), console.describe(exc))
        return 2
    finally:
        bar.close()
    dataset = report.dataset
    print(f"wrote {console.plural(dataset.count, 'pair')} of {dataset.height}x{dataset.width} "
          f"{dataset.dtype.name} from {console.plural(report.micrographs, 'micrograph')} to "
          f"{args.out} ({dataset.nbytes / 2**30:.3f} GiB) in {seconds:.1f} s ({report.micrographs / seconds:.2f} micrographs/s); pixel size "
          + _pixel_sizes(report.pixel_sizes) + ("; values checked" if args.check_data else ""))
    if report.skipped:
        skipped = console.plural(len(report.skipped), "input or micrograph", "inputs or micrographs")
        console.error(cli.prog("make_dataset"), f"{skipped} could not be used (named above)")
        return EXIT_BAD_INPUTS
    return 0


def _pixel_sizes(sizes: set) -> str:
    """The micrographs' pixel size(s) in words (a set of (x, y) in angstrom, None: unknown)."""
    words = sorted("unknown" if s is None else f"{s[0]:g} x {s[1]:g} A" for s in sizes)
    return words[0] if len(words) == 1 else "differs among the micrographs: " + ", ".join(words)


if __name__ == "__main__":
    sys.exit(main())
