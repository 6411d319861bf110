"""benchmarks/bench_denoise.py runs end to end on a CPU before GPU time is spent on it: a few
small micrographs, the reference backend, every run (cold and warm, with and without --preview,
and a longer cold session of copies)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_smoke_run_times_every_case(tmp_path):
    pytest.importorskip("mrcfile", reason="the benchmark writes MRC files: pip install mrcfile")
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_denoise.py"), "--size", "128",
                             "--count", "3", "--long", "5", "--backend", "reference", "--dir", str(tmp_path / "work"),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = (tmp_path / "out" / "denoise_cpu.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| cold", "| warm", "| cold, --preview", "| warm, --preview",
                                                     "| cold, 5 micrographs"]
    for row, count in zip(rows, [3, 3, 3, 3, 5]):
        rate, seconds = (float(cell) for cell in row.split(" | ")[1:3])
        assert rate > 0 and abs(rate * seconds - count) < 0.1  # micrographs, to the table's rounding
    assert "posix_fadvise DONTNEED" in table and "drop_caches" not in table  # a shared machine's cache stays
    assert not (tmp_path / "work" / "denoised").exists()  # each run's outputs removed
    assert not (tmp_path / "work" / "session").exists()  # and the session's copies
