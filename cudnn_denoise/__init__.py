"""cudnn_denoise: a 3-layer cryo-EM denoising CNN trained with raw cuDNN and cuBLAS calls.

The package is the reference for a Fortran port: every device computation in a training step is a
cuDNN or cuBLAS call made through cffi on CuPy buffers (see docs/). Importing it needs no GPU.
"""

__version__ = "0.1.0"


def _started_as_a_program() -> bool:
    """`python -m cudnn_denoise[.X]` (runpy sets argv[0] to "-m" while it imports the package) or
    the installed command; not an import by a library user or a test."""
    import os
    import sys

    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 == "-m" or os.path.basename(argv0) == "cudnn-denoise"


if _started_as_a_program():  # a Ctrl-C during the imports before main(): no traceback
    from .userio import signals as _signals

    _signals.exit_quietly()
