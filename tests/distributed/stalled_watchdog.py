"""A watchdog that must end this process, for test_watchdog.py (CPU: no CUDA work is watched).

    python stalled_watchdog.py stall|nccl-error

stall: a marker that never completes is queued, with a 0.5 s timeout; nccl-error: the communicator
reports an error at once. The main thread then sleeps (as it would wait on the GPU, GIL released).
The communicator here is a stand-in with the two calls the watchdog makes (a real one needs a GPU:
test_nccl_gpu.py runs the real one).
"""

import sys
import time

from cudnn_denoise.distributed.world import World
from cudnn_denoise.distributed.watchdog import Watchdog


class Communicator:
    def __init__(self, error):
        self.error = error

    def async_error(self):
        return self.error

    def abort(self):
        print("ncclCommAbort called", flush=True)


class Never:
    done = False


mode = sys.argv[1]
watchdog = Watchdog(
    World(),
    Communicator("ncclRemoteError: remote process exited" if mode == "nccl-error" else None),
    device=None,
    timeout=0.5,
    poll=0.05,
)
watchdog.progress.queued(Never())
watchdog.start()
time.sleep(60)
print("the watchdog let the process live", flush=True)
