"""loss.png: a run's loss curve, drawn from its losses.tsv (every step) and metrics.jsonl (the
validation loss and PSNR of each log line) with matplotlib (the `plot` extra). The PSNR has its own
axis, on the right, with the noisy input's PSNR as a horizontal line: the model is of use above it.

The curve of every step's loss is noisy (one batch each), so a moving average over the last
`window` steps (window_for) is drawn over it: it follows the recent loss, where the mean since
step 1 that the log lines print stays far above a falling curve.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .run_folder import LOSS_PLOT, LOSSES, METRICS


def window_for(steps: int) -> int:
    """Steps in the moving average: a fiftieth of the run, at least 10 (at most the run)."""
    return max(1, min(steps, max(10, steps // 50)))


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """out[i] = mean of values[max(0, i - window + 1) .. i] (the first ones over fewer values)."""
    sums = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def figure(out: Path):
    """The loss figure of the run in `out`, or None when it has no step yet."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = out / LOSSES
    steps = (
        np.loadtxt(losses, ndmin=2)
        if losses.exists() and losses.stat().st_size
        else np.zeros((0, 2))
    )
    if not len(steps):
        return None
    rows = (
        [
            json.loads(line)
            for line in (out / METRICS).read_text().splitlines()
            if line.strip()
        ]
        if (out / METRICS).exists()
        else []
    )
    window = window_for(len(steps))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps[:, 0], steps[:, 1], lw=0.5, alpha=0.5, label="loss (each step's batch)")
    ax.plot(
        steps[:, 0],
        moving_average(steps[:, 1], window),
        lw=1.5,
        label=f"mean of the last {window} steps",
    )
    val = [r for r in rows if "val_loss" in r]
    if val:
        ax.plot(
            [r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation loss"
        )
    ax.set_title(f"Training loss of {out}: {int(steps[-1, 0])} steps")
    ax.set_xlabel("step")
    ax.set_ylabel("MSE")
    ax.set_yscale("log")
    handles = ax.get_lines() + _psnr_axis(ax, val)
    ax.legend(handles=handles, labels=[line.get_label() for line in handles])
    fig.tight_layout()
    return fig


def _psnr_axis(ax, val: list[dict]) -> list:
    """The validation PSNR on a second axis, with the noisy input's PSNR (metrics.jsonl's
    val_baseline_psnr, absent in older runs) as a horizontal line; returns the lines drawn."""
    psnr = [r for r in val if "val_psnr" in r]
    if not psnr:
        return []
    right = ax.twinx()
    right.set_ylabel("validation PSNR (dB)")
    lines = right.plot([r["step"] for r in psnr], [r["val_psnr"] for r in psnr], "s--", color="C3",
                       label="validation PSNR")
    baseline = psnr[-1].get("val_baseline_psnr")
    if baseline is not None and math.isfinite(baseline):  # inf: noisy inputs equal to their targets
        lines.append(right.axhline(baseline, color="C7", ls=":",
                                   label=f"noisy input's PSNR ({baseline:.2f} dB)"))
    return lines


def write(out: Path) -> Path | None:
    """Draw OUT/loss.png (None when there is nothing to draw); ImportError without matplotlib."""
    import matplotlib.pyplot as plt

    fig = figure(out)
    if fig is None:
        return None
    fig.savefig(out / LOSS_PLOT, dpi=100)
    plt.close(fig)
    return out / LOSS_PLOT
