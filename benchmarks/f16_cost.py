"""What float16 dataset files cost: their rounding against the data's noise, and a loss curve.

    python benchmarks/f16_cost.py [--samples 800] [--size 64] [--out benchmarks/results]

1. Rounding: |x - f16(x)| over every float32 value of a synthetic dataset (make_dataset's, the
   seed's noise model: Poisson at dose 5 plus Gaussian sigma 0.05) and over a uniform grid of
   [0, 1], beside the noise itself (noisy - clean) and the training loss's scale.
2. Training: one epoch of the train CLI (reference backend, the seed's batch 4 and lr 0.001, the
   same shuffled order) on the float32 set and on its float16 conversion: every step's loss, and
   the final parameters.
Writes f16_cost.md and f16_cost.json to --out and prints the table. CPU only (minutes).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import numpy as np

from cudnn_denoise import checkpoint, train
from cudnn_denoise.data.recast import recast_dataset
from cudnn_denoise.data.format import Dataset
from cudnn_denoise.data.synthetic import write_dataset

RESULTS = Path(__file__).resolve().parent / "results"


def rounding(values: np.ndarray) -> dict[str, float]:
    """max and RMS of |x - float16(x)| for float32 values."""
    error = np.abs(values.astype(np.float64) - values.astype(np.float16).astype(np.float64))
    return {"max": float(error.max()), "rms": float(np.sqrt(np.mean(error**2)))}


def dataset_values(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    shape = (dataset.count, dataset.height, dataset.width)
    return (np.fromfile(dataset.noisy, dataset.dtype).reshape(shape),
            np.fromfile(dataset.clean, dataset.dtype).reshape(shape))


def train_one_epoch(dataset: Dataset, out: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """(every step's loss, final parameters, seconds) of one epoch of the train CLI."""
    started = time.perf_counter()
    with redirect_stdout(StringIO()):
        code = train.main(["--data", str(dataset.noisy.parent), "--out", str(out), "--backend",
                           "reference", "--log-every", "1000", "--seed", "0"])
    if code != 0:
        raise SystemExit(f"train exited with {code} on {dataset.noisy.parent}")
    losses = np.loadtxt(out / "losses.tsv", ndmin=2)[:, 1]
    return losses, checkpoint.load(out / "checkpoint").params, time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=800, help="pairs (default 800)")
    parser.add_argument("--size", type=int, default=64, help="patch side (default 64)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the tables")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        f32 = write_dataset(tmp / "f32", args.samples, args.size, seed=0, workers=2)
        f16 = recast_dataset(f32, tmp / "f16", "float16")
        noisy, clean = dataset_values(f32)
        grid = np.linspace(0.0, 1.0, 10**6 + 1, dtype=np.float32)
        noise = (noisy.astype(np.float64) - clean).std()
        errors = {"noisy": rounding(noisy), "clean": rounding(clean),
                  "uniform [0, 1]": rounding(grid)}
        runs = {name: train_one_epoch(data, tmp / f"run_{name}") for name, data in
                (("float32", f32), ("float16", f16))}
    (l32, p32, s32), (l16, p16, s16) = runs["float32"], runs["float16"]
    step_rel = np.abs(l16 - l32) / l32
    param_rel = float(np.linalg.norm(p16 - p32) / np.linalg.norm(p32))
    result = {
        "samples": args.samples, "size": args.size, "noise_std": noise,
        "rounding": errors, "loss_float32": l32.tolist(), "loss_float16": l16.tolist(),
        "worst_step_relative": float(step_rel.max()), "final_parameters_relative": param_rel,
        "seconds": {"float32": s32, "float16": s16}, "python": platform.python_version(),
        "numpy": np.__version__, "date": time.strftime("%Y-%m-%d"),
    }
    quarter = [len(l32) // 4 * k - 1 for k in (1, 2, 3, 4)]
    md = [f"# float16 dataset files: what they cost ({time.strftime('%Y-%m-%d')}, CPU)", "",
          (f"Synthetic set: {args.samples} pairs of {args.size} x {args.size} (make_dataset, "
           "seed 0: Poisson at dose 5 plus Gaussian sigma 0.05), and its `make_dataset "
           "--from-dataset --dtype float16` copy."), "",
          "| values | max abs(x - f16(x)) | RMS | RMS / noise std | RMS / sigma 0.05 |",
          "| --- | ---: | ---: | ---: | ---: |"]
    for name, e in errors.items():
        md.append(f"| {name} | {e['max']:.3g} | {e['rms']:.3g} | {e['rms'] / noise:.2g} "
                  f"| {e['rms'] / 0.05:.2g} |")
    md += ["", f"Noise (noisy - clean) std: {noise:.4f}.", "",
           (f"One epoch ({len(l32)} steps, batch 4, lr 0.001, same shuffled order; the train "
            "CLI, reference backend), loss at steps:"), "",
           "| step | float32 files | float16 files | relative difference |",
           "| ---: | ---: | ---: | ---: |"]
    for i in quarter:
        md.append(f"| {i + 1} | {l32[i]:.6f} | {l16[i]:.6f} | {step_rel[i]:.2e} |")
    md += ["", (f"Worst step's relative difference {step_rel.max():.2e}; running average at the "
                f"end {l32.mean():.6f} (float32) against {l16.mean():.6f} (float16); final "
                f"parameters {param_rel:.2e} apart (relative norm).")]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "f16_cost.md").write_text("\n".join(md) + "\n")
    (args.out / "f16_cost.json").write_text(json.dumps(result, indent=1) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
