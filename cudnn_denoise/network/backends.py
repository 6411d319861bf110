"""Choosing and building a backend: `cudnn` (DenoiseCNN on the GPU) or `reference` (NumPy).

Both models share one surface: train_step, train_step_async + read_losses, forward, evaluate,
get_params, set_params, record_step, close; `device` says whether batches live on the GPU.
"""

from __future__ import annotations

import numpy as np

from ..bindings.device import NoGpuError, gpu_status
from .options import GPU_ONLY, MATH_MODES

BACKENDS = ("auto", "cudnn", "reference")


def add_arguments(parser):
    """The `backend` argument group every CLI shares: --backend and --math; returns the group, to
    which a program adds its own cudnn-only flags, each with default None (options.GPU_ONLY)."""
    group = parser.add_argument_group("backend")
    group.add_argument("--backend", choices=BACKENDS, default="auto",
                       help="cudnn (GPU), reference (NumPy, CPU) or auto: cudnn when a GPU is visible (default)")
    group.add_argument("--math", choices=MATH_MODES,  # default None: gpu_flags_given
                       help="cudnn only: tf32 (CUDNN_DEFAULT_MATH, PyTorch's default) or fp32 "
                            "(CUDNN_FMA_MATH, strict: use it to compare with the reference) (default tf32)")
    return group


def gpu_flags_given(args) -> list[str]:
    """The cudnn-only flags (options.GPU_ONLY) given on the command line, as spelled there; each
    one not given gets its default."""
    given = []
    for dest, default in GPU_ONLY.items():
        if not hasattr(args, dest):  # not a flag of this program
            continue
        if getattr(args, dest) is None:
            setattr(args, dest, default)
        else:
            given.append("--" + dest.replace("_", "-"))
    return given


def refuse_gpu_flags(given: list[str], requested: str, backend: str, why: str) -> None:
    """ValueError naming the first of the cudnn-only flags `given` when the backend resolved
    (from --backend `requested`) is another: there they would be ignored."""
    if backend == "cudnn" or not given:
        return
    if requested == "auto":
        raise ValueError(f"{given[0]} needs --backend cudnn, and --backend auto found none ({why})")
    raise ValueError(f"{given[0]} needs --backend cudnn (a GPU): the {backend} backend has no such "
                     "setting")


def resolve(backend: str) -> tuple[str, str]:
    """(backend, why): `auto` is cudnn when a GPU is usable, else reference."""
    ok, reason = gpu_status()
    if backend == "auto":
        return ("cudnn", f"GPU {reason}") if ok else ("reference", f"no GPU: {reason}")
    if backend == "cudnn" and not ok:
        raise NoGpuError(f"--backend cudnn needs a CUDA GPU ({reason}); use --backend reference to run on the CPU")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose from {', '.join(BACKENDS)}")
    return backend, (f"GPU {reason}" if backend == "cudnn" else "NumPy on the CPU")


def build(backend: str, params: np.ndarray, *, batch: int, height: int, width: int, math: str = "tf32",
          deterministic: bool = False, fused: bool = False, graph: bool = False, graph_api: bool = False,
          precision: str = "fp32", keep_intermediates: bool = False, stream=None):
    """A model of the resolved backend for one batch shape.

    --deterministic asks the cuDNN heuristics (not timed search) for deterministic algorithms, so
    that two processes choose the same ones and a resumed run repeats an uninterrupted one bit for bit.
    """
    if backend == "reference":
        from .reference import ReferenceModel

        return ReferenceModel(params)
    from .model import DenoiseCNN

    return DenoiseCNN(params, batch=batch, height=height, width=width, math=math, deterministic=deterministic,
                      search="heuristic" if deterministic else "find", fused=fused, graph=graph,
                      graph_api=graph_api, precision=precision,
                      keep_intermediates=keep_intermediates, stream=stream)
