"""The train CLI under MPI with one rank failing in the middle of the run, for test_failure.py
(reference backend, CPU) and test_multi_gpu.py (cudnn backend, one GPU per rank).

    mpirun -n 2 python failing_rank.py MODE RANK STEP <train arguments>

On rank RANK, at the start of the STEP-th training step, the process raises RuntimeError (MODE
raise), kills itself with SIGKILL (MODE kill) or stops itself with SIGSTOP (MODE stop: alive but
hung, which only a watchdog can tell); the other ranks are then inside that step's gradient
all-reduce. MODE diverge (reference backend) nudges the step's update by one ulp instead.
"""

import os
import signal
import sys

import numpy as np
from mpi4py import MPI

from cudnn_denoise import train
from cudnn_denoise.network.reference import ReferenceModel
from cudnn_denoise.training.loop import Trainer


def diverge_at(step: int) -> None:
    original = ReferenceModel.record_step
    done = [0]

    def record_step(self, x, target, lr):
        done[0] += 1
        record = original(self, x, target, lr)
        if done[0] == step:
            self.flat[0] = np.nextafter(self.flat[0], np.inf)
        return record

    ReferenceModel.record_step = record_step


def fail_at(mode: str, step: int) -> None:
    original = Trainer._train_on

    def _train_on(self, batch):
        if self.position.step + 1 == step:
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if mode == "stop":
                os.kill(os.getpid(), signal.SIGSTOP)
            if mode == "raise":
                raise RuntimeError(f"injected failure in step {step}")
        return original(self, batch)

    Trainer._train_on = _train_on


if __name__ == "__main__":
    mode, rank, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if MPI.COMM_WORLD.Get_rank() == rank:
        diverge_at(step) if mode == "diverge" else fail_at(mode, step)
    sys.exit(train.main(sys.argv[4:]))
