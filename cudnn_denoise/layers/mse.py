"""MSE loss, the mean over every element, and its gradient, with cuBLAS level-1 calls only.

    diff = y - target                     cublasScopy, cublasSaxpy(alpha = -1)
    sum  = diff . diff                    cublasSdot, result left in device memory (no host sync)
    dy   = (2 / numel) * diff             cublasSscal, in place: diff becomes dy
    loss = sum / numel                    on the host, once the sum is read

A Fortran port makes the same four calls; no custom kernel is needed.
"""

from __future__ import annotations

from ..bindings.cdata import float_ptr, host_float


class MSELoss:
    """Loss and gradient for tensors of `numel` float32 elements."""

    def __init__(self, ctx, numel: int):
        self.ctx = ctx
        self.numel = numel
        self._minus_one = host_float(-1.0)
        self._two_over_n = host_float(2.0 / numel)

    def forward_backward(self, y, target, dy, sum_out) -> None:
        """dy = 2 (y - target) / numel; sum_out (a 1-element device float32) = sum of (y - target)^2."""
        ctx, n = self.ctx, self.numel
        handle = ctx.cublas_handle
        blas = ctx.cublas
        blas.cublasScopy_v2(handle.ptr, n, float_ptr(y), 1, float_ptr(dy), 1)
        blas.cublasSaxpy_v2(handle.ptr, n, self._minus_one, float_ptr(target), 1, float_ptr(dy), 1)
        handle.set_pointer_mode(device=True)  # the dot product's result stays on the device
        try:
            blas.cublasSdot_v2(handle.ptr, n, float_ptr(dy), 1, float_ptr(dy), 1, float_ptr(sum_out))
        finally:
            handle.set_pointer_mode(device=False)
        blas.cublasSscal_v2(handle.ptr, n, self._two_over_n, float_ptr(dy), 1)
