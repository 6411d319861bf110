"""Data-parallel training on GPUs: each rank's GPU, the NCCL communicator, the gradient average.

    gpus = DataParallel(world)              # under mpirun / srun, before any other CUDA work
    model.reduce_gradients = gpus.gradient_average(model)
    ... gpus.step_queued(model.stream) after each step ...
    gpus.close()                            # after the model (and its CUDA graph) is closed

DataParallel picks this rank's GPU (select_device), makes the communicator (rank 0 calls
ncclGetUniqueId, MPI_Bcast sends its 128 bytes, every rank calls ncclCommInitRank) and starts the
watchdog (watchdog.py). A step on R ranks then queues, on the model's stream, between the
backward pass and the SGD saxpy (DenoiseCNN._step calls reduce_gradients there):

    ncclAllReduce(grads, grads, 2625, ncclFloat32, ncclSum, comm, stream)   sum over the ranks
    cublasSscal_v2(cublas, 2625, 1/R, grads, 1)                             their mean

With --graph both calls are captured in the step's CUDA graph like the others. One rank under
`mpirun -n 1` takes the same path (a sum over one rank, a scale by 1): bit for bit a plain run.
NVLink SHARP (NVLS: NVLink multicast) is switched off before NCCL initialises
(NCCL_NVLS_ENABLE=0): on shared hosts its multicast objects can take the GPUs out of service,
and a 2,625-float gradient gains nothing from it.
"""

from __future__ import annotations

import os
import socket
import sys

import numpy as np

from ..params import NUM_PARAMS

NVLS_ENV = "NCCL_NVLS_ENABLE"
UNIQUE_ID_BYTES = 128  # NCCL_UNIQUE_ID_BYTES, the size of ncclUniqueId (checked by tests/bindings)


class GpuRanksError(RuntimeError):
    """The ranks cannot each have a GPU of their own as launched (too few GPUs, or one shared)."""


def disable_nvls(environ=os.environ) -> str | None:
    """Set NCCL_NVLS_ENABLE=0 (before NCCL reads its environment); return a value it overrode."""
    previous = environ.get(NVLS_ENV)
    environ[NVLS_ENV] = "0"
    return previous if previous not in (None, "0") else None


def choose_device(local_rank: int, local_size: int, visible: int) -> int:
    """The index, among the visible GPUs, of this rank's GPU.

    Every rank of a host sees all its GPUs (plain mpirun): GPU local_rank. Each rank sees one GPU
    of its own (srun --gpus-per-task=1, or CUDA_VISIBLE_DEVICES set per rank): GPU 0. Whether two
    ranks still ended up on one GPU is checked afterwards by bus id (check_distinct_gpus).
    """
    if local_size <= visible:
        return local_rank
    if visible == 1:
        return 0
    raise GpuRanksError(
        f"{local_size} ranks on this host but {visible} GPUs visible: start at most {visible} "
        "ranks per host (one per GPU), or give each rank one GPU (CUDA_VISIBLE_DEVICES)"
    )


def check_distinct_gpus(placements: list[tuple[str, str]]) -> None:
    """Refuse two ranks on one GPU (NCCL needs one GPU per rank); placements[r]: (host, bus id)."""
    owner: dict[tuple[str, str], int] = {}
    for rank, place in enumerate(placements):
        if place in owner:
            raise GpuRanksError(
                f"ranks {owner[place]} and {rank} both use GPU {place[1]} on {place[0]}: NCCL "
                "needs one GPU per rank; start fewer ranks per host or give each its own GPU"
            )
        owner[place] = rank


def select_device(world) -> tuple[int, list[str]]:
    """Make this rank's GPU the current CUDA device (before any allocation on it); return its index
    and one line per rank saying where each runs (for rank 0's log)."""
    import cupy

    index = choose_device(world.local_rank, world.local_size, cupy.cuda.runtime.getDeviceCount())
    device = cupy.cuda.Device(index)
    device.use()
    place = (socket.gethostname(), device.pci_bus_id)
    placements = world.allgather(place)
    check_distinct_gpus(placements)
    return index, [f"rank {r}: {host} GPU {bus}" for r, (host, bus) in enumerate(placements)]


def unique_id(world) -> bytes:
    """The communicator's ncclUniqueId: made by rank 0 (ncclGetUniqueId), broadcast over MPI."""
    from ..bindings import ffi, load_nccl

    buf = np.zeros(UNIQUE_ID_BYTES, dtype=np.uint8)
    if world.rank == 0:
        uid = ffi.new("ncclUniqueId *")
        load_nccl().ncclGetUniqueId(uid)
        buf[:] = np.frombuffer(ffi.buffer(uid), dtype=np.uint8)
    world.broadcast(buf)
    return buf.tobytes()


class Communicator:
    """An NCCL communicator of `size` ranks on the current GPU: ncclCommInitRank ... Destroy."""

    def __init__(self, rank: int, size: int, uid: bytes):
        from ..bindings import ffi, load_nccl

        overridden = disable_nvls()
        if overridden is not None:
            print(
                f"note: {NVLS_ENV}={overridden} replaced by 0: NVLink multicast stays off",
                file=sys.stderr,
            )
        self.nccl = load_nccl()
        self.rank, self.size = rank, size
        packed = ffi.new("ncclUniqueId *")
        ffi.memmove(packed, uid, UNIQUE_ID_BYTES)
        out = ffi.new("ncclComm_t *")
        self.nccl.ncclCommInitRank(out, size, packed[0], rank)  # blocks until every rank has joined
        self.ptr = out[0]

    @classmethod
    def create(cls, world) -> Communicator:
        return cls(world.rank, world.size, unique_id(world))

    def all_reduce_sum(self, buffer, stream) -> None:
        """buffer <- the sum over ranks of buffer (float32, in place), queued on `stream`."""
        from ..bindings import ffi

        if buffer.dtype != np.float32 or not buffer.flags.c_contiguous:
            raise ValueError(
                f"ncclAllReduce here sums a contiguous float32 buffer, not {buffer.dtype}"
            )
        nccl, ptr = self.nccl, ffi.cast("void *", buffer.data.ptr)
        nccl.ncclAllReduce(
            ptr,
            ptr,
            buffer.size,
            nccl.ncclFloat32,
            nccl.ncclSum,
            self.ptr,
            ffi.cast("cudaStream_t", stream.ptr),
        )

    def async_error(self) -> str | None:
        """NCCL's own verdict on the communicator (ncclCommGetAsyncError): None while it is well."""
        from ..bindings import ffi
        from ..bindings.errors import NCCL_RESULT_NAMES, nccl_message

        result = ffi.new("ncclResult_t *")
        self.nccl.ncclCommGetAsyncError(self.ptr, result)
        if result[0] in (self.nccl.ncclSuccess, self.nccl.ncclInProgress):
            return None
        name = NCCL_RESULT_NAMES.get(result[0], str(result[0]))
        return f"{name}: {nccl_message(self.nccl.lib, result[0])}"

    def abort(self) -> None:
        """ncclCommAbort: NCCL kernels still waiting on a peer return; the communicator is gone."""
        ptr, self.ptr = self.ptr, None
        if ptr is not None:
            self.nccl.ncclCommAbort(ptr)

    def close(self) -> None:
        ptr, self.ptr = self.ptr, None
        if ptr is not None:
            self.nccl.ncclCommDestroy(ptr)


class GradientAverage:
    """A model's reduce_gradients on GPUs: grads <- (sum over ranks of grads) / R, on its stream."""

    def __init__(self, comm: Communicator, ctx):
        from ..bindings.cdata import host_float

        self.comm, self.ctx = comm, ctx
        # cuBLAS reads the host scalar when the call is queued (or captured into the graph)
        self.one_over_ranks = host_float(1.0 / comm.size)

    def __call__(self, grads) -> None:
        from ..bindings.cdata import float_ptr

        self.comm.all_reduce_sum(grads, self.ctx.stream)
        self.ctx.cublas.cublasSscal_v2(
            self.ctx.cublas_handle.ptr, grads.size, self.one_over_ranks, float_ptr(grads), 1
        )


class DataParallel:
    """What one GPU rank of a data-parallel run holds: its GPU, the communicator, the watchdog."""

    def __init__(self, world, report=print):
        from ..bindings import nccl_version
        from .watchdog import Watchdog, timeout_from_env

        timeout = timeout_from_env()  # a bad value is refused before any GPU work
        self.world = world
        self.device, placements = select_device(world)
        self.comm = Communicator.create(world)
        self.watchdog = Watchdog(world, self.comm, self.device, timeout).start()
        code = nccl_version(self.comm.nccl)  # NCCL_VERSION_CODE: 2.30.7 is 23007
        version = f"{code // 10000}.{code % 10000 // 100}.{code % 100}"
        report(
            f"NCCL {version} from {self.comm.nccl.path} ({NVLS_ENV}=0), watchdog after "
            f"{timeout:g} s without progress; " + "; ".join(placements)
        )

    def gradient_average(self, model) -> GradientAverage:
        """The hook for `model`, after one all-reduce outside any capture: every rank's model is
        built (a barrier first, so that a slow algorithm search elsewhere is not a stall here) and
        NCCL has made its connections before a CUDA graph may capture the call."""
        import cupy

        self.world.barrier()
        with model.stream:
            scratch = cupy.zeros(NUM_PARAMS, dtype=cupy.float32)
        self.comm.all_reduce_sum(scratch, model.stream)
        self.step_queued(model.stream)
        model.stream.synchronize()
        return GradientAverage(self.comm, model.ctx)

    def step_queued(self, stream) -> None:
        """Tell the watchdog that work was queued on `stream` (after each training step)."""
        self.watchdog.queued(stream)

    def close(self) -> None:
        """Stop the watchdog and destroy the communicator (after the models and their graphs)."""
        self.watchdog.stop()
        self.comm.close()
