"""The progress bar shows no rate before time has been measured (a rate of 0 would be wrong)."""

from __future__ import annotations

import io

from cudnn_denoise.userio import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_drawn_before_any_time_passed_shows_no_rate(monkeypatch):
    monkeypatch.setattr(progress.time, "monotonic", lambda: 50.0)
    stream = Terminal()
    bar = progress.Progress(10, "batches", stream=stream)
    bar.update(10)
    assert "10/10 batches —/s ETA —" in stream.getvalue() and "0.0/s" not in stream.getvalue()
