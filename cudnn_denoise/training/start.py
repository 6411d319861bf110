"""How a training run starts: its datasets, its first parameters (new, --init, or resumed after
checking that the checkpoint is this run's), and the data's intensity statistics.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict
from pathlib import Path

from .. import checkpoint
from ..data.fingerprint import fingerprint
from ..data.flags import dataset_from_args
from ..data.format import META_NAME, DataError, open_dir
from ..data.stats import noisy_stats
from ..params import init_params
from ..userio.console import plural
from ..userio.outdir import OutputLock
from . import run_folder, run_record
from .loop import logged_loss, same_loss

DEFAULT_DATA = {"cudnn": {"samples": 2048, "size": 512}, "reference": {"samples": 800, "size": 128}}


def default_dataset(backend: str, seed: int):
    """The cached built-in synthetic dataset for this backend, made on first use (by one process:
    another that wants it at the same time waits for it)."""
    from ..data.synthetic import write_dataset
    from ..userio.progress import Progress

    spec = DEFAULT_DATA[backend]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cudnn_denoise"
    folder = cache / f"synthetic-{spec['size']}px-{spec['samples']}-seed{seed}"
    what = f"{spec['samples']} pairs of {spec['size']}x{spec['size']}"
    with OutputLock(folder, "train (making the built-in dataset)", "the built-in dataset's folder",
                    wait=True):
        if (folder / META_NAME).exists():
            print(f"data: built-in synthetic set, {what} in {folder}")
            return open_dir(folder)
        print(f"data: making the built-in synthetic set ({what}) in {folder}, once")
        progress = Progress(spec["samples"], "pairs")
        dataset = write_dataset(folder, spec["samples"], spec["size"], seed, overwrite=True,
                                workers=os.cpu_count() or 1,
                                progress=lambda done, total: progress.update(done))
        progress.close()
    return dataset


def datasets(args, world, backend: str):
    """(training set, held-out set or None) that the flags name; the built-in synthetic set when
    none is named (rank 0 makes it once; the others open it after)."""
    dataset = dataset_from_args(args, required=False)
    if dataset is None:
        if world.lead:
            dataset = default_dataset(backend, args.seed)
        world.barrier()
        dataset = dataset or default_dataset(backend, args.seed)
    val_dataset = dataset_from_args(args, prefix="val-", required=False)
    batch = args.batch_size * world.size  # a held-out set is scored in batches of any size
    if dataset.count < batch:
        raise DataError(f"{dataset.noisy}: {plural(dataset.count, 'sample')}, fewer than one batch of {batch}")
    return dataset, val_dataset


def parameters(args, config, dataset, world):
    """(position or None, parameters): resumed from OUT's checkpoint (after the checks that it is
    this run's and its batches would be the same), from --init, or new from --seed."""
    if args.resume:
        saved = checkpoint.load(args.out / run_folder.CHECKPOINT)
        record = run_record.read(saved)
        check_resumable(record, saved, config, dataset, world.size)
        check_own_checkpoint(saved, record, args.out)
        position = run_record.position_from(saved)
        print(f"resuming from {saved.path} at step {position.step} (epoch {position.epoch}, "
              f"batch {position.batch})")
        return position, saved.params
    if args.init is not None:
        params = checkpoint.load(args.init).params
        print(f"initial parameters from {args.init}")
        return None, params
    return None, init_params(args.seed)


def noisy_statistics(dataset) -> dict:
    """The noisy samples' intensity statistics (kept in the checkpoint for denoise), printed; a
    warning when they leave the [0, 1] that the seed's lr suits."""
    stats = noisy_stats(dataset)
    if not all(math.isfinite(value) for value in stats.values()):  # the checkpoint's JSON holds no NaN
        raise DataError(f"{dataset.noisy}: NaN or Inf among the samples read for the intensity statistics; "
                        "--check-data names the first bad sample")
    print(f"data: {plural(dataset.count, 'pair')} of {dataset.height}x{dataset.width} ({dataset.noisy}); "
          f"noisy mean {stats['mean']:.4f} std {stats['std']:.4f}")
    if stats["min"] < 0.0 or stats["max"] > 1.0:
        print(f"warning: {dataset.noisy}: values from {stats['min']:.4g} to {stats['max']:.4g} in "
              f"the {stats['samples']} samples read, outside the [0, 1] of the dataset format that "
              "the seed's lr suits: the loss may grow instead of falling; scale the data to [0, 1] "
              "(docs/formats.md)", file=sys.stderr)
    return stats


def check_resumable(record, saved, config, dataset, ranks: int = 1) -> None:
    """Refuse to resume a run whose batches would differ from the stopped one's: the global batch
    (batch size x ranks; the number of ranks may change: 2 x 4 resumes as 1 x 8), seed, shuffle,
    drop_last, and the data's sample count and shape. Say which other settings differ."""
    where = f"--resume: the checkpoint's run ({saved.path})"
    saved_config = record.config
    if "batch_size" in saved_config:
        saved_ranks = saved_config.get("ranks", 1)
        if saved_config["batch_size"] * saved_ranks != config.batch_size * ranks:
            raise checkpoint.CheckpointError(
                f"{where} used batch_size={saved_config['batch_size']} on {saved_ranks} rank(s), "
                f"this one {config.batch_size} on {ranks}: their global batches must be equal")
    for key in ("seed", "shuffle", "drop_last"):
        if key in saved_config and saved_config[key] != getattr(config, key):
            raise checkpoint.CheckpointError(
                f"{where} used {key}={saved_config[key]!r}, this one {getattr(config, key)!r}")
    data = record.data
    if "count" in data and data["count"] != dataset.count:
        raise checkpoint.CheckpointError(
            f"{where} read {data['count']} samples, {dataset.noisy} holds {dataset.count}")
    shape = (data.get("height", dataset.height), data.get("width", dataset.width))
    if shape != (dataset.height, dataset.width):
        raise checkpoint.CheckpointError(
            f"{where} read samples of {shape[0]}x{shape[1]}, {dataset.noisy} holds "
            f"{dataset.height}x{dataset.width}")
    if "fingerprint" in data and data["fingerprint"] != fingerprint(dataset):
        raise checkpoint.CheckpointError(
            f"{where} read other samples ({data.get('noisy', 'another dataset')}); {dataset.noisy} "
            "holds as many of the same shape, but not the same: resume with the run's data or "
            "start a new run")
    refused = {"batch_size", "ranks", "seed", "shuffle", "drop_last"}
    changed = [f"{key} {value!r} (was {saved_config[key]!r})"
               for key, value in asdict(config).items()
               if key not in refused and key in saved_config and saved_config[key] != value]
    if changed:
        print(f"note: resuming with other settings than the checkpoint's run: {', '.join(changed)}")


def check_own_checkpoint(saved, record, out: Path) -> None:
    """Refuse a checkpoint that another run wrote (copied into OUT): the loss that OUT's
    losses.tsv logs at the checkpoint's step must be the checkpoint's last loss."""
    position = record.position
    if position is None or position.step == 0 or not math.isfinite(position.last_loss):
        return
    logged = logged_loss(out / run_folder.LOSSES, position.step)
    if logged is not None and not same_loss(logged, position.last_loss):
        raise checkpoint.CheckpointError(
            f"--resume: {saved.path} is not the checkpoint of the run logged in {out / run_folder.LOSSES}: "
            f"step {position.step}'s loss there is {logged:.9g}, the checkpoint's "
            f"{position.last_loss:.9g}; put the run's own checkpoint back, or start a new run "
            "with --overwrite")
