"""A loaded library whose functions check their status: `cudnn.cudnnConvolutionForward(...)`.

Attribute access gives the C function by its manual name. Functions that return a status
(cudnnStatus_t, cublasStatus_t, ncclResult_t, cudaError_t) raise CudnnError / CublasError / NcclError /
CudaError on failure and return None;
others (cudnnGetVersion, cudnnGetErrorString) return their value. Enum constants pass through.
`.lib` is the raw cffi library, `.path` where it was loaded from. Every checked call passes
through one closure, the place where a profiler or a call trace hooks in (set_hook).
"""

from __future__ import annotations

import threading

from ._ffi import ffi
from .errors import check_cublas, check_cuda, check_cudnn, check_nccl

_hook = None  # a callable (name, args) -> context manager, wrapped around every checked call
_hook_thread = None  # ... made by this thread (threading.get_ident())


def set_hook(hook) -> object:
    """Install `hook` (None removes it) around every checked call made by the calling thread;
    returns the previous one. Calls from other threads (the data reader's workers, which widen
    float16 batches with cuDNN) stay outside a trace or profile of the training step."""
    global _hook, _hook_thread
    previous, _hook, _hook_thread = _hook, hook, threading.get_ident()
    return previous


_STATUS_CHECKS = {
    ffi.typeof("cudnnStatus_t"): check_cudnn,
    ffi.typeof("cublasStatus_t"): check_cublas,
    ffi.typeof("ncclResult_t"): check_nccl,
    ffi.typeof("cudaError_t"): check_cuda,
}


class CheckedLibrary:
    """The C API as it is, with every status checked."""

    def __init__(self, lib, path: str, name: str):
        self.lib = lib
        self.path = path
        self.name = name
        self._functions: dict[str, object] = {}

    def __getattr__(self, attr: str):
        if attr.startswith("_"):
            raise AttributeError(attr)
        cached = self._functions.get(attr)
        if cached is not None:
            return cached
        value = getattr(self.lib, attr)  # AttributeError names a missing symbol
        if not isinstance(value, ffi.CData):
            return value  # an enum constant
        check = _STATUS_CHECKS.get(ffi.typeof(value).result)
        if check is None:
            self._functions[attr] = value
            return value

        def call(*args, _fn=value, _name=attr, _check=check, _lib=self.lib):
            if _hook is None or threading.get_ident() != _hook_thread:
                _check(_lib, _name, _fn(*args))
                return
            with _hook(_name, args):
                _check(_lib, _name, _fn(*args))

        call.__name__ = call.__qualname__ = attr
        self._functions[attr] = call
        return call

    def __repr__(self) -> str:
        return f"<{self.name} from {self.path}>"
