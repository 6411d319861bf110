"""data/cache.py: the page-cache policy (train --cache), chosen from an injected memory figure, and
the train CLI leaving the files cached or not as it chose."""

import pytest
from test_reader import evict

from cudnn_denoise import train
from cudnn_denoise.data import cache
from cudnn_denoise.data.cache import cached_bytes
from cudnn_denoise.data.synthetic import write_dataset

GIB = 2**30


@pytest.mark.parametrize("nbytes, available, keep", [
    (6 * GIB, 120 * GIB, True),  # the H200 machine's 800-pair set
    (234 * GIB, 120 * GIB, False),  # the seed's set
    (60 * GIB, 120 * GIB, True),  # exactly KEEP_SHARE: fits
    (60 * GIB + 1, 120 * GIB, False),
    (1, None, False),  # MemAvailable unknown: nothing is kept
])
def test_auto_keeps_what_fits_in_half_the_available_memory(nbytes, available, keep):
    assert cache.KEEP_SHARE == 0.5  # the share docs/performance.md and --help state
    choice = cache.choose("auto", nbytes, available)
    assert choice.keep is keep
    assert choice.describe().startswith(f"page cache: {'keep' if keep else 'drop'} (--cache auto")
    if available is not None:  # the log says why, with the figures
        assert f"{nbytes / GIB:.2f} GiB" in choice.why
        assert f"{available / GIB:.2f} GiB" in choice.why


@pytest.mark.parametrize("policy", ["keep", "drop"])
@pytest.mark.parametrize("available", [1, 10**15, None])
def test_keep_and_drop_are_obeyed_whatever_the_memory(policy, available):
    choice = cache.choose(policy, 10 * GIB, available)
    assert choice.keep is (policy == "keep")
    assert choice.why == f"--cache {policy}"


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match=r"--cache must be one of auto, keep, drop, not 'some'"):
        cache.choose("some", 1, 1)


def test_mem_available_reads_proc_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       131072000 kB\nMemFree:         1000 kB\n"
                       "MemAvailable:   123456789 kB\nBuffers:  1 kB\n")
    assert cache.mem_available(meminfo) == 123456789 * 1024
    meminfo.write_text("MemTotal:       131072000 kB\n")  # kernels before 3.14 lack the line
    assert cache.mem_available(meminfo) is None
    assert cache.mem_available(tmp_path / "missing") is None


def run_train(capsys, data, out, *args) -> str:
    """The train CLI (reference backend) in this process; returns what it printed."""
    capsys.readouterr()
    code = train.main(["--data", str(data.noisy.parent), "--backend", "reference", "--out",
                       str(out), *map(str, args)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    return printed.out


@pytest.mark.parametrize("policy, kept", [("keep", True), ("drop", False)])
def test_train_leaves_the_files_cached_as_chosen(capsys, tmp_path, policy, kept):
    data = write_dataset(tmp_path / "data", 128, 64)  # 4 MiB: far above the reads in flight
    evict(data)
    out = run_train(capsys, data, tmp_path / "run", "--max-steps", 32, "--cache", policy)
    assert f"data: page cache: {policy} (--cache {policy})" in out
    cached = cached_bytes(data.noisy) + cached_bytes(data.clean)
    if kept:
        assert cached > 0.9 * data.nbytes
    else:
        assert cached < 0.1 * data.nbytes


def test_train_says_what_auto_chose_and_why(capsys, tmp_path):
    data = write_dataset(tmp_path / "data", 8, 32)  # 64 KiB: fits in any machine's memory
    out = run_train(capsys, data, tmp_path / "run", "--max-steps", 1)
    line = next(line for line in out.splitlines() if "page cache" in line)
    assert line.startswith("data: page cache: keep (--cache auto: both files 0.00 GiB fit in 50% "
                           "of the "), line
