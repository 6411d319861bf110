"""CLI: write a synthetic cryo-EM-like dataset (noisy.bin, clean.bin, dataset.json) to a directory.

    python -m cudnn_denoise.make_dataset --out DIR --samples N [--size 1024] [--seed S]

The images come from cudnn_denoise.data.synthetic; the format is docs/formats.md's "Dataset".
"""

from __future__ import annotations

import argparse
import sys
import time

from cudnn_denoise.data.format import DEFAULT_PATCH_SIZE, DataError, check_values
from cudnn_denoise.data.synthetic import DEFAULT_DOSE, DEFAULT_SIGMA, write_dataset
from cudnn_denoise.progress import Progress


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cudnn_denoise.make_dataset",
        description="Write synthetic cryo-EM-like (noisy, clean) patch pairs as a dataset.")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="directory to write noisy.bin, clean.bin and dataset.json into")
    parser.add_argument("--samples", required=True, type=int, metavar="N", help="number of pairs")
    parser.add_argument("--size", type=int, default=DEFAULT_PATCH_SIZE, metavar="PX",
                        help=f"patch height = width in pixels (default {DEFAULT_PATCH_SIZE})")
    parser.add_argument("--seed", type=int, default=0,
                        help="the same seed and settings give the same bytes (default 0)")
    parser.add_argument("--dose", type=float, default=DEFAULT_DOSE,
                        help="Poisson dose, electrons per pixel of clean value 1 "
                             f"(default {DEFAULT_DOSE})")
    parser.add_argument("--sigma", type=float, default=DEFAULT_SIGMA,
                        help=f"Gaussian noise sigma (default {DEFAULT_SIGMA})")
    parser.add_argument("--no-ctf", dest="ctf", action="store_false",
                        help="leave out the CTF-like oscillation (keep only the low-pass)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a dataset already in --out")
    parser.add_argument("--check-data", action="store_true",
                        help="read the written files back and scan them for NaN, Inf and values "
                             "outside [0, 1]")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="processes making samples in parallel; the bytes do not depend on it "
                             "(default 1)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (there is none anyway when stderr is not a terminal)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bar = None if args.quiet else Progress(args.samples, "pairs")
    start = time.perf_counter()
    try:
        dataset = write_dataset(args.out, args.samples, args.size, args.seed, dose=args.dose,
                                sigma=args.sigma, ctf=args.ctf, overwrite=args.overwrite,
                                workers=args.workers, progress=None if bar is None else lambda done, _: bar.update(done))
        seconds = time.perf_counter() - start
        if args.check_data:
            check_values(dataset)
    except (DataError, ValueError) as exc:
        print(f"make_dataset: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    print(f"wrote {dataset.count} pairs of {dataset.height}x{dataset.width} float32 to "
          f"{args.out} ({dataset.nbytes / 2**30:.3f} GiB) in {seconds:.1f} s"
          + ("; values checked" if args.check_data else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
