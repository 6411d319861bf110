"""ReLU through cudnnActivationForward / cudnnActivationBackward, in place where asked.

Backward needs only the output: dx = dy * (y > 0), as PyTorch's threshold_backward. cuDNN's call
also takes x; we pass y there too, which gives the same mask (y > 0 exactly where x > 0), so the
pre-activation need not be kept.
"""

from __future__ import annotations

from ..bindings.cdata import ONE, ZERO, device_ptr
from ..bindings.descriptors import ActivationDescriptor, TensorDescriptor


class ReLU:
    """ReLU on one NCHW float32 shape."""

    def __init__(self, ctx, n: int, c: int, h: int, w: int):
        self.ctx = ctx
        cudnn = ctx.cudnn
        # NaN propagates, as torch.relu does.
        self.act_desc = ActivationDescriptor().set(cudnn.CUDNN_ACTIVATION_RELU, cudnn.CUDNN_PROPAGATE_NAN, 0.0)
        self.desc = TensorDescriptor().set_4d(cudnn.CUDNN_TENSOR_NCHW, cudnn.CUDNN_DATA_FLOAT, n, c, h, w)

    def forward(self, x, y) -> None:
        """y = max(x, 0): cudnnActivationForward; y may be x (in place)."""
        ctx = self.ctx
        ctx.cudnn.cudnnActivationForward(ctx.cudnn_handle.ptr, self.act_desc.ptr, ONE, self.desc.ptr,
                                         device_ptr(x), ZERO, self.desc.ptr, device_ptr(y))

    def backward(self, y, dy, dx) -> None:
        """dx = dy * (y > 0): cudnnActivationBackward with x := y; dx may be dy (in place)."""
        ctx = self.ctx
        py = device_ptr(y)
        ctx.cudnn.cudnnActivationBackward(ctx.cudnn_handle.ptr, self.act_desc.ptr, ONE,
                                          self.desc.ptr, py, self.desc.ptr, device_ptr(dy),
                                          self.desc.ptr, py, ZERO, self.desc.ptr, device_ptr(dx))
