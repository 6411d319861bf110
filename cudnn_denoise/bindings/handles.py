"""cuDNN and cuBLAS handles bound to a CuPy stream, released by close() or `with`.

A handle is created on the current device and set to one stream; every compute call made with it
is queued on that stream. Release as every owned object (owned.py).
"""

from __future__ import annotations

from . import load
from ._ffi import ffi
from .device import require_gpu
from .owned import Owned


def _stream_ptr(stream) -> object:
    """cudaStream_t of a CuPy stream (None: the current stream)."""
    import cupy

    stream = stream if stream is not None else cupy.cuda.get_current_stream()
    return ffi.cast("cudaStream_t", stream.ptr)


class _Handle(Owned):
    """Common lifetime of a library handle: create, set stream, destroy once."""

    _ctype: str
    _create: str
    _destroy: str
    _set_stream: str
    _library_index: int  # 0: cuDNN, 1: cuBLAS in load()'s tuple

    def __init__(self, stream=None):
        require_gpu()
        self.library = load()[self._library_index]
        out = ffi.new(f"{self._ctype} *")
        getattr(self.library, self._create)(out)
        self.ptr = out[0]
        self.stream = None
        self.set_stream(stream)

    def set_stream(self, stream) -> None:
        """Queue this handle's calls on `stream` (a cupy.cuda.Stream; None: the current one)."""
        getattr(self.library, self._set_stream)(self.ptr, _stream_ptr(stream))
        self.stream = stream

    def _release(self, ptr) -> None:
        getattr(self.library, self._destroy)(ptr)


class CudnnHandle(_Handle):
    """cudnnHandle_t: cudnnCreate, cudnnSetStream, cudnnDestroy."""

    _ctype = "cudnnHandle_t"
    _create = "cudnnCreate"
    _destroy = "cudnnDestroy"
    _set_stream = "cudnnSetStream"
    _library_index = 0


class CublasHandle(_Handle):
    """cublasHandle_t: cublasCreate_v2, cublasSetStream_v2, cublasDestroy_v2; pointer mode settable."""

    _ctype = "cublasHandle_t"
    _create = "cublasCreate_v2"
    _destroy = "cublasDestroy_v2"
    _set_stream = "cublasSetStream_v2"
    _library_index = 1

    def set_pointer_mode(self, device: bool) -> None:
        """Scalars (alpha, results) in device memory (True) or host memory (False, the default)."""
        lib = self.library
        mode = lib.CUBLAS_POINTER_MODE_DEVICE if device else lib.CUBLAS_POINTER_MODE_HOST
        lib.cublasSetPointerMode_v2(self.ptr, mode)
