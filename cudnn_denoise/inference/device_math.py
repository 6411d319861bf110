"""A micrograph's arithmetic around the network on the GPU, in cuDNN calls: its moments, the
intensity maps and the previews' block means (frame_math.HostMath is the same on the CPU).

So that no CPU thread touches a frame's pixels but to read and write them (on 16 cores the CPU's
float64 statistics, maps and header statistics of a 4096 x 4096 frame had cost more than the
network), and no kernel is compiled at run time:
  moments   cudnnTransformTensor to DOUBLE (alpha, beta float); cudnnReduceTensor MIN, MAX and AVG; cudnnOpTensor
            ADD with alpha2 = -1 and the mean as a broadcast 1x1x1x1 B (the deviations);
            cudnnReduceTensor NORM2 of them, so std = NORM2 / sqrt(count); one 32-byte copy back
  affine    cudnnOpTensor ADD of the shift (a 1x1x1x1 device scalar set by cudnnSetTensor),
            cudnnScaleTensor, cudnnOpTensor ADD of the offset: FLOAT, three roundings, as NumPy's
  block means  cudnnPoolingForward, AVERAGE_COUNT_INCLUDE_PADDING, factor x factor windows and
            strides, no padding (the rows and columns left over are dropped), FLOAT
Everything runs on the model's stream, in order, with the network's calls.
"""

from __future__ import annotations

import math

import cupy

from ..bindings import ffi, load
from ..bindings.cdata import ONE, ZERO, device_ptr, host_double, host_float
from ..bindings.descriptors import (
    OpTensorDescriptor,
    PoolingDescriptor,
    ReduceTensorDescriptor,
    TensorDescriptor,
)
from ..bindings.handles import CudnnHandle
from ..micrographs.moments import Moments
from .intensity import Affine

D_ONE, D_ZERO, D_MINUS_ONE = host_double(1.0), host_double(0.0), host_double(-1.0)
REDUCTIONS = ("MIN", "MAX", "AVG", "NORM2")  # the order of the results vector


class DeviceMath:
    """The per-frame calls on `stream`; descriptors and scratch kept per frame shape."""

    def __init__(self, stream: cupy.cuda.Stream):
        self.stream = stream
        self.cudnn = cudnn = load()[0]
        self.handle = CudnnHandle(stream)
        nan = cudnn.CUDNN_PROPAGATE_NAN
        self._add = OpTensorDescriptor().set(cudnn.CUDNN_OP_TENSOR_ADD, cudnn.CUDNN_DATA_FLOAT, nan)
        self._add_double = OpTensorDescriptor().set(cudnn.CUDNN_OP_TENSOR_ADD, cudnn.CUDNN_DATA_DOUBLE, nan)
        self._reduce = {name: ReduceTensorDescriptor().set(
            getattr(cudnn, f"CUDNN_REDUCE_TENSOR_{name}"), cudnn.CUDNN_DATA_DOUBLE, nan,
            cudnn.CUDNN_REDUCE_TENSOR_NO_INDICES, cudnn.CUDNN_32BIT_INDICES) for name in REDUCTIONS}
        self._scalar = _descriptor(cudnn, cudnn.CUDNN_DATA_FLOAT, 1, 1)
        self._scalar_double = _descriptor(cudnn, cudnn.CUDNN_DATA_DOUBLE, 1, 1)
        with stream:
            self._terms = cupy.empty(2, cupy.float32)  # the affine map's shift and offset
            self._results = cupy.empty(len(REDUCTIONS), cupy.float64)
        self._shapes: dict[tuple[int, int], _Shape] = {}
        self._pools: dict[tuple[tuple[int, int], int], tuple[PoolingDescriptor, TensorDescriptor]] = {}

    def upload(self, frame) -> cupy.ndarray:
        """The host frame (pinned memory: an asynchronous copy) as a device array."""
        with self.stream:
            x = cupy.empty(frame.shape, cupy.float32)
            x.set(frame, stream=self.stream)
        return x

    def download(self, y: cupy.ndarray, out) -> None:
        """y into the host array `out` (waits for the copy)."""
        y.get(stream=self.stream, out=out)

    def to_host(self, y: cupy.ndarray):
        """A NumPy copy of a (small) device array, such as block means."""
        return y.get(stream=self.stream)

    def moments(self, x: cupy.ndarray) -> Moments:
        """count, min, max, mean, std of a device frame, in float64 (waits for the GPU)."""
        cudnn, shape = self.cudnn, self._shape(x.shape)
        h = self.handle.ptr
        # alpha and beta of a FLOAT -> DOUBLE transform are float, as for its source (double ones read
        # as float are 0: the H200 gave a copy of zeros)
        cudnn.cudnnTransformTensor(h, ONE, shape.frame.ptr, device_ptr(x), ZERO, shape.double.ptr,
                                   device_ptr(shape.wide))
        for index, name in enumerate(REDUCTIONS[:3]):
            self._reduce_into(name, shape, shape.wide, index)
        cudnn.cudnnOpTensor(h, self._add_double.ptr, D_ONE, shape.double.ptr, device_ptr(shape.wide),
                            D_MINUS_ONE, self._scalar_double.ptr, device_ptr(self._results[2:3]), D_ZERO,
                            shape.double.ptr, device_ptr(shape.deviations))
        self._reduce_into("NORM2", shape, shape.deviations, 3)
        low, high, mean, norm = (float(v) for v in self._results.get(stream=self.stream))
        count = x.size
        return Moments(count, low, high, mean, norm / math.sqrt(count))

    def affine(self, x: cupy.ndarray, f: Affine) -> cupy.ndarray:
        """(x + f.shift) * f.scale + f.offset, a new device array."""
        cudnn, shape, h = self.cudnn, self._shape(x.shape), self.handle.ptr
        shift, offset = self._terms[0:1], self._terms[1:2]
        cudnn.cudnnSetTensor(h, self._scalar.ptr, device_ptr(shift), host_float(f.shift))
        cudnn.cudnnSetTensor(h, self._scalar.ptr, device_ptr(offset), host_float(f.offset))
        with self.stream:
            y = cupy.empty_like(x)
        cudnn.cudnnOpTensor(h, self._add.ptr, ONE, shape.frame.ptr, device_ptr(x), ONE, self._scalar.ptr,
                            device_ptr(shift), ZERO, shape.frame.ptr, device_ptr(y))
        cudnn.cudnnScaleTensor(h, shape.frame.ptr, device_ptr(y), host_float(f.scale))
        cudnn.cudnnOpTensor(h, self._add.ptr, ONE, shape.frame.ptr, device_ptr(y), ONE, self._scalar.ptr,
                            device_ptr(offset), ZERO, shape.frame.ptr, device_ptr(y))
        return y

    def block_means(self, x: cupy.ndarray, factor: int) -> cupy.ndarray:
        """The means of factor x factor blocks (rows and columns left over dropped), on the device."""
        height, width = x.shape
        key = (x.shape, factor)
        if key not in self._pools:
            pool = PoolingDescriptor().set_2d(self.cudnn.CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING,
                                              self.cudnn.CUDNN_PROPAGATE_NAN, (factor, factor), (0, 0),
                                              (factor, factor))
            self._pools[key] = (pool, _descriptor(self.cudnn, self.cudnn.CUDNN_DATA_FLOAT,
                                                  height // factor, width // factor))
        pool, out_desc = self._pools[key]
        with self.stream:
            y = cupy.empty((height // factor, width // factor), cupy.float32)
        self.cudnn.cudnnPoolingForward(self.handle.ptr, pool.ptr, ONE, self._shape(x.shape).frame.ptr,
                                       device_ptr(x), ZERO, out_desc.ptr, device_ptr(y))
        return y

    def _reduce_into(self, name: str, shape: _Shape, source, index: int) -> None:
        self.cudnn.cudnnReduceTensor(
            self.handle.ptr, self._reduce[name].ptr, ffi.NULL, 0, device_ptr(shape.workspace),
            shape.workspace.nbytes, D_ONE, shape.double.ptr, device_ptr(source), D_ZERO,
            self._scalar_double.ptr, device_ptr(self._results[index:index + 1]))

    def _shape(self, frame_shape: tuple[int, int]) -> _Shape:
        if frame_shape not in self._shapes:
            self._shapes.clear()  # one shape at a time: a new size frees the last one's scratch
            self._shapes[frame_shape] = _Shape(self, *frame_shape)
        return self._shapes[frame_shape]

    def close(self) -> None:
        for shape in self._shapes.values():
            shape.close()
        self._shapes.clear()
        for pool, desc in self._pools.values():
            pool.close()
            desc.close()
        self._pools.clear()
        for desc in (self._add, self._add_double, self._scalar, self._scalar_double, *self._reduce.values()):
            desc.close()
        self.handle.close()


class _Shape:
    """One frame shape's descriptors (FLOAT and DOUBLE) and scratch: the float64 copy, its
    deviations from the mean, and the reductions' workspace."""

    def __init__(self, math_: DeviceMath, height: int, width: int):
        cudnn = math_.cudnn
        self.frame = _descriptor(cudnn, cudnn.CUDNN_DATA_FLOAT, height, width)
        self.double = _descriptor(cudnn, cudnn.CUDNN_DATA_DOUBLE, height, width)
        size = 0
        for reduce in math_._reduce.values():
            size = max(size, _workspace_size(math_, reduce, self.double))
        with math_.stream:
            self.wide = cupy.empty((height, width), cupy.float64)
            self.deviations = cupy.empty((height, width), cupy.float64)
            self.workspace = cupy.empty(max(size, 1), cupy.uint8)

    def close(self) -> None:
        self.frame.close()
        self.double.close()


def _workspace_size(math_: DeviceMath, reduce: ReduceTensorDescriptor, source: TensorDescriptor) -> int:
    size = ffi.new("size_t *")
    math_.cudnn.cudnnGetReductionWorkspaceSize(math_.handle.ptr, reduce.ptr, source.ptr,
                                               math_._scalar_double.ptr, size)
    return int(size[0])


def _descriptor(cudnn, dtype: int, height: int, width: int) -> TensorDescriptor:
    return TensorDescriptor().set_4d(cudnn.CUDNN_TENSOR_NCHW, dtype, 1, 1, height, width)
