"""CLI: print one training step's cuDNN and cuBLAS calls as trace lines (port/calls.py).

    python -m cudnn_denoise.plan [--batch-size 4] [--height 1024] [--width 1024] [--fused] ...

docs/fortran.md lists the same step; tests/cli/test_trace.py checks that it is this output.
"""

from __future__ import annotations

import sys

from . import cli
from .port.calls import C_INT_MAX, Settings, step
from .userio import arguments, console


def parser() -> arguments.ArgumentParser:
    p = arguments.ArgumentParser(prog=cli.prog("plan"),
                                 description="Print one training step's cuDNN and cuBLAS calls as "
                                             "trace lines (docs/fortran.md).")
    cli.add_version(p)
    size = arguments.integer(minimum=1, maximum=C_INT_MAX)  # cuDNN takes dimensions as C ints
    p.add_argument("--batch-size", type=size, default=4, help="samples per step (default 4)")
    p.add_argument("--height", type=size, default=1024, help="image height (default 1024)")
    p.add_argument("--width", type=size, default=1024, help="image width (default 1024)")
    p.add_argument("--lr", type=arguments.number(positive=True), default=0.001,
                   help="SGD learning rate (default 0.001)")
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
    except ValueError as exc:
        p.error(str(exc))  # exits with 2
    for call in step(settings, a.batch_size, a.height, a.width, a.lr):
        print(call.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
