"""Whether a CUDA GPU is usable through CuPy, and the one clear error when it is not.

Importing cudnn_denoise never needs a GPU; the first thing that does calls require_gpu().
"""

from __future__ import annotations

import functools


class NoGpuError(RuntimeError):
    """No CUDA GPU can be used: CuPy is missing, no driver, or no device visible."""


@functools.cache
def gpu_status() -> tuple[bool, str]:
    """(usable, reason): reason says why not, or names the device when usable."""
    try:
        import cupy
    except ImportError as exc:
        return False, f"CuPy is not installed ({exc}); pip install 'cudnn_denoise[cuda13]' or '[cuda12]'"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError without a driver, or a broken install
        return False, f"CUDA runtime error: {exc}"
    if count == 0:
        return False, "the CUDA runtime sees 0 devices"
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    return True, props["name"].decode()


def require_gpu() -> None:
    """Raise NoGpuError with the reason unless a CUDA GPU is usable."""
    ok, reason = gpu_status()
    if not ok:
        raise NoGpuError(f"no CUDA GPU is visible: {reason}")
