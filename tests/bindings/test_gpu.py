"""Bindings on the GPU: handles on a stream, one convolution each way against float64 NumPy, BLAS-1."""

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def conv_nchw(x, w):
    """float64 cross-correlation, stride 1, padding 1: y[n,k] = sum_c,r,s w[k,c,r,s] x[n,c,h+r-1,w+s-1]."""
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = np.zeros((n, w.shape[0], h, wd))
    for r in range(3):
        for s in range(3):
            y += np.einsum("nchw,kc->nkhw", xp[:, :, r : r + h, s : s + wd], w[:, :, r, s])
    return y


def rel(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b)


def test_convolution_three_ways_against_float64_numpy():
    import cupy

    from cudnn_denoise.layers.algorithms import Policy
    from cudnn_denoise.layers.context import Context
    from cudnn_denoise.layers.conv import Conv2d
    from cudnn_denoise.params import ConvSpec

    rng = np.random.default_rng(0)
    n, c, k, h, w = 2, 16, 16, 37, 53
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((n, k, h, w)).astype(np.float32)
    with Context(cupy.cuda.Stream()) as ctx:
        assert ctx.cudnn_handle.stream is ctx.stream
        conv = Conv2d(ctx, ConvSpec("conv", c, k, relu=False), n, h, w, strict_fp32=True)
        dx_d = cupy.empty((n, c, h, w), cupy.float32)
        y_d, dw_d = cupy.empty((n, k, h, w), cupy.float32), cupy.empty((k, c, 3, 3), cupy.float32)
        with ctx.stream:
            x_d, w_d, dy_d = cupy.asarray(x), cupy.asarray(wt), cupy.asarray(dy)
            zero_b = cupy.zeros(k, cupy.float32)
        conv.choose_algorithms(Policy("find", True, False, 64 << 20), x_d, w_d, y_d, dx_d)
        conv.forward(x_d, w_d, zero_b, y_d)
        conv.backward_data(w_d, dy_d, dx_d)
        conv.backward_filter(x_d, dy_d, dw_d)
        ctx.synchronize()
        y, dx, dw = y_d.get(), dx_d.get(), dw_d.get()
    x64, w64, dy64 = x.astype(np.float64), wt.astype(np.float64), dy.astype(np.float64)
    ref_y = conv_nchw(x64, w64)
    ref_dx = conv_nchw(dy64, np.flip(w64, (2, 3)).transpose(1, 0, 2, 3))  # full correlation with flipped w
    xp = np.pad(x64, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref_dw = np.stack([np.stack([np.einsum("nkhw,nchw->kc", dy64, xp[:, :, r : r + h, s : s + w])
                                 for s in range(3)], -1) for r in range(3)], -2)
    errors = {"y": rel(y, ref_y), "dx": rel(dx, ref_dx), "dw": rel(dw, ref_dw)}
    print("cuDNN FMA vs float64:", errors)
    assert max(errors.values()) < 1e-5, errors


def test_saxpy_and_sdot():
    import cupy

    from cudnn_denoise.bindings.cdata import float_ptr, host_float
    from cudnn_denoise.layers.context import Context

    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(1000).astype(np.float32), rng.standard_normal(1000).astype(np.float32)
    with Context() as ctx:
        with ctx.stream:
            x, y = cupy.asarray(a), cupy.asarray(b)
        h = ctx.cublas_handle.ptr
        ctx.cublas.cublasSaxpy_v2(h, 1000, host_float(0.5), float_ptr(x), 1, float_ptr(y), 1)
        result = host_float(0.0)  # host pointer mode: the call returns when the value is there
        ctx.cublas.cublasSdot_v2(h, 1000, float_ptr(x), 1, float_ptr(y), 1, result)
        ctx.synchronize()
        np.testing.assert_allclose(y.get(), b + 0.5 * a, rtol=1e-6)
        assert result[0] == pytest.approx(float(np.dot(a.astype(np.float64), b + 0.5 * a)), rel=1e-5)
