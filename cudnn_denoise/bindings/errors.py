"""CudnnError, CublasError, NcclError and CudaError, and the one check each library's status goes through."""

from __future__ import annotations

from ._ffi import ffi

# Status value -> name, straight from the declared enums (so every declared status has a name).
CUDNN_STATUS_NAMES: dict[int, str] = dict(ffi.typeof("cudnnStatus_t").elements)
CUBLAS_STATUS_NAMES: dict[int, str] = dict(ffi.typeof("cublasStatus_t").elements)
NCCL_RESULT_NAMES: dict[int, str] = dict(ffi.typeof("ncclResult_t").elements)
CUDA_ERROR_NAMES: dict[int, str] = dict(ffi.typeof("cudaError_t").elements)


class _StatusError(RuntimeError):
    """A call returned a failure status: the function, the status and its name, the library's words."""

    _names: dict[int, str]
    _enum: str

    def __init__(self, function: str, status: int, message: str):
        self.function = function
        self.status = status
        self.status_name = self._names.get(status, f"{self._enum}({status})")
        self.message = message
        super().__init__(f"{function} failed: {self.status_name} ({status}): {message}")


class CudnnError(_StatusError):
    """A cuDNN call returned a status other than CUDNN_STATUS_SUCCESS."""

    _names, _enum = CUDNN_STATUS_NAMES, "cudnnStatus_t"


class CublasError(_StatusError):
    """A cuBLAS call returned a status other than CUBLAS_STATUS_SUCCESS."""

    _names, _enum = CUBLAS_STATUS_NAMES, "cublasStatus_t"


class NcclError(_StatusError):
    """An NCCL call returned a result other than ncclSuccess."""

    _names, _enum = NCCL_RESULT_NAMES, "ncclResult_t"


class CudaError(_StatusError):
    """A CUDA runtime call returned an error other than cudaSuccess."""

    _names, _enum = CUDA_ERROR_NAMES, "cudaError_t"


def cudnn_message(lib, status: int) -> str:
    """cuDNN's own words for a failure: cudnnGetErrorString, then cudnnGetLastErrorString."""
    text = ffi.string(lib.cudnnGetErrorString(status)).decode(errors="replace")
    buf = ffi.new("char[]", 1024)
    lib.cudnnGetLastErrorString(buf, len(buf))
    last = ffi.string(buf).decode(errors="replace").strip()
    return f"{text}; {last}" if last else text


def cublas_message(lib, status: int) -> str:
    """cuBLAS's own words for a status."""
    return ffi.string(lib.cublasGetStatusString(status)).decode(errors="replace")


def check_cudnn(lib, function: str, status: int) -> None:
    """Raise CudnnError unless status is CUDNN_STATUS_SUCCESS."""
    if status != 0:
        raise CudnnError(function, status, cudnn_message(lib, status))


def check_cublas(lib, function: str, status: int) -> None:
    """Raise CublasError unless status is CUBLAS_STATUS_SUCCESS."""
    if status != 0:
        raise CublasError(function, status, cublas_message(lib, status))


def nccl_message(lib, status: int) -> str:
    """NCCL's own words for a result."""
    return ffi.string(lib.ncclGetErrorString(status)).decode(errors="replace")


def check_nccl(lib, function: str, status: int) -> None:
    """Raise NcclError unless status is ncclSuccess."""
    if status != 0:
        raise NcclError(function, status, nccl_message(lib, status))


def check_cuda(lib, function: str, status: int) -> None:
    """Raise CudaError unless status is cudaSuccess; the runtime's name and words for it."""
    if status != 0:
        name = ffi.string(lib.cudaGetErrorName(status)).decode(errors="replace")
        text = ffi.string(lib.cudaGetErrorString(status)).decode(errors="replace")
        raise CudaError(function, status, f"{name}: {text}")
