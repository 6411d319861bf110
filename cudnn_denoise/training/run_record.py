"""What train keeps in a checkpoint's `extra`: the run's Config, its Position, the data it read and
the data's intensity statistics; written by training.Trainer.save (extra()), read back with every
field type-checked (read()) by resume, dump and denoise.

    extra = {"epoch": int, "position": int, "loss_sum": float, "last_loss": float or null,
             "config": {Config's fields}, "data_stats": {"mean", "std", "min", "max", "samples"},
             "data": {"noisy", "clean", "height", "width", "count", "fingerprint", "pixel_size"}}

data.pixel_size is the training micrographs' [x, y] in angstrom (dataset.json's), null or absent
when unknown: denoise warns of inputs of another pixel size.

A checkpoint written elsewhere (the Fortran port; checkpoint.save with another extra) may lack any
part; a part that is present must have these types, or CheckpointError names the field.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from ..checkpoint import MANIFEST_FILE, Checkpoint, CheckpointError
from ..data.fingerprint import fingerprint
from ..data.format import pixel_size
from ..userio.fields import Fields


@dataclass
class Config:
    """What a run was asked to do; stored in every checkpoint's manifest. A field's metadata
    "minimum" is the least value a stored one may have."""

    # per rank: a step's global batch is batch_size x ranks
    batch_size: int = field(default=4, metadata={"minimum": 1})
    ranks: int = field(default=1, metadata={"minimum": 1})  # processes training together
    lr: float = 0.001
    epochs: int | None = field(default=1, metadata={"minimum": 1})  # None: --max-steps alone
    max_steps: int | None = None
    seed: int = 0
    shuffle: bool = True
    drop_last: bool = False  # the seed's 29,913 samples make 7,479 batches: the last one partial
    backend: str = "cudnn"
    math: str = "tf32"
    deterministic: bool = False
    fused: bool = False
    graph: bool = False
    graph_api: bool = False
    precision: str = "fp32"  # "bf16": BF16 activations on the graph-API path (layers/precision.py)
    log_every: int = field(default=100, metadata={"minimum": 1})
    checkpoint_every: int = 1000
    profile: int = 0  # steps timed call by call (cuDNN backend), from training.PROFILE_FROM on
    cache: str = "auto"  # the page-cache policy of the training reads (data/cache.py)


SEED = Config()  # the seed's run: every program's defaults for batch size, lr and epochs


@dataclass
class Position:
    """Where a run stands: resuming from a checkpoint restores exactly this."""

    step: int = 0  # steps done
    epoch: int = 0
    batch: int = 0  # batches of `epoch` done
    loss_sum: float = 0.0  # of every step's loss, for the running average
    last_loss: float = float("nan")


def extra(config: Config, position: Position, data_stats: dict, dataset,
          data_fingerprint: str | None = None) -> dict:
    """The checkpoint's extra for a run at `position` (JSON: NaN becomes null); data_fingerprint:
    the dataset's fingerprint, if its reader has it already."""
    last = position.last_loss
    return {
        "epoch": position.epoch,
        "position": position.batch,
        "loss_sum": position.loss_sum,
        "last_loss": last if math.isfinite(last) else None,
        "config": asdict(config),
        "data_stats": data_stats,
        "data": {
            "noisy": str(dataset.noisy),
            "clean": str(dataset.clean),
            "height": dataset.height,
            "width": dataset.width,
            "count": dataset.count,
            # tells resume's data from other data
            "fingerprint": data_fingerprint or fingerprint(dataset),
            "pixel_size": pixel_size(dataset),
        },
    }


@dataclass(frozen=True)
class RunRecord:
    """A checkpoint's extra, checked: each part holds only the fields present in the file."""

    position: Position | None  # None: not a training checkpoint (no epoch, position, loss_sum)
    config: dict
    data_stats: dict
    data: dict


_READERS = {  # a Config field's annotation -> how its stored value is read
    "int": lambda f, key, low: f.integer(key, minimum=low, default=None),
    "int | None": lambda f, key, low: f.integer(key, minimum=low, default=None, nullable=True),
    "float": lambda f, key, low: f.number(key, default=None),
    "bool": lambda f, key, low: f.boolean(key, default=None),
    "str": lambda f, key, low: f.string(key, default=None),
}


def read(saved: Checkpoint) -> RunRecord:
    """The checked extra of a loaded checkpoint; CheckpointError names the first bad field."""
    top = Fields(saved.extra, saved.path / MANIFEST_FILE, "extra", CheckpointError)
    position = None
    if any(top.has(key) for key in ("epoch", "position", "loss_sum")):
        last = top.number("last_loss", default=None, nullable=True)
        position = Position(
            step=saved.step,
            epoch=top.integer("epoch", minimum=0),
            batch=top.integer("position", minimum=0),
            loss_sum=top.number("loss_sum", minimum=0.0),
            last_loss=float("nan") if last is None else last,
        )
    stored = top.object("config", required=False)
    config = {}
    for f in fields(Config):
        if stored.has(f.name):
            config[f.name] = _READERS[str(f.type)](stored, f.name, f.metadata.get("minimum", 0))
    stats = top.object("data_stats", required=False)
    data_stats = {key: stats.number(key) for key in ("mean", "std", "min", "max") if stats.has(key)}
    if stats.has("samples"):
        data_stats["samples"] = stats.integer("samples", minimum=1)
    stored = top.object("data", required=False)
    data = {key: stored.string(key) for key in ("noisy", "clean", "fingerprint") if stored.has(key)}
    data.update(
        {
            key: stored.integer(key, minimum=1)
            for key in ("height", "width", "count")
            if stored.has(key)
        }
    )
    if stored.has("pixel_size"):
        data["pixel_size"] = stored.numbers("pixel_size", length=2, positive=True, nullable=True)
    return RunRecord(position, config, data_stats, data)


def position_from(saved: Checkpoint) -> Position:
    """The Position a checkpoint of Trainer.save records; CheckpointError when it has none."""
    position = read(saved).position
    if position is None:
        raise CheckpointError(
            f"{saved.path}: not a training checkpoint (no epoch, position, loss_sum)"
        )
    return position
