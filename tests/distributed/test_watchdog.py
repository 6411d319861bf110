"""The watchdog's parts on the CPU: progress of queued markers, the processes of peers, the timeout
setting, and the thread ending its process. The GPU side (a real communicator and a stalled CUDA
stream) is in tests/distributed/test_nccl_gpu.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cudnn_denoise.distributed import watchdog
from cudnn_denoise.distributed.watchdog import LocalPeers, Progress, process_start, timeout_from_env

HERE = Path(__file__).resolve().parent


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Marker:
    def __init__(self):
        self.done = False


def test_progress_counts_the_wait_of_the_oldest_unfinished_marker_since_the_last_finished():
    clock = Clock()
    progress = Progress(clock)
    assert progress.stalled_for() == 0.0  # nothing queued: idle is not a stall
    first, second = Marker(), Marker()
    clock.now = 110.0
    progress.queued(first)
    clock.now = 111.0
    progress.queued(second)
    clock.now = 115.0
    assert progress.stalled_for() == 5.0  # since `first` was queued (the GPU was idle before)
    clock.now = 117.0
    first.done = True
    assert progress.stalled_for() == 0.0  # seen finishing now: the clock starts again
    clock.now = 120.0
    assert progress.stalled_for() == 3.0 and len(progress) == 1
    second.done = True
    assert progress.stalled_for() == 0.0 and len(progress) == 0


def test_a_process_that_ended_has_no_start_time_even_as_a_zombie():
    assert isinstance(process_start(os.getpid()), int)
    child = subprocess.Popen(["sleep", "0"])
    deadline = time.monotonic() + 30
    while (
        process_start(child.pid) is not None and time.monotonic() < deadline
    ):  # until it is a zombie
        time.sleep(0.01)
    assert process_start(child.pid) is None  # not reaped yet: state Z
    child.wait()
    assert process_start(child.pid) is None  # reaped: no /proc entry


def test_local_peers_are_watched_by_pid_and_start_time_and_reported_once_gone():
    child = subprocess.Popen(["sleep", "60"])
    try:
        me = os.getpid()
        identities = [
            ("host", me, process_start(me)),
            ("host", child.pid, process_start(child.pid)),
            ("other", child.pid, process_start(child.pid)),  # another host: its launcher's job
            ("host", child.pid, 1),
        ]  # not the process it names here (another pid namespace)
        peers = LocalPeers(identities, rank=0, host="host")
        assert sorted(peers.watched) == [1]
        assert peers.dead() == []
    finally:
        child.kill()
        child.wait()
    assert peers.dead() == [1]


@pytest.mark.parametrize(
    "text, seconds", [(None, watchdog.DEFAULT_TIMEOUT_S), ("30", 30.0), ("2.5", 2.5)]
)
def test_timeout_comes_from_the_environment(text, seconds):
    assert timeout_from_env({} if text is None else {watchdog.TIMEOUT_ENV: text}) == seconds


@pytest.mark.parametrize("text", ["soon", "0", "-4", "nan"])
def test_a_timeout_that_is_not_a_positive_number_is_refused(text):
    with pytest.raises(
        ValueError, match=f"CUDNN_DENOISE_NCCL_TIMEOUT='{text}': expected a number of seconds"
    ):
        timeout_from_env({watchdog.TIMEOUT_ENV: text})


@pytest.mark.parametrize(
    "mode, reason",
    [
        ("stall", r"no progress on the GPU for \d+ s \(1 step\(s\) queued\): a peer never joined"),
        ("nccl-error", "NCCL reported ncclRemoteError: remote process exited"),
    ],
)
def test_the_watchdog_aborts_the_communicator_then_ends_the_process(mode, reason):
    result = subprocess.run(
        [sys.executable, HERE / "stalled_watchdog.py", mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == watchdog.EXIT_CODE, result.stdout + result.stderr
    assert result.stdout == "ncclCommAbort called\n"
    assert re.search(
        f"^rank 0 of 1: watchdog: {reason}.*; aborting every rank$", result.stderr, re.MULTILINE
    ), result.stderr


class Communicator:
    """The two calls the watchdog makes of a communicator (a real one needs a GPU)."""

    def async_error(self):
        return None

    def abort(self):
        raise AssertionError("check() only reports; ending is _end's job")


def test_a_dead_peer_ends_the_run_only_while_steps_wait_for_it():
    from cudnn_denoise.distributed.world import World

    child = subprocess.Popen(["sleep", "60"])
    me = os.getpid()
    identities = [("host", me, process_start(me)), ("host", child.pid, process_start(child.pid))]
    dog = watchdog.Watchdog(World(), Communicator(), device=None, timeout=60.0)
    dog.peers = LocalPeers(identities, rank=0, host="host")
    step = Marker()
    dog.progress.queued(step)
    assert dog.check() is None  # the peer lives
    child.kill()
    child.wait()
    assert dog.check() == "the process of rank 1 on this host has ended (1 step(s) queued)"
    step.done = True
    assert dog.check() is None  # nothing left to wait for: the end of a run, ranks leaving
