"""python -m cudnn_denoise.train: train the seed's denoising CNN, with the seed's defaults.

Parses the command line, opens the data, builds the backend and hands them to training.Trainer;
then reports. With no --data it trains on a built-in synthetic dataset, made once and cached.
Started by an MPI launcher (mpirun -n R ...), it trains data-parallel on R ranks: --batch-size is
per rank, rank 0 prints and writes, and any rank's failure ends them all (cudnn_denoise.distributed.world).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from dataclasses import fields
from pathlib import Path

from . import checkpoint, cli
from .data.cache import KEEP_SHARE
from .data.cache import POLICIES as CACHE_POLICIES
from .data.fingerprint import fingerprint
from .data.flags import add_data_arguments
from .distributed import nccl
from .distributed import world as distributed
from .network import backends, options
from .network.options import PRECISIONS
from .port import calls, trace
from .training import earlier_run, lossplot, run_folder, start
from .training.loop import versus_baseline
from .training.run_record import SEED, Config
from .userio import arguments, console, runlog, signals
from .userio.files import UserFileError
from .userio.outdir import OutputLock

EXIT_CODES = """exit codes:
  0    finished
  1    unexpected internal error (a traceback follows: please report it)
  2    bad arguments, data or checkpoint (one line says what and where)
  3    the loss became NaN or infinite (the last good checkpoint stays)
  4    under MPI: the ranks' parameters differ (compared at every log line)
  5    under MPI on GPUs: the watchdog ended the run (a GPU made no progress for
       $CUDNN_DENOISE_NCCL_TIMEOUT seconds, default 300; NCCL reported an error; a peer died)
  130  stopped by SIGINT, 143 by SIGTERM, after writing a checkpoint
under MPI, any rank's non-zero code or unhandled error ends every rank through MPI_Abort"""

VALIDATION = """held-out pairs, never trained on: at every log line and at the end, the model's
mean loss over all of them (however few) and the PSNR are printed and written to metrics.jsonl;
it costs one forward pass over the set each time; the first line gives the PSNR of the noisy
inputs themselves (the baseline), and each one whether the model is above it"""

# The built-in dataset per backend: big enough to see the loss fall, small enough for minutes.



def parser() -> arguments.ArgumentParser:
    p = arguments.ArgumentParser(
        prog=cli.prog("train"), description=cli.description(__doc__),
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_version(p)
    add_data_arguments(p)
    add_data_arguments(p, prefix="val-", description=VALIDATION)
    t = p.add_argument_group("training (defaults: the seed's run)")
    t.add_argument("--batch-size", type=arguments.integer(minimum=1), default=SEED.batch_size,
                   help=f"samples per step (default {SEED.batch_size}); under mpirun -n R, per rank: a "
                        "step's batch is R times it")
    t.add_argument("--lr", type=arguments.number(positive=True), default=SEED.lr,
                   help=f"SGD learning rate (default {SEED.lr})")
    t.add_argument("--epochs", type=arguments.integer(minimum=1),
                   help=f"passes over the data (default {SEED.epochs}, or none with --max-steps); "
                        "with --max-steps, the first limit reached ends the run")
    t.add_argument("--max-steps", type=arguments.integer(minimum=0),
                   help="stop after N steps, over as many epochs as they take unless --epochs "
                        "ends the run first; 0 writes the initial checkpoint and exits")
    t.add_argument("--seed", type=arguments.integer(minimum=0), default=0,
                   help="seeds the initial parameters and the shuffle (default 0)")
    t.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=True,
                   help="a seeded permutation each epoch; --no-shuffle: batch k is samples kB..kB+B-1")
    t.add_argument("--drop-last", action="store_true",
                   help="skip each epoch's last partial batch (default: train on it, as the seed did)")
    t.add_argument("--init", metavar="CKPT", type=Path, help="start from this checkpoint's parameters (step 0)")
    t.add_argument("--cache", choices=CACHE_POLICIES, default="auto",
                   help="page cache of the training reads: keep (a set that fits in memory is "
                        "read from disk once, then from memory), drop (each range dropped once "
                        "read: for sets larger than memory), auto (default): keep when both "
                        f"files fit in {KEEP_SHARE:.0%}% of the memory available now "
                        "(MemAvailable), else drop; the log says which and why")
    o = p.add_argument_group("output")
    o.add_argument("-o", "--out", type=Path, default=Path("runs/train"),
                   help="folder for checkpoint/, metrics.jsonl (each log line), losses.tsv (every step's loss) "
                        "and loss.png (default runs/train)")
    o.add_argument("--checkpoint-every", type=arguments.integer(minimum=0), default=1000,
                   metavar="N",
                   help="write the checkpoint every N steps, and always at the end (default 1000; 0: end only)")
    again = o.add_mutually_exclusive_group()  # without either, an OUT that holds a run is refused
    again.add_argument("--resume", action="store_true",
                       help="continue the run in OUT from its checkpoint (its logs cut back to "
                            "the checkpoint's step)")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the run in OUT (its checkpoint, logs and plot) by a new "
                            "one, once the new one's first checkpoint is written (until then the "
                            "earlier run is kept aside, and put back if the new one fails); without --resume or --overwrite, an OUT that holds a run is "
                            "refused")
    o.add_argument("--log-every", type=arguments.integer(minimum=1), default=100, metavar="N",
                   help="a log line every N steps (default 100)")
    o.add_argument("--trace", type=Path, metavar="FILE",
                   help="write every cuDNN and cuBLAS call to FILE, one per line (docs/fortran.md); with the "
                        "reference backend, the calls the cudnn backend makes for each step")
    b = backends.add_arguments(p)
    # the cudnn-only flags: default None, told from a given one (backends.gpu_flags_given)
    b.add_argument("--deterministic", action="store_true", default=None,
                   help="deterministic cuDNN algorithms from the heuristics: runs of the legacy step repeat "
                        "bit for bit (with --graph-api or --precision bf16 two runs differed in the last "
                        "bits on the H200: docs/performance.md)")
    b.add_argument("--fused", action="store_true", default=None, help="conv + bias + ReLU in one cudnnConvolutionBiasActivationForward")
    b.add_argument("--graph", action="store_true", default=None, help="capture the step once as a CUDA graph and replay it")
    b.add_argument("--graph-api", action="store_true", default=None,
                   help="the NHWC fast path: every convolution direction one fused engine of cuDNN's graph "
                        "(backend) API (conv+bias+ReLU; dgrad+ReLU backward+bias gradient), chosen by timing; "
                        "the fastest TF32 step (docs/performance.md); not with --fused or --trace")
    b.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 (default): FP32 tensors, convolutions in --math. bf16: BF16 hidden activations "
                        "and convolutions, FP32 parameters, gradients, loss and update, as PyTorch's autocast; "
                        "faster, not bit-for-bit FP32 (implies --graph-api; docs/performance.md)")
    b.add_argument("--profile", type=arguments.integer(minimum=0), metavar="N",
                   help="time every cuDNN / cuBLAS call of N steps (from step 11) with CUDA events and "
                        "print the table at the end (cudnn backend, not with --graph or --trace)")
    return p


def main(argv=None) -> int:
    console.survive_lost_output()
    try:
        with signals.raising():  # from the first line: no traceback for a signal at any moment
            p = parser()
            args = p.parse_args(argv)
            world = distributed.detect()
            with runlog.capture(p.prog, argv):
                return world.run_or_abort(_main, args, world)
    except signals.Stopped as exc:
        print(f"stopped by {exc.name} before training began: nothing was written", file=sys.stderr)
        return exc.handled()


def _main(args, world) -> int:
    if not world.lead:
        sys.stdout = open(os.devnull, "w")  # rank 0 alone reports; errors still go to stderr
    try:
        return run(args, world)
    except signals.Stopped as exc:  # outside the training loop, which stops on a signal by itself
        print(f"stopped by {exc.name} outside the training steps: every step taken, if any, is in "
              f"{args.out / checkpoint.RUN_SUBFOLDER}", file=sys.stderr)
        return exc.handled()
    except (ValueError, OSError, backends.NoGpuError, nccl.GpuRanksError) as exc:
        console.error(cli.prog("train"), console.describe(exc))
        return 2
    except distributed.ParametersDiverged as exc:
        console.error(cli.prog("train"), str(exc))
        return 4


# The cudnn-only flags that a --trace on the reference backend follows: it records the calls the
# cudnn backend would make with them.
TRACED = ("--fused", "--graph", "--math")


def run(args, world: distributed.World = distributed.SINGLE) -> int:
    gpu_flags = backends.gpu_flags_given(args)
    if world.distributed and args.trace is not None:
        raise ValueError("--trace writes one process's calls: run it without mpirun, not on "
                         f"{world.size} rank(s)")
    default_length = args.epochs is None and args.max_steps is None  # --max-steps alone: no epoch limit
    if default_length:
        args.epochs = SEED.epochs
    if args.precision == "bf16" and not args.graph_api:
        args.graph_api, graph_api = True, "--graph-api (which --precision bf16 runs on)"
    else:
        graph_api = "--graph-api"
    options.check({**options.FLAGS, "graph_api": graph_api}, math=args.math, precision=args.precision,
                  fused=args.fused, graph_api=args.graph_api)
    if args.graph_api and args.trace is not None:
        raise ValueError(f"{graph_api} cannot be combined with --trace, which follows the legacy calls "
                         "(docs/fortran.md lists the graph API's)")
    if args.profile and (args.graph or args.trace is not None):
        raise ValueError("--profile times the calls one by one: it cannot be combined with --graph or --trace")
    backend, why = backends.resolve(args.backend)
    backends.refuse_gpu_flags([flag for flag in gpu_flags if args.trace is None or flag not in TRACED],
                              args.backend, backend, why)
    if backend != "cudnn" and args.precision != "fp32":
        raise ValueError(f"--precision {args.precision} needs the cudnn backend (a GPU); the {backend} backend "
                         f"({why}) computes in FP32")
    # Rank 0 alone writes into OUT; it holds OUT's lock for the whole run.
    with OutputLock(args.out, "train") if world.lead else contextlib.nullcontext():
        if world.lead:
            earlier_run.recover(args.out, run_folder.REPLACED)  # what a killed --overwrite set aside
            _check_out(args.out, args.resume, args.overwrite)
        # --overwrite: the earlier run is set aside until the new one's first checkpoint
        earlier = (earlier_run.EarlierRun(args.out, run_folder.REPLACED) if args.overwrite and world.lead
                   else earlier_run.NONE)
        with earlier:
            return _train(args, world, backend, why, on_checkpoint=earlier.discard,
                          default_length=default_length)


def _train(args, world, backend: str, why: str, on_checkpoint, default_length: bool) -> int:
    """The run; default_length: neither --epochs nor --max-steps was given (one epoch, so said)."""
    from .training.loop import NonFiniteLoss, Trainer

    print(f"backend: {backend} ({why}); math {args.math}, precision {args.precision}" if backend == "cudnn"
          else f"backend: {backend} ({why})")
    if world.size > 1:
        print(f"distributed: {world.size} ranks of batch {args.batch_size}: global batch "
              f"{world.size * args.batch_size}")
    dataset, val_dataset = start.datasets(args, world, backend)
    config = Config(**{f.name: getattr(args, f.name) for f in fields(Config) if hasattr(args, f.name)})
    config.backend = backend
    if world.lead:
        runlog.attach(args.out / runlog.LOG_NAME)
    position, params = start.parameters(args, config, dataset, world)
    stats = start.noisy_statistics(dataset)

    tracer = trace.OFF
    if args.trace is not None:
        tracer = trace.open_trace(args.trace, backend, calls.Settings(fused=config.fused, graph=config.graph,
                                                                       math=config.math))
    with tracer:
        trainer = Trainer(dataset, config, args.out, params, position=position, val_dataset=val_dataset,
                          data_stats=stats, tracer=tracer, world=world, on_checkpoint=on_checkpoint)
        if trainer.val_range is not None:
            low, high, where = trainer.val_range
            pairs = (f"{console.plural(val_dataset.count, 'pair')}, the training samples themselves (--val-data holds "
                     "the same as --data): not held out, a measure of fit only"
                     if fingerprint(val_dataset) == fingerprint(dataset)
                     else console.plural(val_dataset.count, "held-out pair"))
            print(f"validation: {pairs}, scored at each log line; "
                  f"PSNR = 10 log10(R^2 / MSE), R = {high - low:g}: the data range "
                  f"[{low:g}, {high:g}] ({where}); baseline (noisy input) {trainer.val_baseline:.2f} dB")
        try:
            if args.max_steps == 0:
                print(f"--max-steps 0: initial checkpoint written to {trainer.save()}")
                return 0
            steps, limit = trainer.limit
            if default_length:  # no flag was typed: name none
                limit = f"the default of {console.plural(args.epochs, 'epoch')}"
            epochs = math.ceil(steps / trainer.reader.batches_per_epoch)
            print(f"training {console.plural(steps, 'step')} ({limit}): batch "
                  f"{config.batch_size * world.size}, lr {config.lr}, {console.plural(epochs, 'epoch')} "
                  f"of {console.plural(trainer.reader.batches_per_epoch, 'batch', 'batches')}")
            try:
                summary = trainer.run()
            except NonFiniteLoss as exc:
                last = args.out / checkpoint.RUN_SUBFOLDER
                kept = f"the last good checkpoint stays at {last}" if last.exists() else "no checkpoint was written"
                console.error(cli.prog("train"), f"{exc}; {kept}")
                return 3
        finally:
            trainer.close()
    if world.lead:
        _report(summary, args.out, limit)
    if summary.interrupted is not None:
        print(f"stopped by signal {summary.interrupted} after step {summary.position.step}; "
              f"checkpoint at {summary.checkpoint}; continue with --resume", file=sys.stderr)
        return 128 + summary.interrupted
    return 0


def _previous_run(out: Path) -> str | None:
    """What of an earlier run OUT holds (for the message), or None."""
    if checkpoint.exists(out / checkpoint.RUN_SUBFOLDER):
        try:
            return f"a checkpoint at step {checkpoint.load(out / checkpoint.RUN_SUBFOLDER).step}"
        except checkpoint.CheckpointError:
            return "a checkpoint that cannot be read"
    logs = [name for name in run_folder.LOGS if (out / name).exists()]
    return f"{' and '.join(logs)} of a run without a checkpoint" if logs else None


def _check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run over an earlier one unless told (--resume or --overwrite)."""
    previous = _previous_run(out)
    if previous is not None and not (resume or overwrite):
        raise UserFileError(f"--out {out}: holds a run ({previous}); continue it with --resume, "
                            "replace it with --overwrite, or choose another --out")


def _report(summary, out: Path, limit: str) -> None:
    pos = summary.position
    ended = f"stopped by {limit}" if summary.interrupted is None else "interrupted"
    print(f"done: {console.plural(pos.step, 'step')} ({ended}), final loss {pos.last_loss:.4f}, average "
          f"loss {pos.loss_sum / max(pos.step, 1):.4f}; {console.plural(summary.steps_run, 'step')} in "
          f"{summary.seconds:.1f} s ({console.rate(summary.steps_run, summary.seconds, 'batches')})")
    if summary.val:
        val = summary.val
        print(f"validation: loss {val['val_loss']:.4f}, PSNR {versus_baseline(val)} "
              f"(data range {val['val_data_range']:g})")
    if summary.gpu_memory_mib is not None:
        print(f"GPU memory held: {summary.gpu_memory_mib:.0f} MiB")
    if summary.profile:
        print("time per call of one step (--profile, CUDA events):\n" + "\n".join(summary.profile))
    print(f"checkpoint: {summary.checkpoint}; metrics: {out / run_folder.METRICS}")
    _plot(out)


def _plot(out: Path) -> None:
    try:
        path = lossplot.write(out)
    except ImportError:
        print("loss.png skipped: matplotlib is not installed (pip install 'cudnn_denoise[plot]')")
        return
    if path is not None:
        print(f"loss curve: {path}")


if __name__ == "__main__":
    sys.exit(main())
