"""The watchdog of a GPU rank: ends every rank when this one's GPU stops making progress, when NCCL
reports an error, or when a peer process on this host has died. No rank waits forever in an
ncclAllReduce or a stream synchronize whose peer is gone.

The launcher is the first line: MPICH's hydra ends every rank with SIGKILL within a second when one
exits without MPI_Finalize or calls MPI_Abort (run_or_abort does), wherever the others are blocked
(docs/distributed.md). The watchdog covers what a launcher does not see, from a daemon thread that
looks every POLL_S seconds at:
  - NCCL's own errors (ncclCommGetAsyncError);
  - the peers on this host, while steps are queued here: a process gone or a zombie (its pid and
    start time were gathered when the watchdog was made; peers whose pid this process cannot see
    are left to the launcher; with nothing queued, no all-reduce waits on them: the ranks end one
    by one at the end of a run);
  - progress: a CUDA event is recorded after each step (queued); when the oldest one not yet
    complete has waited `timeout` seconds and none completed meanwhile, the GPU is stuck in a
    collective that a peer never joins (a peer alive but hung, or stopped).
On any of them it prints why, naming its rank, calls ncclCommAbort (so that NCCL kernels spinning on
the GPU return), waits at most ABORT_WAIT_S for it, then ends every rank with the world's abort
(MPI_Abort), with exit code EXIT_CODE. The thread only runs while the main thread waits outside
Python or sleeps: every wait of the training loop releases the GIL (CUDA synchronisations,
mpi4py's buffer collectives; distributed.World uses no other kind in the loop).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque

TIMEOUT_ENV = "CUDNN_DENOISE_NCCL_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0  # longer than any legitimate wait: rank 0's validation at a log line
POLL_S = 1.0
ABORT_WAIT_S = 5.0  # ncclCommAbort may wait for the GPU; the ranks end whether or not it returns
EXIT_CODE = 5


def timeout_from_env(environ=os.environ) -> float:
    """Seconds without progress before the watchdog ends the run ($CUDNN_DENOISE_NCCL_TIMEOUT)."""
    text = environ.get(TIMEOUT_ENV)
    if text is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"{TIMEOUT_ENV}={text!r}: expected a number of seconds above 0")
    return value


class Progress:
    """Markers queued in order (anything with a `done` property: CUDA events) and how long the
    oldest unfinished one has waited with none finishing. Thread-safe."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._pending: deque = deque()  # (marker, time queued)
        self._lock = threading.Lock()
        self._last_done = clock()

    def queued(self, marker) -> None:
        with self._lock:
            self._pending.append((marker, self._clock()))

    def stalled_for(self) -> float:
        """Seconds since the GPU last showed progress while work was pending (0: none pending)."""
        with self._lock:
            while self._pending and self._pending[0][0].done:
                self._pending.popleft()
                self._last_done = self._clock()
            if not self._pending:
                return 0.0
            return self._clock() - max(self._last_done, self._pending[0][1])

    def __len__(self) -> int:
        return len(self._pending)


def process_start(pid: int) -> int | None:
    """The start time (clock ticks since boot) of a live process, None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces
    except OSError:
        return None
    state, start = fields[0], int(fields[19])  # stat fields 3 and 22
    return None if state in ("Z", "X") else start


class LocalPeers:
    """The other ranks' processes on this host that this process can see, by pid and start time."""

    def __init__(self, identities: list[tuple[str, int, int | None]], rank: int, host: str):
        # identities[r] = (host, pid, start time as rank r itself read it)
        self.watched = {
            r: (pid, start)
            for r, (h, pid, start) in enumerate(identities)
            if r != rank and h == host and start is not None and process_start(pid) == start
        }

    def dead(self) -> list[int]:
        """Ranks whose process has ended (or whose pid now names another process)."""
        return [r for r, (pid, start) in self.watched.items() if process_start(pid) != start]


class Watchdog:
    """The daemon thread of one GPU rank (module docstring)."""

    def __init__(self, world, comm, device: int | None, timeout: float, poll: float = POLL_S):
        """comm: the Communicator (async_error, abort); device: the GPU whose events are queried
        (None: the thread's current one, where no CUDA work is watched)."""
        import socket

        self.world, self.comm, self.device = world, comm, device
        self.timeout, self.poll = timeout, poll
        self.progress = Progress()
        host = socket.gethostname()
        identities = world.allgather((host, os.getpid(), process_start(os.getpid())))
        self.peers = LocalPeers(identities, world.rank, host)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="cudnn_denoise watchdog", daemon=True
        )

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def queued(self, stream) -> None:
        """Record a CUDA event on `stream` after the work just queued (never during a capture)."""
        import cupy

        event = cupy.cuda.Event(disable_timing=True)
        event.record(stream)
        self.progress.queued(event)

    def check(self) -> str | None:
        """Why every rank must end now, or None."""
        error = self.comm.async_error()
        if error is not None:
            return f"NCCL reported {error}"
        stalled = self.progress.stalled_for()  # drops the steps that completed
        # A peer's end matters while this GPU has steps to finish: their all-reduces need it. At the
        # end of a run the ranks finish one by one, with nothing queued.
        dead = self.peers.dead() if len(self.progress) else []
        if dead:
            return (
                f"the process of rank {dead[0]} on this host has ended ({len(self.progress)} "
                "step(s) queued)"
            )
        if stalled >= self.timeout:
            return (
                f"no progress on the GPU for {stalled:.0f} s ({len(self.progress)} step(s) "
                f"queued): a peer never joined the gradient all-reduce "
                f"({TIMEOUT_ENV}={self.timeout:g})"
            )
        return None

    def _run(self) -> None:
        if self.device is not None:
            import cupy

            cupy.cuda.Device(self.device).use()  # events are queried on this rank's GPU
        while not self._stop.wait(self.poll):
            try:
                reason = self.check()
            except Exception as exc:  # e.g. a CUDA error querying an event: the GPU is unusable
                reason = f"the check itself failed: {type(exc).__name__}: {exc}"
            if reason is not None:
                self._end(reason)

    def _end(self, reason: str) -> None:
        world = self.world
        try:
            print(
                f"rank {world.rank} of {world.size}: watchdog: {reason}; aborting every rank",
                file=sys.stderr,
                flush=True,
            )
            aborting = threading.Thread(target=self.comm.abort, daemon=True)
            aborting.start()
            aborting.join(ABORT_WAIT_S)
        finally:
            world.abort(EXIT_CODE)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
