"""cuDNN descriptors: tensor, filter, convolution, activation, op-tensor, reduce-tensor and pooling;
each re-settable.

Each object owns one descriptor from cudnnCreate*Descriptor to cudnnDestroy*Descriptor (close(),
`with`, or the __del__ backstop: owned.py). Setters mirror the C calls and keep the manual's argument order;
`ptr` is the raw descriptor to pass to compute calls. None of these needs a GPU.
"""

from __future__ import annotations

from . import load
from ._ffi import ffi
from .owned import Owned


def _cudnn():
    return load()[0]


class _Descriptor(Owned):
    """Create on construction, destroy once."""

    _ctype: str
    _kind: str  # "Tensor" -> cudnnCreateTensorDescriptor / cudnnDestroyTensorDescriptor

    def __init__(self):
        self.cudnn = _cudnn()
        out = ffi.new(f"{self._ctype} *")
        getattr(self.cudnn, f"cudnnCreate{self._kind}Descriptor")(out)
        self.ptr = out[0]

    def _release(self, ptr) -> None:
        getattr(self.cudnn, f"cudnnDestroy{self._kind}Descriptor")(ptr)


class TensorDescriptor(_Descriptor):
    """cudnnTensorDescriptor_t."""

    _ctype = "cudnnTensorDescriptor_t"
    _kind = "Tensor"

    def set_4d(self, fmt: int, dtype: int, n: int, c: int, h: int, w: int) -> "TensorDescriptor":
        """cudnnSetTensor4dDescriptor(format, dataType, n, c, h, w)."""
        self.cudnn.cudnnSetTensor4dDescriptor(self.ptr, fmt, dtype, n, c, h, w)
        return self

    def set_4d_ex(self, dtype: int, n: int, c: int, h: int, w: int,
                  n_stride: int, c_stride: int, h_stride: int, w_stride: int) -> "TensorDescriptor":
        """cudnnSetTensor4dDescriptorEx: explicit strides in elements."""
        self.cudnn.cudnnSetTensor4dDescriptorEx(self.ptr, dtype, n, c, h, w,
                                                n_stride, c_stride, h_stride, w_stride)
        return self

    def set_nd(self, dtype: int, dims, strides) -> "TensorDescriptor":
        """cudnnSetTensorNdDescriptor(dataType, nbDims, dimA, strideA)."""
        if len(dims) != len(strides):
            raise ValueError(f"dims {tuple(dims)} and strides {tuple(strides)} differ in length")
        self.cudnn.cudnnSetTensorNdDescriptor(self.ptr, dtype, len(dims),
                                              ffi.new("int[]", list(dims)), ffi.new("int[]", list(strides)))
        return self

    def get_4d(self) -> tuple[int, tuple[int, int, int, int], tuple[int, int, int, int]]:
        """cudnnGetTensor4dDescriptor: (dataType, (n, c, h, w), (nStride, cStride, hStride, wStride))."""
        dtype = ffi.new("cudnnDataType_t *")
        v = [ffi.new("int *") for _ in range(8)]
        self.cudnn.cudnnGetTensor4dDescriptor(self.ptr, dtype, *v)
        vals = [p[0] for p in v]
        return dtype[0], tuple(vals[:4]), tuple(vals[4:])


class FilterDescriptor(_Descriptor):
    """cudnnFilterDescriptor_t."""

    _ctype = "cudnnFilterDescriptor_t"
    _kind = "Filter"

    def set_4d(self, dtype: int, fmt: int, k: int, c: int, h: int, w: int) -> "FilterDescriptor":
        """cudnnSetFilter4dDescriptor(dataType, format, k, c, h, w): note the manual's order."""
        self.cudnn.cudnnSetFilter4dDescriptor(self.ptr, dtype, fmt, k, c, h, w)
        return self

    def get_4d(self) -> tuple[int, int, tuple[int, int, int, int]]:
        """cudnnGetFilter4dDescriptor: (dataType, format, (k, c, h, w))."""
        dtype, fmt = ffi.new("cudnnDataType_t *"), ffi.new("cudnnTensorFormat_t *")
        v = [ffi.new("int *") for _ in range(4)]
        self.cudnn.cudnnGetFilter4dDescriptor(self.ptr, dtype, fmt, *v)
        return dtype[0], fmt[0], tuple(p[0] for p in v)


class ConvolutionDescriptor(_Descriptor):
    """cudnnConvolutionDescriptor_t."""

    _ctype = "cudnnConvolutionDescriptor_t"
    _kind = "Convolution"

    def set_2d(self, pad_h: int, pad_w: int, u: int, v: int, dilation_h: int, dilation_w: int,
               mode: int, compute_type: int) -> "ConvolutionDescriptor":
        """cudnnSetConvolution2dDescriptor."""
        self.cudnn.cudnnSetConvolution2dDescriptor(self.ptr, pad_h, pad_w, u, v, dilation_h, dilation_w,
                                                   mode, compute_type)
        return self

    def set_math_type(self, math_type: int) -> "ConvolutionDescriptor":
        """cudnnSetConvolutionMathType: CUDNN_DEFAULT_MATH (TF32 allowed) or CUDNN_FMA_MATH (strict)."""
        self.cudnn.cudnnSetConvolutionMathType(self.ptr, math_type)
        return self

    def math_type(self) -> int:
        out = ffi.new("cudnnMathType_t *")
        self.cudnn.cudnnGetConvolutionMathType(self.ptr, out)
        return out[0]

    def set_group_count(self, groups: int) -> "ConvolutionDescriptor":
        """cudnnSetConvolutionGroupCount."""
        self.cudnn.cudnnSetConvolutionGroupCount(self.ptr, groups)
        return self

    def get_2d(self) -> dict[str, int]:
        """cudnnGetConvolution2dDescriptor as a dict of its arguments."""
        names = ("pad_h", "pad_w", "u", "v", "dilation_h", "dilation_w")
        ints = [ffi.new("int *") for _ in names]
        mode, compute = ffi.new("cudnnConvolutionMode_t *"), ffi.new("cudnnDataType_t *")
        self.cudnn.cudnnGetConvolution2dDescriptor(self.ptr, *ints, mode, compute)
        return {**{n: p[0] for n, p in zip(names, ints)}, "mode": mode[0], "compute_type": compute[0]}

    def forward_output_dim(self, x_desc: TensorDescriptor, w_desc: FilterDescriptor) -> tuple[int, int, int, int]:
        """cudnnGetConvolution2dForwardOutputDim: the (n, c, h, w) of y."""
        v = [ffi.new("int *") for _ in range(4)]
        self.cudnn.cudnnGetConvolution2dForwardOutputDim(self.ptr, x_desc.ptr, w_desc.ptr, *v)
        return tuple(p[0] for p in v)


class ActivationDescriptor(_Descriptor):
    """cudnnActivationDescriptor_t."""

    _ctype = "cudnnActivationDescriptor_t"
    _kind = "Activation"

    def set(self, mode: int, relu_nan_opt: int, coef: float = 0.0) -> "ActivationDescriptor":
        """cudnnSetActivationDescriptor(mode, reluNanOpt, coef)."""
        self.cudnn.cudnnSetActivationDescriptor(self.ptr, mode, relu_nan_opt, coef)
        return self

    def get(self) -> tuple[int, int, float]:
        mode, nan, coef = ffi.new("cudnnActivationMode_t *"), ffi.new("cudnnNanPropagation_t *"), ffi.new("double *")
        self.cudnn.cudnnGetActivationDescriptor(self.ptr, mode, nan, coef)
        return mode[0], nan[0], coef[0]


class OpTensorDescriptor(_Descriptor):
    """cudnnOpTensorDescriptor_t."""

    _ctype = "cudnnOpTensorDescriptor_t"
    _kind = "OpTensor"

    def set(self, op: int, comp_type: int, nan_opt: int) -> "OpTensorDescriptor":
        """cudnnSetOpTensorDescriptor(opTensorOp, opTensorCompType, opTensorNanOpt)."""
        self.cudnn.cudnnSetOpTensorDescriptor(self.ptr, op, comp_type, nan_opt)
        return self


class ReduceTensorDescriptor(_Descriptor):
    """cudnnReduceTensorDescriptor_t."""

    _ctype = "cudnnReduceTensorDescriptor_t"
    _kind = "ReduceTensor"

    def set(self, op: int, comp_type: int, nan_opt: int, indices: int, indices_type: int) -> "ReduceTensorDescriptor":
        """cudnnSetReduceTensorDescriptor(reduceTensorOp, reduceTensorCompType, reduceTensorNanOpt,
        reduceTensorIndices, reduceTensorIndicesType)."""
        self.cudnn.cudnnSetReduceTensorDescriptor(self.ptr, op, comp_type, nan_opt, indices, indices_type)
        return self


class PoolingDescriptor(_Descriptor):
    """cudnnPoolingDescriptor_t."""

    _ctype = "cudnnPoolingDescriptor_t"
    _kind = "Pooling"

    def set_2d(self, mode: int, nan_opt: int, window: tuple[int, int], padding: tuple[int, int],
               stride: tuple[int, int]) -> "PoolingDescriptor":
        """cudnnSetPooling2dDescriptor(mode, maxpoolingNanOpt, windowHeight, windowWidth,
        verticalPadding, horizontalPadding, verticalStride, horizontalStride)."""
        self.cudnn.cudnnSetPooling2dDescriptor(self.ptr, mode, nan_opt, *window, *padding, *stride)
        return self
