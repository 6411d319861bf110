"""A collective of distributed.World that rank 0 waits in while a thread of its own must run, for
test_nccl_host.py.

    mpirun -n 2 python waiting_rank.py COLLECTIVE

Rank 0's main thread enters COLLECTIVE (agree_max, mean, check_same or barrier) at once; rank 1
enters it only after a message that a second Python thread of rank 0 sends half a second later.
So the run finishes only if rank 0's wait releases the GIL, as the GPU watchdog's thread needs;
otherwise both ranks wait until the test's time limit.
"""

import sys
import threading
import time

import numpy as np

from cudnn_denoise.distributed.world import detect


def enter(world, collective: str) -> None:
    if collective == "agree_max":
        assert world.agree_max(world.rank + 3) == 4
    elif collective == "mean":
        assert world.mean(np.array([world.rank], dtype=np.float64))[0] == 0.5
    elif collective == "check_same":
        world.check_same(np.arange(5, dtype=np.float32), step=1)
    elif collective == "barrier":
        world.barrier()
    else:
        raise ValueError(f"unknown collective {collective!r}")


if __name__ == "__main__":
    collective = sys.argv[1]
    world = detect()
    token = np.zeros(1, dtype=np.int64)
    if world.rank == 0:

        def release_rank_1():
            time.sleep(0.5)  # rank 0's main thread is inside the collective by now
            world.comm.Send(np.ones(1, dtype=np.int64), dest=1, tag=7)

        threading.Thread(target=release_rank_1).start()
    else:
        world.comm.Recv(token, source=0, tag=7)
    enter(world, collective)
    print(f"rank {world.rank}: {collective} returned")
