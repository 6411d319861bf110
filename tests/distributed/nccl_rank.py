"""The host side of the NCCL set-up under MPI, for test_nccl_host.py (no GPU needed).

    mpirun -n 2 python nccl_rank.py

Each rank prints a digest of the ncclUniqueId it got (made by rank 0, broadcast over MPI), and
NCCL_NVLS_ENABLE as the process environment holds it once Communicator has run (it fails at
ncclCommInitRank without a GPU; the error is printed, naming the call).
"""

import hashlib
import os

from cudnn_denoise.distributed import nccl
from cudnn_denoise.distributed.world import detect
from cudnn_denoise.bindings import NcclError

world = detect()
uid = nccl.unique_id(world)
print(
    f"rank {world.rank} of {world.size}: id {hashlib.sha256(uid).hexdigest()} {len(uid)} bytes",
    flush=True,
)
try:
    nccl.Communicator(world.rank, world.size, uid)
except NcclError as exc:
    print(f"rank {world.rank}: {exc.function}: {exc.status_name}", flush=True)
print(f"rank {world.rank}: NCCL_NVLS_ENABLE={os.environ.get('NCCL_NVLS_ENABLE')}", flush=True)
