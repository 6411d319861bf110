"""Conv2d: a 3x3, stride 1, same-padding convolution with bias on fixed NCHW float32 shapes.

Descriptors are made once per shape; one convolution descriptor per direction, because each
direction's chosen algorithm brings its own math type. Buffers are CuPy arrays owned by the model.
Shapes: x (N, C, H, W), w (K, C, 3, 3), b (K,), y dy (N, K, H, W), dx like x.
"""

from __future__ import annotations

import cupy

from ..bindings import ffi
from ..bindings.cdata import ONE, ZERO, device_ptr, float_ptr
from ..bindings.descriptors import ConvolutionDescriptor, FilterDescriptor, TensorDescriptor
from ..params import ConvSpec
from .algorithms import DIRECTIONS, Choice, Policy, choose


class Conv2d:
    """One convolution layer's descriptors, algorithms and calls."""

    def __init__(self, ctx, spec: ConvSpec, n: int, h: int, w: int, *, strict_fp32: bool):
        self.ctx, self.spec = ctx, spec
        cudnn = ctx.cudnn
        nchw, f32 = cudnn.CUDNN_TENSOR_NCHW, cudnn.CUDNN_DATA_FLOAT
        self.x_desc = TensorDescriptor().set_4d(nchw, f32, n, spec.in_channels, h, w)
        self.y_desc = TensorDescriptor().set_4d(nchw, f32, n, spec.out_channels, h, w)
        self.w_desc = FilterDescriptor().set_4d(f32, nchw, spec.out_channels, spec.in_channels,
                                                spec.kernel, spec.kernel)
        self.b_desc = TensorDescriptor().set_4d(nchw, f32, 1, spec.out_channels, 1, 1)
        math = cudnn.CUDNN_FMA_MATH if strict_fp32 else cudnn.CUDNN_DEFAULT_MATH
        self.conv_desc = {}
        for direction in DIRECTIONS:
            conv = ConvolutionDescriptor().set_2d(spec.pad, spec.pad, 1, 1, 1, 1,
                                                  cudnn.CUDNN_CROSS_CORRELATION, f32)
            self.conv_desc[direction] = conv.set_math_type(math)
        self.choice: dict[str, Choice] = {}
        self.n, self.hw = n, h * w
        with ctx.stream:
            self.db_per_sample = cupy.empty(n * spec.out_channels, dtype=cupy.float32)  # (N, K) partial sums
        ctx.ones(max(self.hw, n))

    def choose_algorithms(self, policy: Policy, x, w, y, dx) -> None:
        """Choose forward, backward-data (when dx is given) and backward-filter algorithms.

        Find writes into y, dx and a scratch dw, so call it before real data matters. dx is None
        for the first layer: the input needs no gradient.
        """
        dw = cupy.empty(w.shape, dtype=cupy.float32)  # find overwrites its output
        px, pw, py = device_ptr(x), device_ptr(w), device_ptr(y)
        wanted = {
            "forward": ((self.x_desc.ptr, self.w_desc.ptr, self.conv_desc["forward"].ptr, self.y_desc.ptr),
                        (px, pw, py)),
            "backward_filter": ((self.x_desc.ptr, self.y_desc.ptr, self.conv_desc["backward_filter"].ptr,
                                 self.w_desc.ptr), (px, py, device_ptr(dw))),
        }
        if dx is not None:
            wanted["backward_data"] = ((self.w_desc.ptr, self.y_desc.ptr, self.conv_desc["backward_data"].ptr,
                                        self.x_desc.ptr), (pw, py, device_ptr(dx)))
        geometry = f"NCHW x {'x'.join(map(str, x.shape))} w {'x'.join(map(str, w.shape))} pad {self.spec.pad}"
        for name, (descriptors, buffers) in wanted.items():
            choice = choose(self.ctx, DIRECTIONS[name], policy, descriptors, buffers, geometry)
            self.conv_desc[name].set_math_type(choice.math_type)
            self.choice[name] = choice
        self.ctx.reserve_workspace(max(c.workspace for c in self.choice.values()))

    def _workspace(self, direction: str):
        ws = self.ctx.workspace
        return ffi.cast("void *", ws.data.ptr), self.choice[direction].workspace

    def forward(self, x, w, b, y) -> None:
        """y = conv(x, w) + b: cudnnConvolutionForward (beta 0), then cudnnAddTensor (beta 1)."""
        ctx = self.ctx
        ws, ws_size = self._workspace("forward")
        ctx.cudnn.cudnnConvolutionForward(
            ctx.cudnn_handle.ptr, ONE, self.x_desc.ptr, device_ptr(x), self.w_desc.ptr, device_ptr(w),
            self.conv_desc["forward"].ptr, self.choice["forward"].algo, ws, ws_size,
            ZERO, self.y_desc.ptr, device_ptr(y))
        ctx.cudnn.cudnnAddTensor(ctx.cudnn_handle.ptr, ONE, self.b_desc.ptr, device_ptr(b),
                                 ONE, self.y_desc.ptr, device_ptr(y))

    def forward_bias_activation(self, x, w, b, y, activation_desc) -> None:
        """y = act(conv(x, w) + 0 * y + b) in one cudnnConvolutionBiasActivationForward.

        alpha2 = 0 makes z (given as y) drop out; cuDNN still reads its descriptor.
        """
        ctx = self.ctx
        ws, ws_size = self._workspace("forward")
        py = device_ptr(y)
        ctx.cudnn.cudnnConvolutionBiasActivationForward(
            ctx.cudnn_handle.ptr, ONE, self.x_desc.ptr, device_ptr(x), self.w_desc.ptr, device_ptr(w),
            self.conv_desc["forward"].ptr, self.choice["forward"].algo, ws, ws_size,
            ZERO, self.y_desc.ptr, py, self.b_desc.ptr, device_ptr(b), activation_desc.ptr,
            self.y_desc.ptr, py)

    def backward_data(self, w, dy, dx) -> None:
        """dx = conv_transpose(dy, w): cudnnConvolutionBackwardData (beta 0)."""
        ctx = self.ctx
        ws, ws_size = self._workspace("backward_data")
        ctx.cudnn.cudnnConvolutionBackwardData(
            ctx.cudnn_handle.ptr, ONE, self.w_desc.ptr, device_ptr(w), self.y_desc.ptr, device_ptr(dy),
            self.conv_desc["backward_data"].ptr, self.choice["backward_data"].algo, ws, ws_size,
            ZERO, self.x_desc.ptr, device_ptr(dx))

    def backward_filter(self, x, dy, dw) -> None:
        """dw = sum over n, h, w of x (shifted) * dy: cudnnConvolutionBackwardFilter (beta 0)."""
        ctx = self.ctx
        ws, ws_size = self._workspace("backward_filter")
        ctx.cudnn.cudnnConvolutionBackwardFilter(
            ctx.cudnn_handle.ptr, ONE, self.x_desc.ptr, device_ptr(x), self.y_desc.ptr, device_ptr(dy),
            self.conv_desc["backward_filter"].ptr, self.choice["backward_filter"].algo, ws, ws_size,
            ZERO, self.w_desc.ptr, device_ptr(dw))

    def backward_bias(self, dy, db) -> None:
        """db[k] = sum over n, h, w of dy[n, k], as two cublasSgemv_v2 against a vector of ones.

        Column-major views of the NCHW buffer: dy is an (H*W) x (N*K) matrix, so
            s  = dy^T . ones(H*W)    (N*K,)   cublasSgemv(CUBLAS_OP_T), beta 0
            db = S . ones(N)         (K,)     cublasSgemv(CUBLAS_OP_N), S = s as a K x N matrix
        cudnnConvolutionBackwardBias computes the same but took 3.2 ms per layer on an H100
        (4 x 16 x 1024 x 1024), against about 0.1 ms for these two calls (docs/performance.md).
        """
        ctx, k = self.ctx, self.spec.out_channels
        blas, handle, ones = ctx.cublas, ctx.cublas_handle.ptr, float_ptr(ctx.ones(max(self.hw, self.n)))
        s = float_ptr(self.db_per_sample)
        blas.cublasSgemv_v2(handle, blas.CUBLAS_OP_T, self.hw, self.n * k, ONE, float_ptr(dy), self.hw,
                            ones, 1, ZERO, s, 1)
        blas.cublasSgemv_v2(handle, blas.CUBLAS_OP_N, k, self.n, ONE, s, k, ones, 1, ZERO, float_ptr(db), 1)
