"""DeviceMath (cuDNN on the GPU) against HostMath (NumPy): the intensity maps bit for bit, the
moments to float64's last bits, the preview's block means to float32's, and a whole frame through
Denoiser.run_frame against the same frame through the reference's arithmetic.
"""

from __future__ import annotations

import numpy as np
import pytest

from cudnn_denoise.inference.engine import Denoiser
from cudnn_denoise.inference.frame_math import HostMath
from cudnn_denoise.inference.intensity import TrainingStats, scaling_for
from cudnn_denoise.micrographs.moments import Moments
from cudnn_denoise.params import init_params

pytestmark = pytest.mark.gpu

SHAPES = [(1024, 1024), (1000, 1003)]  # the second leaves rows and columns over in the blocks


def frame(shape, seed=0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(1000.0, 40.0, shape).astype(np.float32)
    x[0, :4] = [0.0, -0.0, 1000.0, np.float32(1e-30)]  # zeros, the mean itself, a subnormal-ish value
    return x


@pytest.fixture(scope="module")
def device():
    import cupy

    from cudnn_denoise.inference.device_math import DeviceMath

    math_ = DeviceMath(cupy.cuda.Stream(non_blocking=True))
    yield math_
    math_.close()


@pytest.mark.parametrize("shape", SHAPES)
def test_moments_match_numpy(device, shape):
    x = frame(shape)
    ours, theirs = device.moments(device.upload(x)), Moments.of(x)
    assert (ours.count, ours.minimum, ours.maximum) == (theirs.count, theirs.minimum, theirs.maximum)
    assert ours.mean == pytest.approx(theirs.mean, rel=1e-13)
    assert ours.std == pytest.approx(theirs.std, rel=1e-11)


@pytest.mark.parametrize("shape", SHAPES)
def test_the_maps_are_numpy_s_bit_for_bit(device, shape):
    x = frame(shape, seed=1)
    scaling = scaling_for(Moments.of(x), TrainingStats(mean=0.43, std=0.071))
    for f in (scaling.to_model, scaling.from_model):
        ours = device.to_host(device.affine(device.upload(x), f))
        np.testing.assert_array_equal(ours.view(np.uint32), f(x).view(np.uint32))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("factor", [1, 4, 7])
def test_block_means_match_numpy(device, shape, factor):
    x = frame(shape, seed=2)
    ours = device.to_host(device.block_means(device.upload(x), factor))
    theirs = HostMath().block_means(x, factor)
    assert ours.shape == theirs.shape == (shape[0] // factor, shape[1] // factor)
    np.testing.assert_allclose(ours, theirs, rtol=2e-6)


def test_a_frame_through_run_frame_is_the_host_arithmetic_around_the_gpu_network():
    """run_frame on the GPU: the moments, the maps and the output's moments as NumPy computes them
    around the same network (Denoiser.denoise on the GPU); NaN makes a DataError naming the counts."""
    from cudnn_denoise.data.format import DataError

    stats = TrainingStats(mean=0.43, std=0.071)
    x = frame((512, 768), seed=3)
    denoiser = Denoiser("cudnn", init_params(0), math="fp32")
    try:
        done = denoiser.run_frame(_pinned(denoiser, x),
                                  stats, normalize=False, preview_size=128)
        scaling = scaling_for(Moments.of(x), stats)
        network = denoiser.denoise(scaling.to_model(x))
        bad = x.copy()
        bad[5, 5] = np.nan
        with pytest.raises(DataError, match="holds 1 NaN and 0 infinite"):
            denoiser.run_frame(_pinned(denoiser, bad), stats, normalize=False)
    finally:
        denoiser.close()
    np.testing.assert_array_equal(done.y, scaling.from_model(network))
    written = Moments.of(done.y)
    assert (done.moments.minimum, done.moments.maximum) == (written.minimum, written.maximum)
    assert done.moments.std == pytest.approx(written.std, rel=1e-11)
    left, right = done.panels
    assert left.shape == right.shape == (512 // 6, 768 // 6)
    np.testing.assert_allclose(right, HostMath().block_means(done.y, 6), rtol=2e-6)


def _pinned(denoiser, x):
    buffer = denoiser.frame_buffer(x.shape)
    np.copyto(buffer, x)
    return buffer
