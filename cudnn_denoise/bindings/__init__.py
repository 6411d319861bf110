"""The raw cuDNN, cuBLAS, NCCL and CUDA runtime C APIs through cffi (ABI mode), opened on first use.

    from cudnn_denoise.bindings import ffi, cudnn, cublas
    cudnn.cudnnGetVersion()            # the C function, by its manual name
    cudnn.path, cublas.path            # where each library was loaded from
    from cudnn_denoise.bindings import nccl   # only runs over several processes need it

`cudnn`, `cublas` and `nccl` are CheckedLibrary objects: status-returning functions raise CudnnError /
CublasError / NcclError (see errors.py), `.lib` is the raw cffi library. NCCL is opened on its own
(load_nccl), so single-process training works without it; the CUDA runtime (load_cudart) only for
the Fortran port's link flags and the tests, since CuPy owns memory and streams. Library search and
version checks are
in _load.py; handles and descriptors in handles.py and descriptors.py.
"""

from __future__ import annotations

import functools
import logging

from . import _load
from ._ffi import ffi
from .errors import CublasError, CudaError, CudnnError, NcclError
from .library import CheckedLibrary

__all__ = ["ffi", "cudnn", "cublas", "nccl", "CudnnError", "CublasError", "NcclError", "CudaError", "load",
           "load_nccl", "load_cudart", "versions"]

log = logging.getLogger(__name__)


@functools.cache
def load() -> tuple[CheckedLibrary, CheckedLibrary]:
    """Open cuBLAS then cuDNN (once), check their versions against each other and CuPy."""
    cupy_major = _load.cupy_cuda_major()
    cublas_opened = _load.open_library(ffi, _load.CUBLAS, wanted_major=cupy_major)
    cudnn_opened = _load.open_library(ffi, _load.CUDNN)
    _load.check_versions(
        cudnn_version=cudnn_opened.lib.cudnnGetVersion(),
        cudnn_cudart=cudnn_opened.lib.cudnnGetCudartVersion(),
        cublas_cudart=cublas_opened.lib.cublasGetCudartVersion(),
        cupy_major=cupy_major,
        cudnn_path=cudnn_opened.path,
        cublas_path=cublas_opened.path,
    )
    log.debug("cuDNN from %s, cuBLAS from %s", cudnn_opened.path, cublas_opened.path)
    return (CheckedLibrary(cudnn_opened.lib, cudnn_opened.path, "cuDNN"),
            CheckedLibrary(cublas_opened.lib, cublas_opened.path, "cuBLAS"))


@functools.cache
def load_nccl() -> CheckedLibrary:
    """Open NCCL (once): the env var CUDNN_DENOISE_NCCL, the nvidia-nccl wheels, the system loader."""
    opened = _load.open_library(ffi, _load.NCCL)
    log.debug("NCCL from %s", opened.path)
    return CheckedLibrary(opened.lib, opened.path, "NCCL")


@functools.cache
def load_cudart() -> CheckedLibrary:
    """Open the CUDA runtime (once), of the CUDA major that cuBLAS is built for."""
    cublas_lib = load()[1]
    opened = _load.open_library(ffi, _load.CUDART, wanted_major=cublas_lib.cublasGetCudartVersion() // 1000)
    log.debug("CUDA runtime from %s", opened.path)
    return CheckedLibrary(opened.lib, opened.path, "CUDA runtime")


def nccl_version(library: CheckedLibrary) -> int:
    """ncclGetVersion: NCCL_VERSION_CODE of the loaded library (2.30.7 -> 23007)."""
    value = ffi.new("int *")
    library.ncclGetVersion(value)
    return value[0]


def versions() -> dict[str, object]:
    """Versions and paths of what was loaded, for logs and benchmark tables."""
    cudnn_lib, cublas_lib = load()
    value = ffi.new("int *")
    parts = []
    for prop in ("MAJOR_VERSION", "MINOR_VERSION", "PATCH_LEVEL"):
        cublas_lib.cublasGetProperty(getattr(cublas_lib.lib, prop), value)
        parts.append(str(value[0]))
    return {
        "cudnn": cudnn_lib.cudnnGetVersion(),
        "cudnn_cudart": cudnn_lib.cudnnGetCudartVersion(),
        "cudnn_path": cudnn_lib.path,
        "cublas": ".".join(parts),
        "cublas_cudart": cublas_lib.cublasGetCudartVersion(),
        "cublas_path": cublas_lib.path,
    }


def __getattr__(name: str):
    # PEP 562: `cudnn` and `cublas` open the libraries the first time they are asked for.
    if name == "cudnn":
        return load()[0]
    if name == "cublas":
        return load()[1]
    if name == "nccl":
        return load_nccl()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
