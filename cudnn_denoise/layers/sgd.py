"""SGD over the flat parameter buffer: one cublasSaxpy, w <- w + (-lr) * g."""

from __future__ import annotations

from ..bindings.cdata import float_ptr, host_float


def sgd_step(ctx, params, grads, lr: float) -> None:
    """params -= lr * grads, both 1-D float32 CuPy arrays of one length: cublasSaxpy_v2."""
    ctx.cublas.cublasSaxpy_v2(ctx.cublas_handle.ptr, params.size, host_float(-lr), float_ptr(grads), 1,
                              float_ptr(params), 1)
