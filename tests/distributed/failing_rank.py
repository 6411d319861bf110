"""The train CLI under MPI with one rank failing in the middle of the run, for test_failure.py.

    mpirun -n 2 python failing_rank.py MODE RANK STEP <train arguments>

On rank RANK, the model's STEP-th step raises RuntimeError (MODE raise), the process kills itself
with SIGKILL (MODE kill), or the step's update is nudged by one ulp (MODE diverge); in the first two
the other ranks are then inside that step's gradient Allreduce.
"""

import os
import signal
import sys

import numpy as np
from mpi4py import MPI

from cudnn_denoise import train
from cudnn_denoise.reference import ReferenceModel


def fail_at(mode: str, step: int) -> None:
    original = ReferenceModel.record_step
    done = [0]

    def record_step(self, x, target, lr):
        done[0] += 1
        if done[0] == step:
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if mode == "raise":
                raise RuntimeError(f"injected failure in step {step}")
            record = original(self, x, target, lr)
            self.flat[0] = np.nextafter(self.flat[0], np.inf)
            return record
        return original(self, x, target, lr)

    ReferenceModel.record_step = record_step


if __name__ == "__main__":
    mode, rank, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if MPI.COMM_WORLD.Get_rank() == rank:
        fail_at(mode, step)
    sys.exit(train.main(sys.argv[4:]))
