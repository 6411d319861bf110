"""A GPU rank whose all-reduce never completes, for test_nccl_gpu.py: the watchdog must end it.

    python stalled_gpu.py TIMEOUT

A one-rank communicator on GPU 0; the stream first waits on the host (a host function that never
returns: as a stream waits for a peer that never joins), then gets an ncclAllReduce and the step's
marker; the main thread synchronizes the stream, which alone would wait forever. The watchdog must
print why, call ncclCommAbort and end the process with its exit code within TIMEOUT + a few seconds.
"""

import sys
import threading

import cupy

from cudnn_denoise.distributed import nccl
from cudnn_denoise.distributed.world import World
from cudnn_denoise.params import NUM_PARAMS
from cudnn_denoise.distributed.watchdog import Watchdog

world = World()
comm = nccl.Communicator(0, 1, nccl.unique_id(world))
stream = cupy.cuda.Stream(non_blocking=True)
with stream:
    grads = cupy.zeros(NUM_PARAMS, dtype=cupy.float32)
never = threading.Event()
stream.launch_host_func(lambda _: never.wait(), None)
comm.all_reduce_sum(grads, stream)
watchdog = Watchdog(world, comm, device=0, timeout=float(sys.argv[1]), poll=0.2).start()
watchdog.queued(stream)
print("synchronizing", flush=True)
stream.synchronize()
print("the stream synchronized: the watchdog let the process live", flush=True)
