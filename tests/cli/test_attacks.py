"""The programs attacked as a hostile world would (separate processes, reference backend): a
second run on the same folder, a reader that goes away, signals at awkward moments, kill -9, FIFOs
for inputs, full and read-only disks. Each case: no traceback, a line that names the cause, and
nothing of the user's lost or left half written."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from attack import (
    alive,
    children,
    error,
    finish,
    no_traceback,
    partials,
    read_line_with,
    run,
    start,
    wait_until,
)

from cudnn_denoise import checkpoint
from cudnn_denoise.userio import files as userio
from cudnn_denoise.data.format import NOISY_NAME, write_meta
from cudnn_denoise.userio.outdir import LOCK_NAME, OutputLock
from cudnn_denoise.params import init_params

CPU = ("--backend", "reference")
LONG = ("--epochs", 10_000, "--log-every", 1)  # a run that goes on until it is stopped


def digests(folder: Path) -> dict[str, str]:
    """The user's files (not hidden ones: a lock that kill -9 left) and their contents' digests."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".")
    }


def log_steps(out: Path) -> tuple[list[int], list[int]]:
    """The steps of metrics.jsonl and of losses.tsv, in file order."""
    metrics = [
        json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    losses = [int(line.split("\t")[0]) for line in (out / "losses.tsv").read_text().splitlines()]
    return metrics, losses


def outputs(out: Path) -> list[str]:
    """denoise's outputs in a folder (not its run.log, nor a hidden partial file)."""
    return sorted(
        p.name for p in out.iterdir() if ".denoised." in p.name and not p.name.startswith(".")
    )


def lines_of(out: Path, name: str) -> int:
    path = out / name
    return path.read_text().count("\n") if path.exists() else 0


# -- train ---------------------------------------------------------------------------------------


def test_a_second_train_on_one_out_is_refused_at_once_and_the_first_goes_on(data32, tmp_path):
    out = tmp_path / "run"
    first = start(
        "train", "--data", data32.noisy.parent, *CPU, "--out", out, *LONG, "--checkpoint-every", 0
    )
    try:
        wait_until(lambda: lines_of(out, "metrics.jsonl") >= 2, first, what="two log lines")
        for extra in ((), ("--resume",), ("--overwrite",)):
            second = run(
                "train", "--data", data32.noisy.parent, *CPU, "--out", out, "--max-steps", 2, *extra
            )
            assert second.returncode == 2
            no_traceback(second.stderr)
            assert second.stderr.startswith(error("train", f"--out {out}: train (pid {first.pid} on ")), (
                second.stderr
            )
            assert "is writing there; wait for it to end or choose another --out" in second.stderr
        first.send_signal(signal.SIGTERM)
        code, _, err = finish(first)
    finally:
        first.kill() if first.poll() is None else None
    assert code == 143, err
    steps = checkpoint.load(out / "checkpoint").step  # the first run's work is whole
    resumed = run(
        "train",
        "--data",
        data32.noisy.parent,
        *CPU,
        "--out",
        out,
        *LONG,
        "--max-steps",
        steps + 3,
        "--resume",
    )
    assert resumed.returncode == 0, resumed.stderr  # the lock went with the first process
    assert checkpoint.load(out / "checkpoint").step == steps + 3
    assert not (out / LOCK_NAME).exists()


def test_the_lock_is_released_on_an_error(cli, data32, tmp_path):
    from cudnn_denoise import train

    out = tmp_path / "run"
    # fails after taking the lock
    result = cli(train.main, "--data", tmp_path / "nowhere", *CPU, "--out", out)
    assert result.code == 2 and "nowhere: --data must be a directory" in result.one_line_error()
    with OutputLock(out, "a test"):  # free again
        pass


@pytest.mark.parametrize("program", ["train", "denoise"])
def test_a_reader_that_goes_away_loses_no_work(data32, tmp_path, program):
    """`... | head -1`: the pipe closes after the first line; the run finishes all the same."""
    out = tmp_path / "out"
    if program == "train":
        args = ("--data", data32.noisy.parent, *CPU, "--out", out, "--epochs", 3, "--log-every", 1)
    else:
        ckpt = checkpoint.save(tmp_path / "ckpt", init_params(0), step=0)
        raws = tmp_path / "raws"
        raws.mkdir()
        for i in range(12):
            np.full((2, 16, 16), i / 12, np.float32).tofile(raws / f"m{i:02d}.bin")
        args = (
            raws,
            "--height",
            16,
            "--width",
            16,
            "--checkpoint",
            ckpt,
            "--normalize",
            "--format",
            "raw",
            *CPU,
            "-o",
            out,
        )
    proc = start(program, *args)
    proc.stdout.readline()
    proc.stdout.close()  # the reader is gone: every later write to stdout meets a broken pipe
    code = proc.wait(timeout=120)
    err = proc.stderr.read()
    proc.stderr.close()
    assert code == 0, err
    no_traceback(err)
    if program == "train":
        assert checkpoint.load(out / "checkpoint").step == 30
        assert log_steps(out) == (list(range(1, 31)), list(range(1, 31)))
    else:
        assert outputs(out) == [f"m{i:02d}.denoised.bin" for i in range(12)]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (every write: ENOSPC)")
def test_stdout_on_a_full_disk_loses_no_work(data32, tmp_path):
    """`train > file` on a full disk: every print fails (ENOSPC); the run goes on to its end."""
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "cudnn_denoise.train",
        "--data",
        str(data32.noisy.parent),
        *CPU,
        "--out",
        str(out),
        "--epochs",
        "2",
    ]
    with open("/dev/full", "w") as full:
        done = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    no_traceback(done.stderr)
    assert checkpoint.load(out / "checkpoint").step == 20


def test_sigint_before_the_first_step_exits_130_without_a_traceback(tmp_path):
    """While the built-in dataset is being made: nothing half made stays, and no checkpoint."""
    cache = tmp_path / "cache"
    proc = start("train", *CPU, "--out", tmp_path / "run", env={"XDG_CACHE_HOME": str(cache)})
    read_line_with(proc, "data: making the built-in synthetic set")
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    assert code == 130, err
    no_traceback(err)
    assert err.strip().splitlines()[-1].startswith("stopped by SIGINT outside the training steps")
    assert not (tmp_path / "run").exists()  # made for the run, left empty: removed
    # the dataset's folder too: nothing half made
    assert list((cache / "cudnn_denoise").iterdir()) == []


def test_two_runs_that_need_the_built_in_dataset_make_it_once(tmp_path):
    """The second waits on the first's lock of the dataset's folder, then reads what it made."""
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    procs = [start("train", *CPU, "--out", tmp_path / f"run{i}", "--max-steps", 1, env=env)
             for i in range(2)]
    results = [finish(proc, timeout=300) for proc in procs]
    for code, out, err in results:
        assert code == 0, err
    made = [out for _, out, _ in results if "making the built-in synthetic set" in out]
    assert len(made) == 1, [out for _, out, _ in results]
    folder = next((tmp_path / "cache" / "cudnn_denoise").iterdir())
    assert sorted(p.name for p in folder.iterdir()) == ["clean.bin", "dataset.json", "noisy.bin"]


def test_after_kill_9_resume_cuts_the_logs_back_to_the_checkpoint(data32, tmp_path):
    """Steps past the last checkpoint were logged before the kill; the resumed run logs them again,
    once: the logs then equal those of a run never stopped."""
    common = ("--data", data32.noisy.parent, *CPU, "--lr", 0.01, "--log-every", 1)
    killed = tmp_path / "killed"
    proc = start("train", *common, "--out", killed, "--epochs", 10_000, "--checkpoint-every", 7)
    wait_until(lambda: lines_of(killed, "metrics.jsonl") >= 17, proc, what="17 log lines")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    saved = checkpoint.load(killed / "checkpoint").step
    assert saved % 7 == 0 and max(log_steps(killed)[0]) > saved  # the logs ran past the checkpoint
    total = saved + 9
    resumed = run(
        "train",
        *common,
        "--out",
        killed,
        "--epochs",
        10_000,
        "--max-steps",
        total,
        "--resume",
        "--checkpoint-every",
        7,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert log_steps(killed) == (list(range(1, total + 1)), list(range(1, total + 1)))
    whole = tmp_path / "whole"
    assert (
        run("train", *common, "--out", whole, "--epochs", 10_000, "--max-steps", total).returncode
        == 0
    )
    assert (killed / "losses.tsv").read_text() == (whole / "losses.tsv").read_text()


@pytest.mark.parametrize("case", ["data", "init", "dump checkpoint"])
def test_a_fifo_as_an_input_is_refused_without_waiting(data32, tmp_path, case):
    bad = tmp_path / "bad"
    bad.mkdir()
    if case == "data":
        for name in ("noisy.bin", "clean.bin"):
            os.mkfifo(bad / name)
        args, fifo = ("train", "--data", bad, "--patch-size", 32, *CPU, "--out", tmp_path / "run"), bad / "noisy.bin"
    else:
        checkpoint.save(bad / "ckpt", init_params(0), step=0)
        fifo = bad / "ckpt" / "params.bin"
        fifo.unlink()
        os.mkfifo(fifo)
        args = (
            (
                "train",
                "--data",
                data32.noisy.parent,
                *CPU,
                "--out",
                tmp_path / "run",
                "--init",
                bad / "ckpt",
            )
            if case == "init"
            else (
                "dump",
                "--checkpoint",
                bad / "ckpt",
                "--data",
                data32.noisy.parent,
                *CPU,
                "--index",
                0,
                "--out",
                tmp_path / "dump",
            )
        )
    done = run(*args, timeout=60)
    assert done.returncode == 2, done.stderr
    no_traceback(done.stderr)
    assert (
        done.stderr.strip().splitlines()[-1]
        == error(args[0], f"{fifo}: is not a regular file (a FIFO (named pipe))")
    )


def test_a_full_disk_names_the_file_and_keeps_the_last_checkpoint(data32, tmp_path, small_fs):
    disk = small_fs(64 << 10)  # room for a checkpoint (10.5 KiB), the logs of some steps, not more
    out = disk / "run"
    done = run(
        "train", "--data", data32.noisy.parent, *CPU, "--out", out, *LONG, "--checkpoint-every", 5
    )
    assert done.returncode == 2
    no_traceback(done.stderr)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(error("train", f"{out}/")) and "No space left on device" in last, last
    assert checkpoint.load(out / "checkpoint").step % 5 == 0
    assert partials(out) == [] and not list(out.glob("checkpoint.tmp-*"))


# -- denoise -------------------------------------------------------------------------------------


@pytest.fixture
def raw_inputs(tmp_path):
    """A checkpoint and a folder of raw micrographs for denoise (forward only: no training)."""
    ckpt = checkpoint.save(tmp_path / "ckpt", init_params(0), step=0)
    folder = tmp_path / "raws"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        rng.random((1, 256, 256), dtype=np.float32).tofile(folder / f"m{i}.bin")
    write_meta(folder, 256, 256, 1, {"generator": "tests/cli/test_attacks.py"})
    return ckpt, folder


def test_sigint_while_denoising_leaves_no_partial_and_a_rerun_finishes(raw_inputs, tmp_path):
    ckpt, folder = raw_inputs
    out = tmp_path / "out"
    args = (folder, "--checkpoint", ckpt, "--normalize", *CPU, "-o", out, "--tile-size", 64)
    proc = start("denoise", *args)
    read_line_with(proc, "m0.bin ->")
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    assert code in (0, 130), err  # 0: it had finished before the signal came
    no_traceback(err)
    assert partials(out) == []
    rerun = run("denoise", *args)
    assert rerun.returncode == 0, rerun.stderr
    assert outputs(out) == [f"m{i}.denoised.mrcs" for i in range(4)]


def test_a_partial_output_of_a_dead_process_is_swept(raw_inputs, tmp_path):
    ckpt, folder = raw_inputs
    out = tmp_path / "out"
    out.mkdir()
    dead = run("make_dataset", "--help").args  # any finished process: its pid is free now
    del dead
    stale = userio.partial_name(out / "m0.denoised.mrcs").name.replace(
        f".{os.getpid()}.", ".999999999."
    )
    alive = userio.partial_name(out / "m1.denoised.mrcs").name.replace(f".{os.getpid()}.", ".1.")
    for name in (stale, alive):
        (out / name).write_bytes(b"half")
    done = run("denoise", folder / "m0.bin", "--checkpoint", ckpt, "--normalize", *CPU, "-o", out)
    assert done.returncode == 0, done.stderr
    assert partials(out) == [alive]  # pid 1 is alive: its file may still be written


def test_denoise_on_a_full_disk_names_the_output(raw_inputs, tmp_path, small_fs):
    """A memory-mapped output on a full disk would die of SIGBUS; space is taken first instead."""
    ckpt, folder = raw_inputs
    out = small_fs(400 << 10) / "out"  # room for one 256 KiB output, not two
    done = run("denoise", folder, "--checkpoint", ckpt, "--normalize", *CPU, "-o", out)
    assert done.returncode == 2, done.stderr
    no_traceback(done.stderr)
    assert done.stderr.strip().splitlines()[-1] == error(
        "denoise", f"{out / 'm1.denoised.mrcs'}: cannot be written (No space left on device); "
        "the outputs finished before it stay"
    )
    assert outputs(out) == ["m0.denoised.mrcs"]


def test_a_fifo_among_denoise_inputs_is_named_and_skipped(raw_inputs, tmp_path):
    ckpt, folder = raw_inputs
    os.mkfifo(tmp_path / "pipe.mrc")
    done = run(
        "denoise",
        folder / "m0.bin",
        tmp_path / "pipe.mrc",
        "--checkpoint",
        ckpt,
        "--normalize",
        *CPU,
        "-o",
        tmp_path / "out",
        timeout=60,
    )
    assert done.returncode == 4, done.stderr
    no_traceback(done.stderr)
    assert (
        f"skipped: {tmp_path / 'pipe.mrc'}: is not a regular file (a FIFO (named pipe))"
        in done.stderr
    )


# -- make_dataset --------------------------------------------------------------------------------


def staged_samples(out: Path) -> bool:
    """Whether a make_dataset writing into `out` has staged a sample (its workers run by then)."""
    return any(
        (p / NOISY_NAME).exists() and (p / NOISY_NAME).stat().st_size > 0
        for p in out.iterdir()
        if p.is_dir()
    )


@pytest.fixture
def old_set(tmp_path):
    """A dataset made by make_dataset, and its files' digests."""
    out = tmp_path / "set"
    assert (
        run("make_dataset", "--out", out, "--samples", 4, "--size", 32, "--quiet").returncode == 0
    )
    return out, digests(out)


@pytest.mark.parametrize(
    "bad, message",
    [
        (("--dose", "inf"), "argument --dose: must be a finite number > 0, not 'inf'"),
        (("--seed", "-1"), "argument --seed: must be an integer >= 0, not '-1'"),
        (("--sigma", "nan"), "argument --sigma: must be a finite number >= 0, not 'nan'"),
        (("--size", "8"), "argument --size: must be an integer >= 16, not '8'"),
        (("--samples", "0"), "argument --samples: must be an integer >= 1, not '0'"),
        (("--workers", "0"), "argument --workers: must be an integer >= 1, not '0'"),
    ],
)
def test_a_bad_argument_with_overwrite_keeps_the_old_dataset(old_set, bad, message):
    out, before = old_set
    done = run("make_dataset", "--out", out, "--samples", 8, "--size", 32, "--overwrite", *bad)
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == error("make_dataset", f"{message} (see python -m cudnn_denoise.make_dataset --help)")
    )
    assert digests(out) == before


def test_sigint_to_the_whole_group_during_an_overwrite_keeps_the_old_dataset(old_set):
    """Ctrl-C reaches the parent and its worker processes: one line, the old set as it was."""
    out, before = old_set
    proc = start(
        "make_dataset",
        "--out",
        out,
        "--samples",
        5000,
        "--size",
        64,
        "--workers",
        2,
        "--overwrite",
        new_session=True,
    )
    wait_until(lambda: staged_samples(out), proc, what="a staged sample")
    os.killpg(proc.pid, signal.SIGINT)
    code, _, err = finish(proc)
    assert code == 130
    assert err.strip().startswith(
        "stopped by SIGINT; the output folder holds what it held before"
    )
    assert digests(out) == before and partials(out) == []


def test_kill_9_leaves_no_worker_behind_and_the_next_run_sweeps_its_staging(old_set):
    out, before = old_set
    proc = start(
        "make_dataset", "--out", out, "--samples", 5000, "--size", 64, "--workers", 2, "--overwrite"
    )
    wait_until(lambda: staged_samples(out), proc, what="a staged sample")
    workers = children(proc.pid)
    assert len(workers) == 2
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers):  # each ends on its broken pipe
        assert time.monotonic() < deadline, "a worker outlived its parent"
        time.sleep(0.05)
    assert digests(out) == before and len(partials(out)) == 1  # the killed run's staging folder
    again = run(
        "make_dataset", "--out", out, "--samples", 4, "--size", 32, "--overwrite", "--quiet"
    )
    assert again.returncode == 0, again.stderr
    assert partials(out) == []


def test_a_full_disk_during_an_overwrite_keeps_the_old_dataset(old_set):
    out, before = old_set
    # each new file needs 262,144 bytes
    done = run("make_dataset", "--out", out, "--samples", 64, "--size", 32, "--overwrite",
               limit_bytes=100_000)
    assert done.returncode == 2
    assert done.stderr.strip() == error(
        "make_dataset", f"{out}: cannot write the dataset (File too large); "
        "the dataset there is unchanged"
    )
    assert digests(out) == before and partials(out) == []


@pytest.mark.parametrize(
    "where, message",
    [
        ("a file", "--out {out}: exists and is not a folder"),
        ("under a file", "--out {out}: cannot be made (Not a directory)"),
        ("read-only", "--out {out}: cannot be made (Read-only file system)"),
        ("full", "{out}: the dataset needs 32.0 MiB, only "),
    ],
)
def test_an_unusable_out_is_one_line(tmp_path, small_fs, where, message):
    if where == "a file":
        out = tmp_path / "file"
        out.write_text("x")
    elif where == "under a file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "set"
    else:
        out = small_fs(1 << 20, read_only=where == "read-only") / "set"
    done = run("make_dataset", "--out", out, "--samples", 1024, "--size", 64, "--quiet")
    assert done.returncode == 2
    assert done.stderr.startswith(error("make_dataset", message.format(out=out))), done.stderr
    assert done.stderr.count("\n") == 1


# -- inputs rewritten while they are read ---------------------------------------------------------

SHRINK_AFTER_OPEN = """
import os, sys
from cudnn_denoise import denoise
from cudnn_denoise.micrographs import mrc_io, raw_io

def shrinking(cls):
    opened = cls.__init__
    def init(self, path, *args):
        opened(self, path, *args)
        if path.name.startswith("shrinks"):  # another program rewrites it, as it is read
            os.truncate(path, 4096)
    cls.__init__ = init

shrinking(mrc_io.MrcSource)
shrinking(raw_io.RawSource)
sys.exit(denoise.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("name", ["shrinks.mrcs", "shrinks.bin"])
def test_an_input_that_shrinks_while_read_is_skipped_not_a_crash(tmp_path, name):
    from micrograph_files import write_mrc

    frames = np.random.default_rng(0).random((4, 64, 64), dtype=np.float32)
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_mrc(inputs / "good.mrc", frames[0])
    if name.endswith(".mrcs"):
        write_mrc(inputs / name, frames, stack=True)
    else:
        frames.tofile(inputs / name)
    ckpt = checkpoint.save(tmp_path / "ckpt", init_params(0), step=0)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-c", SHRINK_AFTER_OPEN, *map(str, (
            inputs / "good.mrc", inputs / name, "--checkpoint", ckpt, "-o", out, *CPU,
            "--height", 64, "--width", 64, "--normalize"))],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 4, (done.returncode, done.stderr)
    no_traceback(done.stderr)
    skipped = [line for line in done.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 1 and skipped[0].startswith(f"skipped: {inputs / name}"), done.stderr
    assert "file truncated while in use?" in skipped[0]
    assert outputs(out) == ["good.denoised.mrc"]


@pytest.mark.parametrize("entry", [("-m", "cudnn_denoise.train"), ("-m", "cudnn_denoise", "train")])
@pytest.mark.parametrize("delay", [0.05, 0.1, 0.15, 0.2])
def test_sigint_while_the_program_imports_prints_no_traceback(tmp_path, entry, delay):
    proc = subprocess.Popen([sys.executable, *entry, "--backend", "reference", "--out",
                             tmp_path / "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc, 60)
    no_traceback(err)
    assert code in (130, -signal.SIGINT), (code, err)
    assert not (tmp_path / "run" / "checkpoint").exists()
