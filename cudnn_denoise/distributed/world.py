"""Data-parallel training over MPI processes: who this process is, and the collectives a step needs.

    mpirun -n 2 python -m cudnn_denoise.train --backend reference --batch-size 4 ...

A process runs distributed when its launcher says so in the environment (LAUNCHER_ENV_VARS: set by
MPICH's and Intel MPI's hydra, Open MPI's mpirun, Slurm's srun --mpi=pmi2 or pmix); only then is
mpi4py imported (pip install 'cudnn_denoise[mpi]'). Otherwise World is one process and training
runs exactly as before. There is no --distributed flag: the launcher's variables are the one
signal, so one command line serves both (docs/distributed.md lists them).

What a step does on R ranks with --batch-size B (per rank), global batch G = B x R:
  every rank computes the same epoch order (same seed) as a one-process run with batch G; rank r
  reads only rows [r*B, (r+1)*B) of each global batch (PairReader's `part`);
  the MSE of the global batch is the mean over its G*H*W elements, that is the mean of the R
  per-rank means (equal shares), so its gradient is (1/R) x the sum of the per-rank gradients:
  average_gradients() is one Allreduce(SUM) over the flat gradient vector, then a scale by 1/R;
  every rank then applies the same SGD, so the parameters stay identical. check_same() compares a
  digest of them at every log line; a mismatch raises ParametersDiverged on every rank.
Rank 0 alone prints, writes metrics.jsonl and checkpoints. A rank that raises or exits non-zero
prints why (naming its rank) and calls MPI_Abort, which ends every rank: none waits forever in a
collective (run_or_abort). The collectives a training step makes on the host (agree_max, mean,
check_same) pass buffers: mpi4py releases the GIL while they wait (its pickle-based lowercase
collectives were measured holding it), so the GPU watchdog's thread keeps running.

The cudnn backend (nccl.py): each rank drives one GPU, and the gradient average is an
ncclAllReduce of the flat gradient on the model's stream, cublasSscal_v2(1/R) and the usual
cublasSaxpy_v2; watchdog.py ends every rank when one's GPU stops making progress.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..port.checksum import format_checksum

# Set by the launchers for every process they start; any one of them means "under MPI".
LAUNCHER_ENV_VARS = (
    "PMI_SIZE",  # MPICH / Intel MPI hydra, Slurm srun --mpi=pmi2
    "MPI_LOCALNRANKS",  # MPICH hydra
    "OMPI_COMM_WORLD_SIZE",  # Open MPI mpirun
    "PMIX_RANK",  # PMIx: Open MPI 5, Slurm srun --mpi=pmix
)
# The launcher forwards each rank's output asynchronously, and MPI_Abort can end it before the last
# lines arrive (seen with MPICH's hydra: a rank's error line lost): wait this long before aborting.
ABORT_GRACE_S = 1.0
MPI_FIX = "pip install 'cudnn_denoise[mpi]' (mpi4py and the mpich wheel, which brings mpirun)"


class ParametersDiverged(RuntimeError):
    """The ranks' parameters differ: their gradient averages or updates did not agree."""


@dataclass
class World:
    """This process's place among the ranks; comm is mpi4py's COMM_WORLD, None for one process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # among the ranks on this machine: the GPU it uses (nccl.choose_device)
    local_size: int = 1  # ranks on this machine
    comm: Any = None

    @property
    def distributed(self) -> bool:
        """Started by an MPI launcher (even as one rank): the cudnn backend then uses NCCL."""
        return self.comm is not None

    @property
    def lead(self) -> bool:
        """Rank 0: the one that prints, writes metrics and checkpoints."""
        return self.rank == 0

    def part(self, batch_size: int) -> tuple[int, int]:
        """Rows [start, stop) of each global batch that this rank reads (batch_size: per rank)."""
        return self.rank * batch_size, (self.rank + 1) * batch_size

    # -- the collectives of a step -----------------------------------------------------------------

    def average_gradients(self, dparams: np.ndarray) -> None:
        """dparams <- (sum over ranks of dparams) / size, in place (flat, float32 or float64)."""
        if self.size == 1:
            return
        from mpi4py import MPI

        self.comm.Allreduce(MPI.IN_PLACE, dparams, op=MPI.SUM)
        dparams *= dparams.dtype.type(1.0 / self.size)

    def mean(self, values: np.ndarray) -> np.ndarray:
        """The element-wise mean over ranks of `values` (float64): a step's loss of the global batch."""
        values = np.ascontiguousarray(values, dtype=np.float64)
        if self.size == 1:
            return values
        from mpi4py import MPI

        total = np.empty_like(values)
        self.comm.Allreduce(values, total, op=MPI.SUM)
        return total / self.size

    def agree_max(self, value: int) -> int:
        """The largest `value` over ranks: a signal seen by any rank stops every rank at one step."""
        if self.size == 1:
            return value
        from mpi4py import MPI

        biggest = np.empty(1, dtype=np.int64)
        self.comm.Allreduce(np.array([value], dtype=np.int64), biggest, op=MPI.MAX)
        return int(biggest[0])

    def barrier(self) -> None:
        if self.size > 1:
            self.comm.Barrier()

    def broadcast(self, buffer: np.ndarray) -> None:
        """Rank 0's `buffer` (a NumPy array) into every rank's, in place."""
        if self.comm is not None:
            self.comm.Bcast(buffer, root=0)

    def allgather(self, value) -> list:
        """Every rank's `value`, by rank (small Python objects, at start-up: not in the loop)."""
        return self.comm.allgather(value) if self.comm is not None else [value]

    def check_same(self, params: np.ndarray, step: int) -> None:
        """Raise ParametersDiverged on every rank unless all ranks hold bit-identical parameters."""
        if self.size == 1:
            return
        params = np.ascontiguousarray(params, dtype=np.float32)
        digest = hashlib.blake2b(params.tobytes(), digest_size=16).digest()
        mine = np.frombuffer(digest, dtype=np.uint8)
        every = np.empty((self.size, mine.size), dtype=np.uint8)
        self.comm.Allgather(mine, every)
        if (every != mine).any():  # every rank sees the same table, so all of them raise
            lines = "\n".join(f"  rank {r}: {line}" for r, line in
                              enumerate(self.comm.allgather(format_checksum("params", params))))
            raise ParametersDiverged(f"step {step}: the parameters differ between ranks:\n{lines}")

    # -- failure -----------------------------------------------------------------------------------

    def run_or_abort(self, main, *args) -> int:
        """main(*args) on this rank. On several ranks, an exception or a non-zero exit code is printed
        with this rank's number and ends every rank through MPI_Abort (exit code: the rank's, else 1)."""
        if self.size == 1:
            return main(*args)
        try:
            code = main(*args)
        except SystemExit as exc:  # argparse: every rank parses the same arguments
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            sys.stdout.flush()
            print(f"rank {self.rank} of {self.size}: unhandled error; aborting every rank", file=sys.stderr)
            traceback.print_exc()
            self.abort(1)
            raise  # not reached: abort does not return
        if code:
            sys.stdout.flush()
            print(f"rank {self.rank} of {self.size}: exit code {code}; aborting every rank", file=sys.stderr)
            self.abort(code)
        return 0

    def abort(self, code: int) -> None:
        """End every rank with exit code `code` (MPI_Abort); without MPI, this process. Never
        returns; callable from any thread (MPI runs with MPI_THREAD_MULTIPLE, mpi4py's default)."""
        sys.stdout.flush()
        sys.stderr.flush()
        if self.comm is not None:
            time.sleep(ABORT_GRACE_S)
            self.comm.Abort(code)
        os._exit(code)


SINGLE = World()


def launched_by_mpi(environ=os.environ) -> bool:
    """Whether a launcher started this process as one of several (LAUNCHER_ENV_VARS)."""
    return any(name in environ for name in LAUNCHER_ENV_VARS)


def detect(environ=os.environ) -> World:
    """The World of this process: from mpi4py under an MPI launcher, else one process."""
    if not launched_by_mpi(environ):
        return SINGLE
    try:
        from mpi4py import MPI
    except ImportError as exc:
        found = ", ".join(f"{n}={environ[n]}" for n in LAUNCHER_ENV_VARS if n in environ)
        raise ImportError(f"started by an MPI launcher ({found}) but mpi4py is missing: {MPI_FIX}") from exc
    comm = MPI.COMM_WORLD
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    world = World(rank=comm.Get_rank(), size=comm.Get_size(), local_rank=local.Get_rank(),
                  local_size=local.Get_size(), comm=comm)
    local.Free()
    return world
