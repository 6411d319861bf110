"""The training loop: reader batches through a backend, loss log, checkpoints, resume and signals.

train.py parses the command line and reports; this module runs the epochs. A step's loss stays on
the GPU (cuDNN backend) until the next log line, checkpoint or the end, when the pending losses are
read in one go: between those points the host never waits for the GPU.

On several MPI ranks (distributed.World), batch_size is per rank: each rank reads its share of a
global batch of batch_size x ranks, the model averages gradients over the ranks before SGD, the
losses are averaged when read, a stop signal is agreed on every step, and the parameters are
compared at every log line. Rank 0 alone writes metrics.jsonl and the checkpoint. On GPUs each
rank first takes its own GPU and joins the NCCL communicator (nccl.DataParallel), which then
averages the gradients on the GPU; its watchdog is told of every step queued.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import checkpoint
from ..data import cache
from ..data.fingerprint import fingerprint
from ..data.format import DataError, Dataset, check_values, find_bad_sample, value_range
from ..data.reader import PairReader
from ..data.stats import input_mse
from ..distributed.world import SINGLE, World
from ..network.backends import build
from ..network.model import LOSS_SLOTS
from ..port import algorithm_table, engine_table, trace
from ..userio import signals
from ..userio.files import write_atomic
from ..userio.progress import Progress, format_duration
from . import run_record
from .run_folder import CHECKPOINT, LOSSES, METRICS
from .run_record import Config, Position

PROFILE_FROM = 11  # --profile starts after the first steps (allocator and caches warm)


class NonFiniteLoss(RuntimeError):
    """A step's loss was NaN or infinite."""


@dataclass
class Summary:
    position: Position
    seconds: float
    steps_run: int
    checkpoint: Path | None
    interrupted: int | None = None  # the signal number that stopped the run
    val: dict | None = None
    gpu_memory_mib: float | None = None
    history: list[dict] = field(default_factory=list)
    profile: list[str] | None = None  # the per-call table of --profile


class Trainer:
    """One run: a model, a reader, and the bookkeeping around them."""

    def __init__(self, dataset: Dataset, config: Config, out_dir: Path, params: np.ndarray, *,
                 position: Position | None = None, val_dataset: Dataset | None = None,
                 data_stats: dict | None = None, report=print, tracer=trace.OFF, world: World = SINGLE,
                 on_checkpoint=lambda: None):
        self.dataset, self.config, self.out_dir = dataset, config, out_dir
        self.on_checkpoint = on_checkpoint  # called after each complete checkpoint (train --overwrite's cue)
        self.world = world
        config.ranks = world.size
        self.data_fingerprint = fingerprint(dataset)  # before the reads (data/cache.py)
        self._check_world()
        self.tracer = tracer  # --trace: the calls of each setup, step and evaluation
        self.position = position or Position()
        self.val_dataset, self.data_stats, self.report = val_dataset, data_stats or {}, report
        # (low, high, where from): the PSNR's peak is high - low
        self.val_range = value_range(val_dataset) if val_dataset is not None else None
        self.val_baseline = self._baseline_psnr() if val_dataset is not None else None
        self.gpu = config.backend == "cudnn"
        self.gpus = None  # nccl.DataParallel: this rank's GPU, communicator and watchdog
        if self.gpu and world.distributed:  # before any CUDA work: it picks the GPU
            from ..distributed.nccl import DataParallel

            self.gpus = DataParallel(world, report=report)
        self._free_before = _gpu_free() if self.gpu else None
        self.model = self._build(params, config.batch_size)
        if self.gpu and world.lead:
            self._write_algorithm_table()
        if self.gpus is not None:
            self.model.reduce_gradients = self.gpus.gradient_average(self.model)
        elif world.size > 1:
            self.model.reduce_gradients = world.average_gradients
        self._partials: dict = {}  # rows -> a model for a smaller batch; shares the parameters
        self.cache = cache.choose(config.cache, dataset.nbytes, cache.mem_available())
        report(f"data: {self.cache.describe()}")
        self.reader = PairReader(dataset, config.batch_size * world.size, shuffle=config.shuffle,
                                 seed=config.seed, drop_last=config.drop_last, device=self.gpu,
                                 part=world.part(config.batch_size), drop_cache=not self.cache.keep)
        self._pending: list[int] = []  # steps whose losses are still on the device
        self._profiler, self._profiled = None, 0
        if world.lead and position is not None:  # resuming: the logs may run past the checkpoint
            cut_logs(out_dir, self.position.step)
        self.metrics = _Log(out_dir / METRICS) if world.lead else None
        self.losses = _Log(out_dir / LOSSES) if world.lead else None  # step, loss: every step
        self.history: list[dict] = []

    def _check_world(self) -> None:
        """Refuse what several ranks cannot do: different data (a rank with fewer batches would
        leave the others waiting in the all-reduce forever), unequal shares of a batch."""
        c, ranks = self.config, self.world.size
        if ranks == 1:
            return
        d = self.dataset
        every = self.world.allgather((str(d.noisy), d.count, d.height, d.width, self.data_fingerprint))
        # the content counts, not the path: each host may hold its own copy
        other = next((rank for rank, data in enumerate(every) if data[1:] != every[0][1:]), None)
        if other is not None:  # every rank sees the same table: all of them refuse
            named = [f"rank {r} {every[r][0]} ({every[r][1]} samples of {every[r][2]}x{every[r][3]})"
                     for r in (0, other)]
            raise DataError(f"--data: the ranks read different data: {', '.join(named)}; give every "
                            "rank the same dataset")
        rest = self.dataset.count % (c.batch_size * ranks)
        if rest and not c.drop_last:
            raise DataError(
                f"{self.dataset.noisy}: {self.dataset.count} samples leave a last batch of {rest}, which "
                f"{ranks} ranks cannot share equally (batch {c.batch_size} each); pass --drop-last")

    def _build(self, params, batch: int, stream=None):
        c = self.config
        shape = f"batch {batch} x 1 x {self.dataset.height} x {self.dataset.width}"
        if self.gpu:  # a shape's first run times every algorithm: up to a minute or two, said beforehand
            self.report(f"model: {shape}: choosing cuDNN algorithms (timed on first use of a shape on this "
                        "GPU, then read from the algorithm cache)")
        started = time.monotonic()
        with self.tracer.setup(f"model for {shape}"):
            model = build(c.backend, params, batch=batch, height=self.dataset.height, width=self.dataset.width,
                          math=c.math, deterministic=c.deterministic, fused=c.fused, graph=c.graph,
                          graph_api=c.graph_api, precision=c.precision, stream=stream)
            self.tracer.register(model)
        if self.gpu:
            self.report(f"model: ready in {time.monotonic() - started:.1f} s")
        return model

    def _write_algorithm_table(self) -> None:
        """OUT/algorithms.txt: the legacy step's algorithms, for the Fortran program to use too."""
        c, d = self.config, self.dataset
        comment = algorithm_table.model_comment(self.model)
        if c.graph_api:  # OUT/engines.txt: the graph API step's engines (port/engine_table.py)
            engine_table.write(self.out_dir / engine_table.FILE_NAME, engine_table.rows(self.model),
                               c.batch_size, d.height, d.width, c.math, comment=comment)
            return
        algorithm_table.write(self.out_dir / algorithm_table.FILE_NAME, algorithm_table.rows(self.model),
                              c.batch_size, d.height, d.width, c.math, comment=comment)

    @property
    def limit(self) -> tuple[int, str]:
        """(steps, flag): the run's length and the limit that sets it, the first reached of
        --max-steps and --epochs (either may be None: no such limit)."""
        c = self.config
        limits = [(c.max_steps, f"--max-steps {c.max_steps}")] if c.max_steps is not None else []
        if c.epochs is not None:
            limits.append((c.epochs * self.reader.batches_per_epoch, f"--epochs {c.epochs}"))
        return min(limits, key=lambda limit: limit[0])

    @property
    def total_steps(self) -> int:
        return self.limit[0]

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> Summary:
        c, pos = self.config, self.position
        start, steps_run = time.monotonic(), 0
        # this run's steps; the bar and the log lines are rank 0's
        bar = None if self.world.lead else io.StringIO()
        progress = Progress(self.total_steps - pos.step, "batches", stream=bar)
        stopped = None  # the signal that stopped the run: on several ranks, agreed at every step
        # NumPy's overflow warnings (the reference backend, a diverging run) would come before the
        # error line that names the cause (_non_finite)
        with signals.flag() as stop, np.errstate(over="ignore", invalid="ignore"):
            while pos.step < self.total_steps and stopped is None:
                if pos.batch >= self.reader.batches_per_epoch:
                    pos.epoch, pos.batch = pos.epoch + 1, 0
                for batch in self.reader.epoch(pos.epoch, start=pos.batch):
                    self._train_on(batch)
                    pos.step, pos.batch = pos.step + 1, batch.position + 1
                    steps_run += 1
                    progress.update(steps_run)
                    stopped = self.world.agree_max(stop.received or 0) or None
                    if pos.step % c.log_every == 0 or pos.step == self.total_steps:
                        self._log(progress, steps_run)
                    if c.checkpoint_every and pos.step % c.checkpoint_every == 0:
                        self.save()
                    if pos.step >= self.total_steps or stopped is not None:
                        break
            self._flush()
            path = self.save()
        progress.close()
        val = self._validate() if self.val_dataset is not None and self.world.lead else None
        return Summary(pos, time.monotonic() - start, steps_run, path, stopped, val,
                       self._gpu_memory_mib(), self.history, self._profile_table())

    def _profile_table(self) -> list[str] | None:
        if self._profiler is None:
            return None
        self._profiler.__exit__(None, None, None)  # if the run ended inside the window
        return self._profiler.table(self._profiled)

    def _train_on(self, batch) -> None:
        c = self.config
        step = self.position.step + 1
        if batch.x.shape[0] != c.batch_size:  # the epoch's last, partial batch: synchronously
            self._flush()
            batch.wait(getattr(self.model, "stream", None))
            model = self._model_for(batch.x.shape[0])
            with self.tracer.step(step, batch.x, batch.y, c.lr, slot=0):
                loss = model.train_step(batch.x, batch.y, c.lr)
            self._record([step], [loss])
            return
        if self.gpu:
            batch.wait(self.model.stream)
        slot = len(self._pending)
        profiling = self.gpu and PROFILE_FROM <= step < PROFILE_FROM + c.profile
        if profiling and self._profiler is None:
            from .profile import CallProfiler

            self._profiler = CallProfiler(self.model.stream).__enter__()
        with self.tracer.step(step, batch.x, batch.y, c.lr, slot=slot):
            self.model.train_step_async(batch.x, batch.y, c.lr, slot=slot)
        if self.gpus is not None:
            self.gpus.step_queued(self.model.stream)
        if profiling:
            self._profiled += 1
            if self._profiled == c.profile:
                self._profiler.__exit__(None, None, None)
        self._pending.append(step)
        if len(self._pending) == LOSS_SLOTS:
            self._flush()

    def _model_for(self, rows: int):
        """The model for a batch of `rows` < batch_size (an epoch's last, the held-out set's
        last): the NumPy model takes any batch as it is; a cuDNN model is built for one shape, so
        one more per size shares the first one's parameters (at most two sizes: training's, and
        validation's)."""
        if not self.gpu or rows == self.config.batch_size:
            return self.model
        if rows not in self._partials:
            self._partials[rows] = self._build(self.model.params, rows, stream=self.model.stream)
        return self._partials[rows]

    def _flush(self) -> None:
        """Read the pending losses and record them (stopping at the first that is not finite)."""
        if not self._pending:
            return
        losses = self.world.mean(self.model.read_losses(len(self._pending)))  # of the global batch
        steps, self._pending = self._pending, []
        self._record(steps, losses)

    def _record(self, steps, losses) -> None:
        bad = [i for i, v in enumerate(losses) if not math.isfinite(v)]
        if bad:
            raise self._non_finite(steps[bad[0]], losses[bad[0]])
        self.position.loss_sum += float(np.sum(losses, dtype=np.float64))
        self.position.last_loss = float(losses[-1])
        if self.losses is not None:
            self.losses.write("".join(f"{s}\t{v:.9g}\n" for s, v in zip(steps, losses)))

    def _non_finite(self, step: int, loss: float) -> NonFiniteLoss:
        """NonFiniteLoss for `step`, saying whether that step's batch holds a bad sample (which
        one, in which file) or is clean, so that the training itself diverged."""
        epoch, batch = divmod(step - 1, self.reader.batches_per_epoch)  # as run() counts steps
        size = self.config.batch_size * self.world.size
        indices = self.reader.order(epoch)[batch * size:(batch + 1) * size]
        problem = find_bad_sample(self.dataset, indices)
        if problem is not None:
            return NonFiniteLoss(f"step {step}: the loss is {loss} because {problem}; "
                                 "--check-data scans every sample before training")
        return NonFiniteLoss(f"step {step}: the loss is {loss}, though the batch's samples are "
                             "finite and within [0, 1]: the training diverged; try a lower --lr "
                             f"than {self.config.lr}")

    def _log(self, progress: Progress, steps_run: int) -> None:
        self._flush()
        pos = self.position
        self.world.check_same(self.model.get_params(), pos.step)
        if not self.world.lead:
            return
        rate = progress.rate(steps_run)  # 0 when no time was measured: not shown as a rate
        eta = format_duration((self.total_steps - pos.step) / rate) if rate > 0 else "—"
        entry = {"step": pos.step, "epoch": pos.epoch, "loss": pos.last_loss, "average": pos.loss_sum / pos.step,
                 "batches_per_s": rate if rate > 0 else None, "time": time.time()}
        shown = f"{rate:6.1f}" if rate > 0 else f"{'—':>6}"
        line = (f"batch {pos.step:6d}  epoch {pos.epoch}  loss {pos.last_loss:.4f}  average {entry['average']:.4f}"
                f"  {shown} batches/s  ETA {eta}")
        if self.val_dataset is not None:
            entry.update(self._validate())
            line += f"  val loss {entry['val_loss']:.4f}  PSNR {versus_baseline(entry)}"
        self.history.append(entry)
        self.metrics.write(json.dumps(entry) + "\n")
        self.metrics.flush()
        self.losses.flush()
        progress.line(line)

    def _validate(self) -> dict:
        """Mean loss over every pair of the held-out set (a last batch smaller than batch_size
        too, weighted by its rows), and the PSNR for the set's value range R (dataset.json's
        value_range, else [0, 1]): 10 log10(R^2 / MSE)."""
        size = min(self.config.batch_size, self.val_dataset.count)  # a set smaller than one batch
        with PairReader(self.val_dataset, size, shuffle=False, drop_last=False,
                        device=self.gpu, drop_cache=False) as reader:
            total, count = 0.0, 0
            for batch in reader.epoch(0):
                rows = batch.x.shape[0]
                batch.wait(getattr(self.model, "stream", None))
                with self.tracer.evaluate(batch.x, batch.y):
                    total += self._model_for(rows).evaluate(batch.x, batch.y) * rows
                count += rows
        loss = total / count
        if not math.isfinite(loss):
            check_values(self.val_dataset)  # names the bad sample, if one is the cause
            raise NonFiniteLoss(f"the validation loss is {loss}, though {self.val_dataset.noisy} "
                                f"and {self.val_dataset.clean} hold finite values in [0, 1]: the "
                                "model diverged")
        low, high, _ = self.val_range
        return {"val_loss": loss, "val_psnr": psnr(high - low, loss), "val_data_range": high - low,
                "val_baseline_psnr": self.val_baseline}

    def _baseline_psnr(self) -> float:
        """The PSNR of the held-out set's noisy inputs themselves against their clean targets: the
        PSNR of doing nothing, which the model's val_psnr must pass to be of use."""
        mse = input_mse(self.val_dataset)
        if not math.isfinite(mse):
            check_values(self.val_dataset)  # names the bad sample
        low, high, _ = self.val_range
        return psnr(high - low, mse)

    # -- checkpoints -----------------------------------------------------------------------------

    def save(self) -> Path:
        """Write the checkpoint, after reading the pending losses: a non-finite one raises
        NonFiniteLoss first, so no checkpoint holds parameters that a NaN step updated."""
        self._flush()
        path = self.out_dir / CHECKPOINT
        pos = self.position
        if not self.world.lead:
            return path
        checkpoint.save(path, self.model.get_params(), step=pos.step,
                        extra=run_record.extra(self.config, pos, self.data_stats, self.dataset,
                                               self.data_fingerprint))
        self.on_checkpoint()
        return path

    def _gpu_memory_mib(self) -> float | None:
        return (self._free_before - _gpu_free()) / 2**20 if self.gpu else None

    def close(self) -> None:
        self.reader.close()
        for log in (self.metrics, self.losses):
            if log is not None:
                log.close()
        for model in (*self._partials.values(), self.model):
            model.close()
        if self.gpus is not None:  # after the models: their CUDA graphs may hold NCCL calls
            self.gpus.close()


def psnr(peak: float, mse: float) -> float:
    """10 log10(peak^2 / MSE), in dB: infinite for an MSE of 0."""
    return 10.0 * math.log10(peak * peak / mse) if mse > 0 else float("inf")


def versus_baseline(val: dict) -> str:
    """`12.34 dB (+1.10 dB: above the noisy input)`: a validation's PSNR and how it compares with
    the noisy input's own (_baseline_psnr)."""
    gain = val["val_psnr"] - val["val_baseline_psnr"]
    return (f"{val['val_psnr']:.2f} dB ({gain:+.2f} dB: {'above' if gain > 0 else 'not above'} "
            "the noisy input)")


class _Log:
    """A log file written by appending, whose write errors (a full disk) name it."""

    def __init__(self, path: Path):
        self.path = path
        with self._naming():
            self._file = path.open("a")

    @contextlib.contextmanager
    def _naming(self):
        try:
            yield
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None

    def write(self, text: str) -> None:
        with self._naming():
            self._file.write(text)

    def flush(self) -> None:
        with self._naming():
            self._file.flush()

    def close(self) -> None:
        with self._naming():
            self._file.close()


def cut_logs(out_dir: Path, step: int) -> None:
    """Drop the lines of metrics.jsonl and losses.tsv after `step` (a run stopped after its last
    checkpoint wrote them; the resumed run writes them again), and any half-written last line."""
    for name, step_of in ((METRICS, _metrics_step), (LOSSES, _losses_step)):
        path = out_dir / name
        if not path.exists():
            continue
        lines = path.read_bytes().splitlines(keepends=True)
        kept = [line for line in lines if line.endswith(b"\n") and _at_most(step_of(line), step)]
        if len(kept) < len(lines):
            write_atomic(path, b"".join(kept))


def _at_most(value: int | None, step: int) -> bool:
    return value is not None and value <= step


def _metrics_step(line: bytes) -> int | None:
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return None
    return step if isinstance(step, int) else None


def _losses_step(line: bytes) -> int | None:
    first = line.split(b"\t", 1)[0]
    return int(first) if first.isdigit() else None


def logged_loss(path: Path, step: int) -> float | None:
    """The loss that losses.tsv logs at `step` (its last line for it), or None if none does."""
    found = None
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        parts = line.split(b"\t")
        if _losses_step(line) == step and len(parts) == 2:
            try:
                found = float(parts[1])
            except ValueError:
                continue
    return found


def same_loss(a: float, b: float) -> bool:
    """Whether two losses are one, as losses.tsv writes them (a loss read back from it, one in a
    manifest)."""
    return f"{a:.9g}" == f"{b:.9g}"


def _gpu_free() -> int:
    import cupy

    return cupy.cuda.runtime.memGetInfo()[0]
