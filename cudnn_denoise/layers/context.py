"""The cuDNN and cuBLAS handles, the CUDA stream and the workspace that one model's calls share.

CuPy owns the stream and the memory; both handles are bound to the stream, so every call of a
training step is queued on it in order, and nothing synchronises the host until a value is read.
"""

from __future__ import annotations

import cupy

from ..bindings import load
from ..bindings.cdata import ONE, device_ptr
from ..bindings.descriptors import TensorDescriptor
from ..bindings.handles import CublasHandle, CudnnHandle
from .algorithm_cache import AlgorithmCache, default_path
from .precision import BFLOAT16, FLOAT, Convert


class Context:
    """Handles on one stream plus a workspace that grows to the largest request."""

    def __init__(self, stream: cupy.cuda.Stream | None = None, algorithm_cache: bool = True):
        self.stream = stream if stream is not None else cupy.cuda.Stream(non_blocking=True)
        self.algorithm_cache = AlgorithmCache(default_path()) if algorithm_cache else None
        self.gpu_name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"].decode()
        self.cudnn_handle = CudnnHandle(self.stream)
        self.cublas_handle = CublasHandle(self.stream)
        self.cudnn, self.cublas = load()
        self.workspace = cupy.empty(0, dtype=cupy.uint8)
        self._ones = cupy.empty(0, dtype=cupy.float32)
        self._ones16 = cupy.empty(0, dtype=cupy.uint16)  # BF16 storage

    def reserve_workspace(self, nbytes: int):
        """The shared workspace, grown (never shrunk) to at least nbytes."""
        if nbytes > self.workspace.nbytes:
            with self.stream:
                self.workspace = cupy.empty(nbytes, dtype=cupy.uint8)
        return self.workspace

    def ones(self, count: int, dtype: str = FLOAT):
        """A device vector of at least `count` ones (grown, never shrunk): FLOAT, set by
        cudnnSetTensor, or BFLOAT16 (uint16 storage), converted from those by cudnnTransformTensor."""
        if count > self._ones.size:
            with self.stream:
                self._ones = cupy.empty(count, dtype=cupy.float32)
            with TensorDescriptor() as desc:
                desc.set_4d(self.cudnn.CUDNN_TENSOR_NCHW, self.cudnn.CUDNN_DATA_FLOAT, 1, 1, 1, count)
                self.cudnn.cudnnSetTensor(self.cudnn_handle.ptr, desc.ptr, device_ptr(self._ones), ONE)
        if dtype == FLOAT:
            return self._ones
        if count > self._ones16.size:
            with self.stream:
                self._ones16 = cupy.empty(count, dtype=cupy.uint16)
            convert = Convert(self, (1, count, 1, 1), FLOAT, BFLOAT16)
            convert(self._ones, self._ones16)
            convert.close()
        return self._ones16

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self.cudnn_handle.close()
        self.cublas_handle.close()
        self.workspace = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
