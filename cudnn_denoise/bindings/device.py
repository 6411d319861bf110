"""Whether a CUDA GPU is usable through CuPy, and the one clear error when it is not.

Importing cudnn_denoise never needs a GPU; the first thing that does calls require_gpu().
"""

from __future__ import annotations

import ctypes
import functools

# cudaError_t values (driver_types.h) that mean "no usable GPU" rather than a broken install
CUDA_ERROR_INSUFFICIENT_DRIVER = 35
CUDA_ERROR_NO_DEVICE = 100
DRIVER_LIBRARY = "libcuda.so.1"  # installed by the NVIDIA driver, not by any wheel


class NoGpuError(RuntimeError):
    """No CUDA GPU can be used: CuPy is missing, no driver, or no device visible."""


@functools.cache
def gpu_status() -> tuple[bool, str]:
    """(usable, reason): reason says why not, or names the device when usable."""
    try:
        import cupy
    except ImportError:
        return False, ("CuPy is not installed (a CPU-only install); for a GPU: pip install "
                       "'cudnn_denoise[cuda13]' or '[cuda12]'")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError without a driver, or a broken install
        return False, explain_cuda_error(getattr(exc, "status", None), str(exc), driver_installed())
    if count == 0:
        return False, explain_cuda_error(CUDA_ERROR_NO_DEVICE, "0 devices", driver_installed())
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    return True, props["name"].decode()


def driver_installed() -> bool:
    """Whether the NVIDIA driver's CUDA library can be loaded."""
    try:
        ctypes.CDLL(DRIVER_LIBRARY)
    except OSError:
        return False
    return True


def explain_cuda_error(status: int | None, text: str, driver: bool) -> str:
    """Why no GPU can be used, in a newcomer's words, from the CUDA runtime's error."""
    if not driver and status in (CUDA_ERROR_INSUFFICIENT_DRIVER, CUDA_ERROR_NO_DEVICE):
        return f"no NVIDIA GPU or driver was found ({DRIVER_LIBRARY} is not installed)"
    if status == CUDA_ERROR_INSUFFICIENT_DRIVER:
        return ("the NVIDIA driver is older than the CUDA runtime CuPy was built for: update "
                "the driver, or install the cuda12 extra instead of cuda13 "
                "(cudaErrorInsufficientDriver)")
    if status == CUDA_ERROR_NO_DEVICE:
        return "the NVIDIA driver sees no GPU (check CUDA_VISIBLE_DEVICES and nvidia-smi)"
    return f"CUDA runtime error: {text}"


def require_gpu() -> None:
    """Raise NoGpuError with the reason unless a CUDA GPU is usable."""
    ok, reason = gpu_status()
    if not ok:
        raise NoGpuError(f"no CUDA GPU is visible: {reason}")
