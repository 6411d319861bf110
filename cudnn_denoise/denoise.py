"""python -m cudnn_denoise.denoise: denoise micrographs (MRC, TIFF, raw float32, those a RELION STAR
file names) with a checkpoint.

Checks the output folder, the checkpoint and the inputs before any work, then hands the files to
inference.pipeline and reports: a line per file, a progress bar with micrographs/s, a summary.
The logic lives in cudnn_denoise/inference/ (tiling, intensity scaling, file formats, streaming).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from . import __version__, checkpoint, cli
from .data.format import DataError
from .inference import files, pixel_size, preview, star_outputs
from .inference.engine import Denoiser, OutOfGpuMemory, select_device
from .inference.intensity import TrainingStats
from .inference.pipeline import denoise_files
from .micrographs import sources, star
from .micrographs.mrc_io import MrcfileMissing, label, require_mrcfile
from .micrographs.sources import EXIT_BAD_INPUTS
from .micrographs.star import StarfileMissing
from .micrographs.tiff_io import TifffileMissing, require_tifffile
from .network import backends
from .training import run_record
from .userio import arguments, console, runlog, signals
from .userio.files import sweep_partials
from .userio.progress import Progress

EXIT_CODES = f"""exit codes:
  0    every input denoised, or skipped because its output exists
  1    unexpected internal error (a traceback follows: please report it)
  2    bad arguments, checkpoint, STAR input or output folder, no usable GPU for --backend
       cudnn, or an output that cannot be written (one line says what)
  {EXIT_BAD_INPUTS}    some inputs could not be read or are not 2-D micrographs or image stacks: each was
       named when skipped, the others were denoised; the last line gives the count
  130  stopped by SIGINT, 143 by SIGTERM: finished outputs stay; the same command goes on from there

Outputs are written under a temporary name and renamed when complete, so an existing output is a
finished one: a rerun skips it (unless --overwrite) and picks up where a stopped run ended.

A STAR input (RELION's micrographs.star; the star extra) is written back as DIR/<stem><suffix>.star
once the micrographs are done (and again by each rerun): its tables and columns as they were, each
rlnMicrographName naming that micrograph's output (relative to the current folder when under it,
else absolute), so that the next RELION job reads the denoised micrographs. Rows whose micrograph
was skipped because its output exists stay; rows whose micrograph could not be denoised (or is
missing) are left out, and a line says how many; with none left, no STAR file is written."""


def parser() -> arguments.ArgumentParser:
    p = arguments.ArgumentParser(
        prog=cli.prog("denoise"), description=cli.description(__doc__),
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="micrographs: .mrc / .mrcs files (an .mrcs stack is denoised frame by "
                        "frame), .tif / .tiff (page by page), raw .bin files in the dataset "
                        "format, folders holding them, quoted glob patterns, or RELION STAR "
                        "files (.star: the micrographs its rlnMicrographName column names, "
                        "relative to the current folder; see below)")
    p.add_argument("--checkpoint", required=True, type=Path, metavar="CKPT",
                   help="the trained checkpoint folder, or train's --out folder that holds it")
    cli.add_version(p)
    o = p.add_argument_group("output")
    o.add_argument("-o", "--out", type=Path, default=Path("denoised"), metavar="DIR",
                   help="folder for the outputs, made if needed (default ./denoised)")
    o.add_argument("--suffix", default=".denoised",
                   help="added to each input's name: x.mrc -> DIR/x<suffix>.mrc (default .denoised)")
    o.add_argument("--format", choices=files.FORMATS, default="mrc",
                   help="mrc: float32 (mode 2) MRC keeping the input's voxel size, origin and labels; "
                        "raw: float32 (N, H, W) as the dataset format, as .bin (default mrc)")
    o.add_argument("--overwrite", action="store_true", help="denoise again inputs whose output exists (default: skip them)")
    o.add_argument("--normalize", action="store_true",
                   help="write the model's intensity scale (that of the training data) instead of the input's")
    o.add_argument("--preview", action="store_true",
                   help="also write DIR/<name><suffix>.png per micrograph denoised: input left, "
                        "denoised right, binned, each from its own 1st (black) to 99th (white) "
                        "percentile")
    o.add_argument("--preview-size", type=arguments.integer(minimum=1),
                   default=preview.DEFAULT_SIZE, metavar="PX",
                   help="the longest side of each preview panel, at most (default "
                        f"{preview.DEFAULT_SIZE})")
    r = p.add_argument_group("raw inputs")
    r.add_argument("--height", type=arguments.integer(minimum=1), metavar="PX",
                   help="rows of a raw file's frames (default: its dataset.json)")
    r.add_argument("--width", type=arguments.integer(minimum=1), metavar="PX",
                   help="columns of a raw file's frames (default: its dataset.json)")
    b = backends.add_arguments(p)
    b.add_argument("--device", type=arguments.integer(minimum=0), metavar="N",
                   help="cudnn only: the CUDA device index (default: CuPy's current, 0)")
    b.add_argument("--tile-size", type=arguments.integer(minimum=1), metavar="PX",
                   help="output pixels per tile side (tiles are exact: a 3-pixel halo); default: the whole "
                        "micrograph if it fits in free GPU memory, else the largest tile that does; "
                        "512 on the reference backend. Out of GPU memory halves it and goes on")
    return p


def main(argv=None) -> int:
    console.survive_lost_output()
    args = None
    try:
        with signals.raising():  # from the first line: no traceback for a signal at any moment
            p = parser()
            args = p.parse_args(argv)
            with runlog.capture(p.prog, argv):
                try:
                    return run(args)
                except signals.Stopped as exc:
                    print(f"stopped by {exc.name}; finished outputs stay in {args.out}: the same "
                          "command goes on from there", file=sys.stderr)
                    return exc.handled()
                except (ValueError, OSError, MrcfileMissing, TifffileMissing, StarfileMissing,
                        OutOfGpuMemory, backends.NoGpuError) as exc:
                    console.error(p.prog, console.describe(exc))
                    return 2
    except signals.Stopped as exc:  # before the run began
        print(f"stopped by {exc.name}: nothing was written", file=sys.stderr)
        return exc.handled()
    finally:
        if args is not None and args.out.is_dir():
            sweep_partials(args.out, mine=True)  # a partial output that an interruption left


def run(args) -> int:
    gpu_flags = backends.gpu_flags_given(args)
    files.check_out_dir(args.out)
    sweep_partials(args.out)  # outputs that killed runs left half written
    saved, stats = _model(args)
    jobs, todo, problems, earlier, stars = _jobs(args, saved)
    runlog.attach(args.out / runlog.LOG_NAME)  # the work starts: the log goes beside the outputs
    backend, why = backends.resolve(args.backend)
    backends.refuse_gpu_flags(gpu_flags, args.backend, backend, why)
    if backend == "cudnn" and args.device is not None:
        why = select_device(args.device)
    print(f"backend: {backend} ({why})" + (f"; math {args.math}" if backend == "cudnn" else ""))
    print(f"checkpoint: {saved.path} (step {saved.step}); intensities: {_scale_note(stats, args.normalize)}")
    if earlier:
        print(f"ignoring {console.plural(earlier, 'input')} in {args.out} named like outputs "
              f"(*{args.suffix}.*)")
    if len(todo) < len(jobs):
        print(f"skipping {console.plural(len(jobs) - len(todo), 'input')} whose output exists in "
              f"{args.out} (--overwrite redoes them)")
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)

    denoiser = Denoiser(backend, saved.params, math=args.math, tile=args.tile_size, report=print)
    text = label(f"cudnn_denoise {__version__} {time.strftime('%Y-%m-%d')}: ",
                 f"{saved.path.resolve()} step {saved.step}")
    try:
        done, failed, frames, seconds = _denoise(args, todo, denoiser, stats, text)
    finally:
        denoiser.close()
    star_outputs.write(stars, jobs, failed)
    bad = len(failed) + len(problems)
    return _summary(args, done, bad, len(todo) + len(problems), frames, seconds)


def _model(args) -> tuple[checkpoint.Checkpoint, TrainingStats | None]:
    """The checkpoint and its intensity statistics, which denoising needs unless --normalize."""
    saved = checkpoint.load(args.checkpoint)
    stats = TrainingStats.from_checkpoint(saved)
    if stats is None and not args.normalize:
        raise checkpoint.CheckpointError(
            f"{args.checkpoint}: has no data_stats (the training inputs' intensity statistics), so "
            "micrographs cannot be brought into the model's range; pass --normalize to feed them unchanged "
            "and write the model's output as it is")
    return saved, stats


def _jobs(args, saved: checkpoint.Checkpoint) -> tuple[list, list, list[str], int, list]:
    """(every job, those still to do, inputs that could not be used, inputs skipped as earlier
    outputs, each STAR input and the STAR file written for it): checked before any work, with a
    warning for inputs whose pixel size is not the one the model was trained at."""
    listings: list[star.MicrographStar] = []
    inputs, problems = sources.expand(args.inputs, stars=listings)
    inputs, earlier = files.without_outputs(inputs, args.out, args.suffix)
    if not inputs:
        raise DataError("no input files: " + ("; ".join(problems) or f"all are earlier outputs in {args.out}"))
    jobs = files.plan_jobs(inputs, args.out, args.suffix, args.format, previews=args.preview)
    if args.format == "mrc" or any(job.is_mrc for job in jobs):
        require_mrcfile()
    if any(job.is_tiff for job in jobs):
        require_tifffile()
    todo = jobs if args.overwrite else [job for job in jobs if not files.is_done(job)]
    trained = run_record.read(saved).data.get("pixel_size")
    for line in pixel_size.warnings(trained, todo, args.height, args.width):
        print(line, file=sys.stderr)
    return jobs, todo, problems, earlier, star_outputs.plan(listings, args.out, args.suffix)


def _summary(args, done: int, bad: int, inputs: int, frames: int, seconds: float) -> int:
    print(f"done: {console.plural(done, 'file')}, {console.plural(frames, 'micrograph')} in "
          f"{seconds:.1f} s ({console.rate(frames, seconds, 'micrographs', digits=2)}); "
          f"outputs in {args.out}" + ("; previews beside them (*.png: input left, denoised right)"
                                      if args.preview and frames else ""))
    if bad:
        console.error(cli.prog("denoise"), f"{bad} of {console.plural(inputs, 'input')} could not be "
                      "denoised (named above)")
        return EXIT_BAD_INPUTS
    return 0


def _denoise(args, jobs, denoiser, stats, text) -> tuple[int, list, int, float]:
    """(files done, the jobs that failed, micrographs, seconds), reporting as it goes."""
    progress = Progress(len(jobs), "files")
    start = time.monotonic()
    counts = {"done": 0, "bad": 0, "frames": 0}
    failed = []

    def draw():
        elapsed = time.monotonic() - start
        rate = counts["frames"] / elapsed if elapsed > 0 else 0.0
        progress.update(counts["done"] + counts["bad"], suffix=f"{rate:.1f} micrographs/s")

    def on_frame():
        counts["frames"] += 1
        draw()

    def write_preview(job, index, frames, panels):
        preview.write_png(preview.preview_path(job.output, index, frames), preview.side_by_side(*panels))

    results = denoise_files(
        jobs, denoiser, stats=stats, normalize=args.normalize, on_frame=on_frame,
        open_source=lambda path: sources.open_source(path, args.height, args.width),
        open_writer=lambda job, source: files.open_writer(job, source, args.format, text),
        on_output=write_preview, preview_size=args.preview_size if args.preview else None)
    with contextlib.closing(results):
        for result in results:
            if result.error is not None:
                counts["bad"] += 1
                failed.append(result.job)
                progress.line(f"skipped: {result.error}", out=sys.stderr)
            else:
                counts["done"] += 1
                h, w = result.shape
                what = f"{result.frames} frames of {h}x{w}" if result.frames > 1 else f"{h}x{w}"
                tile = "whole" if result.tile >= max(h, w) else f"tiles of {result.tile}"
                progress.line(f"{result.job.source} -> {result.job.output} ({what}, {tile}, {result.seconds:.2f} s)")
            draw()
    progress.close()
    return counts["done"], failed, counts["frames"], time.monotonic() - start


def _scale_note(stats: TrainingStats | None, normalize: bool) -> str:
    if stats is None:
        return "no data_stats in the checkpoint: inputs fed unchanged (--normalize)"
    into = f"each micrograph mapped to the training data's mean {stats.mean:.4g}, std {stats.std:.4g}"
    return into + ("; outputs on that scale (--normalize)" if normalize else "; outputs back on the input's scale")


if __name__ == "__main__":
    sys.exit(main())
