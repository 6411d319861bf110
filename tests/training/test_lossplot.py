"""loss.png: a title, every step's loss, and a moving average that follows the recent loss (checked
against sums written out here), plus the validation points."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cudnn_denoise.training import lossplot

pytest.importorskip("matplotlib", reason="loss.png needs the plot extra: pip install matplotlib")


def test_moving_average_is_the_mean_of_the_last_window_steps():
    values = np.array([4.0, 2.0, 6.0, 8.0, 0.0])
    assert lossplot.moving_average(values, 3).tolist() == [4.0, 3.0, 4.0, 16 / 3, 14 / 3]
    assert lossplot.moving_average(values, 1).tolist() == values.tolist()


@pytest.mark.parametrize("steps, window", [(5, 5), (30, 10), (500, 10), (7479, 149)])
def test_window_is_a_fiftieth_of_the_run_at_least_ten(steps, window):
    assert lossplot.window_for(steps) == window


def test_the_figure_has_a_title_labels_and_follows_the_recent_loss(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    losses = np.concatenate([np.full(100, 1.0), np.full(100, 0.01)])  # a loss that fell at step 100
    (out / "losses.tsv").write_text("".join(f"{i + 1}\t{v}\n" for i, v in enumerate(losses)))
    (out / "metrics.jsonl").write_text(
        "".join(
            json.dumps({"step": s, "average": 0.5, "val_loss": 0.02}) + "\n" for s in (100, 200)
        )
    )
    fig = lossplot.figure(out)
    ax = fig.axes[0]
    assert ax.get_title() == f"Training loss of {out}: 200 steps"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {
        "loss (each step's batch)",
        "mean of the last 10 steps",
        "validation loss",
    }
    recent = lines["mean of the last 10 steps"].get_ydata()
    assert recent[-1] == pytest.approx(0.01) and recent[104] == pytest.approx(
        (5 * 1.0 + 5 * 0.01) / 10
    )
    assert lines["validation loss"].get_xdata().tolist() == [100, 200]
    assert (
        lossplot.write(out) == out / "loss.png"
        and (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    )


def test_nothing_is_drawn_before_the_first_step(tmp_path):
    (tmp_path / "losses.tsv").write_text("")
    assert lossplot.write(tmp_path) is None and not (tmp_path / "loss.png").exists()


def test_the_noisy_input_s_psnr_is_a_horizontal_line_on_the_psnr_axis(tmp_path):
    (tmp_path / "losses.tsv").write_text("".join(f"{i}\t0.1\n" for i in range(1, 21)))
    rows = [{"step": s, "val_loss": 0.05, "val_psnr": p, "val_baseline_psnr": 11.2}
            for s, p in ((10, 10.3), (20, 12.5))]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    psnr_axis = lossplot.figure(tmp_path).axes[1]
    assert psnr_axis.get_ylabel() == "validation PSNR (dB)"
    lines = {line.get_label(): line for line in psnr_axis.get_lines()}
    assert list(lines["validation PSNR"].get_ydata()) == [10.3, 12.5]
    assert list(lines["noisy input's PSNR (11.20 dB)"].get_ydata()) == [11.2, 11.2]
