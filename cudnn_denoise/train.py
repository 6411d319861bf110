"""python -m cudnn_denoise.train: train the seed's denoising CNN, with the seed's defaults.

Parses the command line, opens the data, builds the backend and hands them to training.Trainer;
then reports. With no --data it trains on a built-in synthetic dataset, made once and cached.
Started by an MPI launcher (mpirun -n R ...), it trains data-parallel on R ranks: --batch-size is
per rank, rank 0 prints and writes, and any rank's failure ends them all (cudnn_denoise.distributed).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np

from . import backends, checkpoint, cli, distributed, nccl, plan, runlog, trace
from .data.cache import KEEP_SHARE
from .data.cache import POLICIES as CACHE_POLICIES
from .data.format import DataError, add_data_arguments, dataset_from_args, open_dir
from .layers.precision import PRECISIONS
from .params import init_params

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

# The built-in dataset per backend: big enough to see the loss fall, small enough for minutes.
DEFAULT_DATA = {"cudnn": {"samples": 2048, "size": 512}, "reference": {"samples": 800, "size": 128}}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=cli.prog("train"), description=__doc__.split("\n\n")[0],
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_version(p)
    add_data_arguments(p)
    add_data_arguments(p, prefix="val-")
    t = p.add_argument_group("training (defaults: the seed's run)")
    t.add_argument("--batch-size", type=int, default=4,
                   help="samples per step (default 4); under mpirun -n R, per rank: a step's batch is R times it")
    t.add_argument("--lr", type=float, default=0.001, help="SGD learning rate (default 0.001)")
    t.add_argument("--epochs", type=int, default=1, help="passes over the data (default 1)")
    t.add_argument("--max-steps", type=int, help="stop after N steps; 0 writes the initial checkpoint and exits")
    t.add_argument("--seed", type=int, default=0, help="seeds the initial parameters and the shuffle (default 0)")
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
    o.add_argument("--out", type=Path, default=Path("runs/train"),
                   help="folder for checkpoint/, metrics.jsonl (each log line), losses.tsv (every step's loss) "
                        "and loss.png (default runs/train)")
    o.add_argument("--checkpoint-every", type=int, default=1000, metavar="N",
                   help="write the checkpoint every N steps, and always at the end (default 1000; 0: end only)")
    o.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint where it stopped")
    o.add_argument("--log-every", type=int, default=100, metavar="N", help="a log line every N steps (default 100)")
    o.add_argument("--trace", type=Path, metavar="FILE",
                   help="write every cuDNN and cuBLAS call to FILE, one per line (docs/fortran.md); with the "
                        "reference backend, the calls the cudnn backend makes for each step")
    b = backends.add_arguments(p)
    b.add_argument("--deterministic", action="store_true",
                   help="deterministic cuDNN algorithms from the heuristics: runs repeat bit for bit")
    b.add_argument("--fused", action="store_true", help="conv + bias + ReLU in one cudnnConvolutionBiasActivationForward")
    b.add_argument("--graph", action="store_true", help="capture the step once as a CUDA graph and replay it")
    b.add_argument("--graph-api", action="store_true",
                   help="the NHWC fast path: every convolution direction one fused engine of cuDNN's graph "
                        "(backend) API (conv+bias+ReLU; dgrad+ReLU backward+bias gradient), chosen by timing; "
                        "the fastest TF32 step (docs/performance.md); not with --fused or --trace")
    b.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 (default): FP32 tensors, convolutions in --math. bf16: BF16 hidden activations "
                        "and convolutions, FP32 parameters, gradients, loss and update, as PyTorch's autocast; "
                        "faster, not bit-for-bit FP32 (implies --graph-api; docs/performance.md)")
    b.add_argument("--profile", type=int, default=0, metavar="N",
                   help="time every cuDNN / cuBLAS call of N steps (from step 11) with CUDA events and "
                        "print the table at the end (cudnn backend, not with --graph or --trace)")
    return p


def default_dataset(backend: str, seed: int):
    """The cached built-in synthetic dataset for this backend, made on first use."""
    from .data.synthetic import write_dataset
    from .progress import Progress

    spec = DEFAULT_DATA[backend]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cudnn_denoise"
    folder = cache / f"synthetic-{spec['size']}px-{spec['samples']}-seed{seed}"
    if (folder / "dataset.json").exists():
        print(f"data: built-in synthetic set, {spec['samples']} pairs of {spec['size']}x{spec['size']} in {folder}")
        return open_dir(folder)
    print(f"data: making the built-in synthetic set ({spec['samples']} pairs of {spec['size']}x{spec['size']}) "
          f"in {folder}, once")
    progress = Progress(spec["samples"], "pairs")
    dataset = write_dataset(folder, spec["samples"], spec["size"], seed, overwrite=True,
                            workers=os.cpu_count() or 1, progress=lambda done, total: progress.update(done))
    progress.close()
    return dataset


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    world = distributed.detect()
    with runlog.capture(p.prog, argv):
        return world.run_or_abort(_main, args, world)


def _main(args, world) -> int:
    if not world.lead:
        sys.stdout = open(os.devnull, "w")  # rank 0 alone reports; errors still go to stderr
    try:
        return run(args, world)
    except (DataError, checkpoint.CheckpointError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (backends.NoGpuError, nccl.GpuRanksError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except distributed.ParametersDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4


def run(args, world: distributed.World = distributed.SINGLE) -> int:
    from .data.stats import noisy_stats
    from .training import Config, NonFiniteLoss, Trainer, position_from

    for name in ("batch_size", "epochs", "log_every"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(args, name)}")
    if world.distributed and args.trace is not None:
        raise ValueError("--trace writes one process's calls: run it without mpirun, not on "
                         f"{world.size} rank(s)")
    if args.precision == "bf16":
        if args.math == "fp32":
            raise ValueError("--precision bf16 rounds activations to BF16 on tensor cores: it cannot be combined "
                             "with --math fp32 (strict FP32)")
        args.graph_api = True  # BF16 exists on the graph-API path only
    if args.graph_api and (args.fused or args.trace is not None):
        raise ValueError("--graph-api (and --precision bf16, which runs on it) fuses through the graph API: it "
                         "cannot be combined with --fused (the legacy fused call) or --trace (which follows the "
                         "legacy calls; docs/fortran.md lists the graph API's)")
    if args.profile and (args.graph or args.trace is not None):
        raise ValueError("--profile times the calls one by one: it cannot be combined with --graph or --trace")
    for name in ("max_steps", "checkpoint_every", "profile"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be 0 or more, not {getattr(args, name)}")
    backend, why = backends.resolve(args.backend)
    if backend != "cudnn" and args.precision != "fp32":
        raise ValueError(f"--precision {args.precision} needs the cudnn backend (a GPU); the {backend} backend "
                         f"({why}) computes in FP32")
    print(f"backend: {backend} ({why}); math {args.math}, precision {args.precision}" if backend == "cudnn"
          else f"backend: {backend} ({why})")
    if world.size > 1:
        print(f"distributed: {world.size} ranks of batch {args.batch_size}: global batch "
              f"{world.size * args.batch_size}")
    dataset = dataset_from_args(args, required=False)
    if dataset is None:  # rank 0 makes the built-in set once; the others open it after
        if world.lead:
            dataset = default_dataset(backend, args.seed)
        world.barrier()
        dataset = dataset or default_dataset(backend, args.seed)
    val_dataset = dataset_from_args(args, prefix="val-", required=False)
    for data, batch in ((dataset, args.batch_size * world.size), (val_dataset, args.batch_size)):
        if data is not None and data.count < batch:
            raise DataError(f"{data.noisy}: {data.count} samples, fewer than one batch of {batch}")
    config = Config(**{f.name: getattr(args, f.name) for f in fields(Config) if hasattr(args, f.name)})
    config.backend = backend
    args.out.mkdir(parents=True, exist_ok=True)
    if world.lead:
        runlog.attach(args.out / runlog.LOG_NAME)

    position, params = None, None
    if args.resume:
        saved = checkpoint.load(args.out / "checkpoint")
        _check_resumable(saved.extra, config, dataset, world.size)
        position, params = position_from(saved), saved.params
        print(f"resuming from {args.out / 'checkpoint'} at step {position.step} (epoch {position.epoch}, "
              f"batch {position.batch})")
    elif args.init is not None:
        params = checkpoint.load(args.init).params
        print(f"initial parameters from {args.init}")
    else:
        params = init_params(args.seed)
    stats = noisy_stats(dataset)
    if not all(math.isfinite(value) for value in stats.values()):  # the checkpoint's JSON holds no NaN
        raise DataError(f"{dataset.noisy}: NaN or Inf among the samples read for the intensity statistics; "
                        "--check-data names the first bad sample")
    print(f"data: {dataset.count} pairs of {dataset.height}x{dataset.width} ({dataset.noisy}); "
          f"noisy mean {stats['mean']:.4f} std {stats['std']:.4f}")

    tracer = trace.OFF
    if args.trace is not None:
        tracer = trace.open_trace(args.trace, backend, plan.Settings(fused=config.fused, graph=config.graph,
                                                                       math=config.math))
    with tracer:
        trainer = Trainer(dataset, config, args.out, params, position=position, val_dataset=val_dataset,
                          data_stats=stats, tracer=tracer, world=world)
        if trainer.val_range is not None:
            low, high, where = trainer.val_range
            print(f"validation: {val_dataset.count} held-out pairs, scored at each log line; "
                  f"PSNR = 10 log10(R^2 / MSE), R = {high - low:g}: the data range "
                  f"[{low:g}, {high:g}] ({where})")
        try:
            if args.max_steps == 0:
                print(f"--max-steps 0: initial checkpoint written to {trainer.save()}")
                return 0
            print(f"training {trainer.total_steps} steps: batch {config.batch_size * world.size}, lr {config.lr}, "
                  f"{config.epochs} epoch(s) of {trainer.reader.batches_per_epoch} batches")
            try:
                summary = trainer.run()
            except NonFiniteLoss as exc:
                last = args.out / "checkpoint"
                kept = f"the last good checkpoint stays at {last}" if last.exists() else "no checkpoint was written"
                print(f"error: {exc}; {kept}", file=sys.stderr)
                return 3
        finally:
            trainer.close()
    if world.lead:
        _report(summary, args.out)
    if summary.interrupted is not None:
        print(f"stopped by signal {summary.interrupted} after step {summary.position.step}; "
              f"checkpoint at {summary.checkpoint}; continue with --resume", file=sys.stderr)
        return 128 + summary.interrupted
    return 0


def _check_resumable(extra: dict, config, dataset, ranks: int = 1) -> None:
    """Refuse to resume a run whose batches would differ from the stopped one's. The global batch
    (batch size x ranks) must match; the number of ranks may change (2 x 4 resumes as 1 x 8)."""
    saved = extra.get("config", {})
    if "batch_size" in saved:
        saved_ranks = saved.get("ranks", 1)
        if saved["batch_size"] * saved_ranks != config.batch_size * ranks:
            raise checkpoint.CheckpointError(
                f"--resume: the checkpoint's run used batch_size={saved['batch_size']} on {saved_ranks} rank(s), "
                f"this one {config.batch_size} on {ranks}: their global batches must be equal")
    for key in ("seed", "shuffle", "drop_last"):
        if key in saved and saved[key] != getattr(config, key):
            raise checkpoint.CheckpointError(
                f"--resume: the checkpoint's run used {key}={saved[key]!r}, this one {getattr(config, key)!r}")
    data = extra.get("data", {})
    if data and data.get("count") != dataset.count:
        raise checkpoint.CheckpointError(
            f"--resume: the checkpoint's data had {data.get('count')} samples, {dataset.noisy} has {dataset.count}")


def _report(summary, out: Path) -> None:
    pos = summary.position
    rate = summary.steps_run / summary.seconds if summary.seconds > 0 else 0.0
    print(f"done: {pos.step} steps, final loss {pos.last_loss:.4f}, average loss "
          f"{pos.loss_sum / max(pos.step, 1):.4f}; {summary.steps_run} steps in {summary.seconds:.1f} s "
          f"({rate:.1f} batches/s)")
    if summary.val:
        val = summary.val
        print(f"validation: loss {val['val_loss']:.4f}, PSNR {val['val_psnr']:.2f} dB "
              f"(data range {val['val_data_range']:g})")
    if summary.gpu_memory_mib is not None:
        print(f"GPU memory held: {summary.gpu_memory_mib:.0f} MiB")
    if summary.profile:
        print("time per call of one step (--profile, CUDA events):\n" + "\n".join(summary.profile))
    print(f"checkpoint: {summary.checkpoint}; metrics: {out / 'metrics.jsonl'}")
    _plot(out)


def _plot(out: Path) -> None:
    import json

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("loss.png skipped: matplotlib is not installed (pip install 'cudnn_denoise[plot]')")
        return
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = np.loadtxt(out / "losses.tsv", ndmin=2) if (out / "losses.tsv").stat().st_size else np.zeros((0, 2))
    if not rows or not len(steps):
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps[:, 0], steps[:, 1], lw=0.5, alpha=0.6, label="loss (every step)")
    ax.plot([r["step"] for r in rows], [r["average"] for r in rows], "o-", label="running average")
    if "val_loss" in rows[0]:
        ax.plot([r["step"] for r in rows], [r["val_loss"] for r in rows], label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("MSE")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=100)
    plt.close(fig)
    print(f"loss curve: {out / 'loss.png'}")


if __name__ == "__main__":
    sys.exit(main())
