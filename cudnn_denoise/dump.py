"""python -m cudnn_denoise.dump: one training step's every intermediate, as raw float32 files.

Loads a checkpoint, reads samples I..I+B-1 of a dataset in order, takes one SGD step with the
backend's record_step and writes each intermediate to OUT/<name>.bin (raw little-endian float32,
C order, no header) with OUT/manifest.json (docs/formats.md, "Dump"); with the cudnn backend also
OUT/algorithms.txt, the algorithms of the step as train writes them, so that the Fortran program
runs them (denoise_train --algorithms) without reading a trace. stdout gets one
checksum.format_checksum line per tensor, in the manifest's order and nothing else, so that it
can be diffed with the Fortran program's; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np

from . import __version__, checkpoint, cli
from .data.flags import add_data_arguments, dataset_from_args
from .data.format import (
    DTYPE,
    DataError,
    Dataset,
    open_readonly,
    read_exact,
)
from .network import backends
from .port import algorithm_table, calls, trace
from .port.checksum import format_checksum
from .port.dump_format import dump_members, foreign_in_dump, write_dump
from .training import run_record
from .training.run_record import SEED
from .userio import arguments, console, signals
from .userio.files import sweep_partials
from .userio.outdir import LOCK_NAME, OutputLock

EXIT_CODES = """exit codes:
  0    written
  1    unexpected internal error (a traceback follows: please report it)
  2    bad arguments, data, checkpoint or OUT (one line says what and where)
  130  stopped by SIGINT, 143 by SIGTERM: OUT holds what it held before"""


def parser() -> arguments.ArgumentParser:
    p = arguments.ArgumentParser(
        prog=cli.prog("dump"), description=cli.description(__doc__),
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path, metavar="CKPT",
                   help="checkpoint folder whose parameters take the step (or train's --out "
                        "folder)")
    cli.add_version(p)
    add_data_arguments(p)
    s = p.add_argument_group("the step")
    s.add_argument("--index", required=True, type=arguments.integer(minimum=0), metavar="I",
                   help="first sample of the batch")
    s.add_argument("--batch-size", type=arguments.integer(minimum=1), metavar="B",
                   help=f"samples I..I+B-1, in order (default: the checkpoint's run's, else {SEED.batch_size})")
    s.add_argument("--lr", type=arguments.number(positive=True),
                   help=f"SGD learning rate (default: the checkpoint's run's, else {SEED.lr})")
    o = p.add_argument_group("output")
    o.add_argument("-o", "--out", required=True, type=Path, metavar="DIR",
                   help="folder for <name>.bin and manifest.json; must be empty or new")
    o.add_argument("--overwrite", action="store_true",
                   help="replace the dump in OUT (only a dump: any other folder is refused) once the new one "
                        "is whole")
    o.add_argument("--trace", type=Path, metavar="FILE",
                   help="write every cuDNN and cuBLAS call to FILE, one per line (docs/fortran.md); with the "
                        "reference backend, the calls the cudnn backend makes for the step")
    backends.add_arguments(p)
    return p


def main(argv=None) -> int:
    console.survive_lost_output()
    try:
        with signals.raising():
            return run(parser().parse_args(argv))
    except signals.Stopped as exc:
        print(f"stopped by {exc.name}: no dump was written (OUT holds what it held before)",
              file=sys.stderr)
        return exc.handled()
    except (ValueError, OSError, backends.NoGpuError) as exc:
        console.error(cli.prog("dump"), console.describe(exc))
        return 2


def run(args) -> int:
    gpu_flags = backends.gpu_flags_given(args)
    saved = checkpoint.load(args.checkpoint)
    config = run_record.read(saved).config
    batch = args.batch_size if args.batch_size is not None else config.get("batch_size", SEED.batch_size)
    lr = args.lr if args.lr is not None else config.get("lr", SEED.lr)
    if not lr > 0:
        raise checkpoint.CheckpointError(f"{saved.path}: its run's lr is {lr}; give --lr")
    dataset = dataset_from_args(args)
    if args.index > dataset.count - batch:
        raise DataError(f"--index {args.index} with batch {batch} needs samples {args.index}.."
                        f"{args.index + batch - 1}, but {dataset.noisy} holds 0..{dataset.count - 1}")
    _check_out(args.out, args.overwrite)
    backend, why = backends.resolve(args.backend)
    # a --trace on the reference backend follows --math: the calls the cudnn backend would make
    backends.refuse_gpu_flags([flag for flag in gpu_flags if args.trace is None or flag != "--math"],
                              args.backend, backend, why)
    print(f"backend: {backend} ({why})" + (f"; math {args.math}" if backend == "cudnn" else ""), file=sys.stderr)

    x, target = read_batch(dataset, args.index, batch)
    tracer = trace.OFF
    if args.trace is not None:
        tracer = trace.open_trace(args.trace, backend, calls.Settings(keep_intermediates=True, math=args.math))
    with tracer:
        with tracer.setup(f"model for batch {batch} x 1 x {dataset.height} x {dataset.width}"):
            model = backends.build(backend, saved.params, batch=batch, height=dataset.height,
                                   width=dataset.width, math=args.math, deterministic=True,
                                   keep_intermediates=True)
            tracer.register(model)
        try:
            x, target = tracer.inputs(model, x, target)  # the arrays the step reads, named x and target
            with tracer.step(saved.step + 1, x, target, lr):
                record = model.record_step(x, target, lr)
            tables = algorithm_tables(model, backend, batch, dataset.height, dataset.width, args.math)
        finally:
            model.close()
    settings = {
        "checkpoint": {"path": os.path.abspath(saved.path), "step": saved.step, "sha256": saved.manifest["sha256"]},
        "data": {"noisy": os.path.abspath(dataset.noisy), "clean": os.path.abspath(dataset.clean),
                 "height": dataset.height, "width": dataset.width, "count": dataset.count},
        "index": args.index, "batch_size": batch, "lr": lr, "backend": backend,
        "math": args.math if backend == "cudnn" else None, "deterministic": backend == "cudnn",
        "versions": _versions(backend),
    }
    with OutputLock(args.out, "dump"):
        _check_out(args.out, args.overwrite)  # again: another command may have written there
        manifest = write_dump(args.out, record, settings, tables)
    for entry in manifest["tensors"]:
        print(format_checksum(entry["name"], record[entry["name"]].astype(np.float32)))
    print(f"wrote {console.plural(len(manifest['tensors']), 'tensor')} of step {saved.step + 1} (samples {args.index}.."
          f"{args.index + batch - 1}, lr {lr}) to {args.out}", file=sys.stderr)
    return 0


def algorithm_tables(model, backend: str, batch: int, height: int, width: int, math: str) -> dict[str, str]:
    """The dump's tables: a cudnn model's algorithm table (the reference backend chose none)."""
    if backend != "cudnn":
        return {}
    return {algorithm_table.FILE_NAME: algorithm_table.model_text(model, batch, height, width, math)}


def read_batch(dataset: Dataset, first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, target): samples first..first+count-1 of the noisy and the clean file, (count, 1, H, W)."""
    out = []
    for path in (dataset.noisy, dataset.clean):
        array = np.empty((count, 1, dataset.height, dataset.width), dataset.dtype)
        fd = open_readonly(path)
        try:
            read_exact(fd, memoryview(array).cast("B"), first * dataset.sample_nbytes, path)
        finally:
            os.close(fd)
        out.append(array.astype(DTYPE, copy=False))  # float16 files widen exactly
    return out[0], out[1]


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    if out.is_dir():
        sweep_partials(out)  # what killed dumps left
    if not out.is_dir():
        return
    held = sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME)
    if held and not overwrite:
        raise ValueError(f"--out {out}: not empty (write into it anyway with --overwrite)")
    if held:  # --overwrite replaces a dump, nothing else
        why = foreign_in_dump(out)
        if why is None:
            foreign = [name for name in held if name not in dump_members(out)]
            if foreign:
                why = f"holds {foreign[0]!r}, which is no part of a dump"
        if why is not None:
            raise ValueError(f"--out {out}: not a dump ({why}); --overwrite replaces only a dump: "
                             "choose another --out")


def _versions(backend: str) -> dict:
    versions = {"cudnn_denoise": __version__, "python": platform.python_version(),
                "numpy": np.__version__}
    if backend == "cudnn":
        import cupy

        from .bindings import versions as library_versions
        from .bindings.device import gpu_status

        versions.update(library_versions(), cupy=cupy.__version__, gpu=gpu_status()[1])
    return versions


if __name__ == "__main__":
    sys.exit(main())
