"""python -m cudnn_denoise.compare RUN_A RUN_B: how far apart two runs' losses and parameters are.

    python -m cudnn_denoise.compare runs/python runs/fortran [--rtol 1e-6]

A run is a folder holding losses.tsv (train's and denoise_train's: `step<TAB>loss` a line) and
params.bin, either in the folder (denoise_train) or in its checkpoint/ (train); a checkpoint folder
or a params.bin file also serves for the parameters alone. Every step both runs logged and every
parameter are compared as float32: the distance in ULPs (how many float32 values lie between, 0
for identical bits and for +0 against -0) and relative, |a - b| / max(|a|, |b|). It prints, per
parameter tensor and for the losses, the worst of each and where; then a verdict line.
A NaN is neither identical to anything nor within any --rtol: the verdict says where the first is.
Exit status: 0 when identical (or, with --rtol, every relative difference within it), 6 when not
(or a NaN), 2 when a run cannot be read (a losses.tsv that logs a step twice is broken); 1 is an
internal error, as in every program.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import cli
from .checkpoint import PARAMS_FILE
from .params import NUM_PARAMS, views
from .training import run_folder
from .userio import arguments, console, signals
from .userio.files import read_bytes

# "different" is no failure of the program: a code of its own, which no other program uses (1 is an
# internal error everywhere; 3, 4 and 5 have meanings in train, denoise and make_dataset)
EXIT_DIFFERENT = 6
EXIT_CODES = f"""exit codes:
  0    identical (or, with --rtol, every relative difference within it)
  1    unexpected internal error (a traceback follows: please report it)
  2    bad arguments, or a run that cannot be read (one line says what)
  {EXIT_DIFFERENT}    different, or a NaN in either run (the verdict line says where)
  130  stopped by SIGINT, 143 by SIGTERM"""


@dataclass(frozen=True)
class Difference:
    """The worst differences between two float32 arrays of one quantity."""

    name: str
    count: int
    identical: int  # elements with 0 ULP between them
    worst_ulp: int
    worst_ulp_at: str  # where, "-" when all are identical
    worst_relative: float
    worst_relative_at: str
    # NaN is neither equal to anything nor within any tolerance: counted apart, the first placed
    nans: int = 0
    first_nan_at: str = "-"  # e.g. "conv1.bias[3] in A and B"

    def line(self) -> str:
        nan = f"  NaN {self.nans}, first at {self.first_nan_at}" if self.nans else ""
        return (f"{self.name:<16s} {console.plural(self.count, 'value'):>13s}  identical "
                f"{self.identical:6d}  worst "
                f"{self.worst_ulp} ULP at {self.worst_ulp_at}, relative {self.worst_relative:.3g} at "
                f"{self.worst_relative_at}{nan}")


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The number of float32 values between a and b, elementwise (int64; NaN anywhere: -1)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    ordered = []
    for x in (a, b):
        bits = x.view(np.int32).astype(np.int64)
        ordered.append(np.where(bits < 0, -(2**31) - bits, bits))  # monotonic: -0 and +0 both 0
    distance = np.abs(ordered[0] - ordered[1])
    return np.where(np.isnan(a) | np.isnan(b), -1, distance)


def relative_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| / max(|a|, |b|) in float64, 0 where a == b, inf for an infinity against another
    value (NaN where either is NaN)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.maximum(np.abs(a), np.abs(b))
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.abs(a - b) / np.where(scale > 0, scale, 1)
    relative = np.where(np.isinf(a) | np.isinf(b), np.inf, relative)
    return np.where(np.isnan(a) | np.isnan(b), np.nan, np.where(a == b, 0.0, relative))


def difference(name: str, a: np.ndarray, b: np.ndarray, labels) -> Difference:
    """Compare a and b element by element; labels(i) names element i (C order) in the report."""
    a, b = np.ravel(a), np.ravel(b)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    nan = nan_a | nan_b
    ulp = np.where(nan, -1, ulp_distance(a, b))  # the worst of the numbers: NaN is counted apart
    rel = np.where(nan, -1.0, relative_difference(a, b))
    ulp_worst, rel_worst = int(np.argmax(ulp)), int(np.argmax(rel))
    same = int(np.sum(ulp == 0))
    numbers = same == a.size - int(nan.sum())  # the numbers (not NaN) all identical
    first_nan = "-"
    if nan.any():
        i = int(np.argmax(nan))
        first_nan = f"{labels(i)} in {'A and B' if nan_a[i] and nan_b[i] else 'A' if nan_a[i] else 'B'}"
    return Difference(name, int(a.size), same,
                      max(int(ulp[ulp_worst]), 0), "-" if numbers else labels(ulp_worst),
                      max(float(rel[rel_worst]), 0.0), "-" if numbers else labels(rel_worst),
                      int(nan.sum()), first_nan)


# ---- reading runs ----


def read_losses(run: Path) -> dict[int, float]:
    """step -> loss from RUN/losses.tsv; ValueError naming the file and line when it is not one."""
    path = run / run_folder.LOSSES
    losses = {}
    data = read_bytes(path)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a losses.tsv (byte 0x{data[exc.start]:02x} at offset "
                         f"{exc.start} is not text)") from None
    lines = {}  # step -> the line that logged it
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split("\t")
        try:
            step, loss = int(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            raise ValueError(f"{path}:{number}: not `step<TAB>loss`: {line!r}") from None
        if step in lines:  # a run's steps are logged once each: the run's log is broken
            raise ValueError(f"{path}:{number}: step {step} logged again (first at line "
                             f"{lines[step]}): a broken run, not one to compare")
        losses[step], lines[step] = loss, number
    return losses


def params_path(run: Path) -> Path:
    """The params.bin of a run folder (denoise_train's), its checkpoint (train's), or itself."""
    for path in (run, run / PARAMS_FILE, run / run_folder.CHECKPOINT / PARAMS_FILE):
        if path.is_file():
            return path
    raise FileNotFoundError(f"{run}: no {PARAMS_FILE} in it or in its checkpoint/")


def read_params(run: Path) -> np.ndarray:
    path = params_path(run)
    data = read_bytes(path)
    if len(data) != 4 * NUM_PARAMS:
        raise ValueError(f"{path}: {len(data)} bytes, not the {4 * NUM_PARAMS} of {NUM_PARAMS} "
                         "float32")
    return np.frombuffer(data, dtype="<f4").copy()


# ---- the comparison ----


@dataclass(frozen=True)
class Comparison:
    losses: Difference | None  # None when either run has no losses.tsv
    loss_steps: tuple[int, int, int]  # steps in A, in B, in both
    params: list[Difference]  # one per tensor, then "all parameters"

    def worst_relative(self) -> float:
        found = [d.worst_relative for d in self.all()]
        return max(found) if found else 0.0

    def identical(self) -> bool:
        steps_a, steps_b, both = self.loss_steps
        return steps_a == steps_b == both and all(d.identical == d.count for d in self.all())

    def first_nan(self) -> str | None:
        """Where the first NaN of the losses or the parameters is, or None."""
        return next((d.first_nan_at for d in self.all() if d.nans), None)

    def all(self) -> list[Difference]:
        return ([self.losses] if self.losses is not None else []) + self.params


def _position(flat: int, shape) -> str:
    return ",".join(str(int(k)) for k in np.unravel_index(flat, shape))


def compare_runs(a: Path, b: Path) -> Comparison:
    params_a, params_b = read_params(a), read_params(b)
    names = list(views(np.arange(NUM_PARAMS)).items())
    per_tensor = []
    for name, index in names:
        per_tensor.append(difference(name, params_a[index], params_b[index],
                                     lambda i, name=name, shape=index.shape: f"{name}[{_position(i, shape)}]"))
    flat_names = np.empty(NUM_PARAMS, dtype=object)
    for name, index in names:
        flat_names[index.ravel()] = name
    overall = difference("all parameters", params_a, params_b, lambda i: f"{flat_names[i]} (flat {i})")
    losses, steps = None, (0, 0, 0)
    if (a / run_folder.LOSSES).is_file() and (b / run_folder.LOSSES).is_file():
        loss_a, loss_b = read_losses(a), read_losses(b)
        common = sorted(set(loss_a) & set(loss_b))
        steps = (len(loss_a), len(loss_b), len(common))
        if common:
            la = np.array([loss_a[s] for s in common])
            lb = np.array([loss_b[s] for s in common])
            losses = difference("loss", la, lb, lambda i: f"step {common[i]}")
    return Comparison(losses, steps, per_tensor + [overall])


def report(a: Path, b: Path, result: Comparison, rtol: float | None) -> tuple[list[str], int]:
    """The printed lines and the exit status."""
    steps_a, steps_b, both = result.loss_steps
    lines = [f"A: {a}", f"B: {b}"]
    if result.losses is None:
        lines.append("losses: not compared (a run has no losses.tsv)")
    else:
        lines.append(f"losses: {console.plural(steps_a, 'step')} in A, {steps_b} in B, {both} compared")
        lines.append(result.losses.line())
    lines += [d.line() for d in result.params]
    worst_ulp = max(d.worst_ulp for d in result.all())
    if result.identical():
        lines.append("verdict: identical (0 ULP in every loss and parameter)")
        return lines, 0
    worst = result.worst_relative()
    summary = f"worst {worst_ulp} ULP, worst relative {worst:.3g}"
    if result.first_nan() is not None:
        lines.append(f"verdict: DIFFERENT: NaN at {result.first_nan()}; {summary} (of the numbers)")
        return lines, EXIT_DIFFERENT
    if steps_a != both or steps_b != both:
        lines.append(f"verdict: DIFFERENT: the runs logged different steps; {summary}")
        return lines, EXIT_DIFFERENT
    if rtol is not None and worst <= rtol:
        lines.append(f"verdict: within --rtol {rtol:g} ({summary})")
        return lines, 0
    lines.append(f"verdict: DIFFERENT ({summary})")
    return lines, EXIT_DIFFERENT


def parser() -> arguments.ArgumentParser:
    p = arguments.ArgumentParser(prog=cli.prog("compare"), description=cli.description(__doc__),
                                 epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_version(p)
    p.add_argument("run_a", type=Path, metavar="RUN_A", help="a run folder (losses.tsv, params.bin or checkpoint/)")
    p.add_argument("run_b", type=Path, metavar="RUN_B", help="the other run folder")
    p.add_argument("--rtol", type=arguments.number(minimum=0), metavar="R",
                   help="pass when every relative difference is at most R (default: identical bits only)")
    return p


def main(argv=None) -> int:
    console.survive_lost_output()
    try:
        with signals.raising():
            args = parser().parse_args(argv)
            try:
                result = compare_runs(args.run_a, args.run_b)
            except (OSError, ValueError) as exc:
                console.error(cli.prog("compare"), console.describe(exc))
                return 2
            lines, status = report(args.run_a, args.run_b, result, args.rtol)
            print("\n".join(lines))
            return status
    except signals.Stopped as exc:
        print(f"stopped by {exc.name}", file=sys.stderr)
        return exc.handled()


if __name__ == "__main__":
    sys.exit(main())
