"""CLI: print one training step's cuDNN and cuBLAS calls as trace lines (port/calls.py).

    python -m cudnn_denoise.plan [--batch-size 4] [--patch-size 1024] [--fused] ...

docs/fortran.md lists the same step; tests/cli/test_trace.py checks that it is this output.
"""

from __future__ import annotations

import sys

from . import cli
from .data.format import DEFAULT_PATCH_SIZE
from .port.calls import C_INT_MAX, Settings, step
from .training.run_record import SEED
from .userio import arguments, console


def parser() -> arguments.ArgumentParser:
    p = arguments.ArgumentParser(prog=cli.prog("plan"),
                                 description="Print one training step's cuDNN and cuBLAS calls as "
                                             "trace lines (docs/fortran.md).")
    cli.add_version(p)
    size = arguments.integer(minimum=1, maximum=C_INT_MAX)  # cuDNN takes dimensions as C ints
    p.add_argument("--batch-size", type=size, default=SEED.batch_size,
                   help=f"samples per step (default {SEED.batch_size})")
    p.add_argument("--patch-size", type=size, default=DEFAULT_PATCH_SIZE, metavar="PX",
                   help=f"image height = width, as train's (default {DEFAULT_PATCH_SIZE})")
    p.add_argument("--lr", type=arguments.number(positive=True), default=SEED.lr,
                   help=f"SGD learning rate (default {SEED.lr})")
    p.add_argument("--fused", action="store_true", help="conv + bias + ReLU in one call, as train --fused")
    p.add_argument("--graph", action="store_true", help="the step that train --graph captures")
    p.add_argument("--keep-intermediates", action="store_true",
                   help="separate buffers for conv and ReLU outputs, as the dump CLI")
    p.add_argument("--math", choices=("tf32", "fp32"), default="tf32",
                   help="fp32 fixes the convolutions' math type to CUDNN_FMA_MATH (default tf32: chosen)")
    return p


def main(argv=None) -> int:
    console.survive_lost_output()
    p = parser()
    a = p.parse_args(argv)
    try:
        settings = Settings(fused=a.fused, graph=a.graph, keep_intermediates=a.keep_intermediates, math=a.math)
        calls = step(settings, a.batch_size, a.patch_size, a.patch_size, a.lr)
    except ValueError as exc:
        p.error(str(exc))  # exits with 2
    for call in calls:
        print(call.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
