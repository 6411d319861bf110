"""reader.py on the GPU path: batches on the device equal the files' bytes, and no buffer is
overwritten while the training stream still reads it."""

import numpy as np
import pytest

from cudnn_denoise.data.reader import PairReader

pytestmark = pytest.mark.gpu

# Spins for `cycles` clocks, then adds x's and y's elements into out: a slow training step.
SLOW_SUM = r"""
extern "C" __global__ void slow_sum(const float* x, const float* y, int n, long long cycles,
                                    double* out) {
    long long start = clock64();
    while (clock64() - start < cycles) {}
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        atomicAdd(&out[0], (double)x[i]);
        atomicAdd(&out[1], (double)y[i]);
    }
}
"""


@pytest.mark.parametrize("shuffle, drop_last", [(False, True), (True, False)])
def test_device_batches_equal_the_files(identity_dataset, pairs, shuffle, drop_last):
    import cupy

    dataset = identity_dataset(23, height=32, width=24)
    stream = cupy.cuda.Stream(non_blocking=True)
    with PairReader(dataset, 4, shuffle=shuffle, seed=3, drop_last=drop_last,
                    device=True) as reader:
        seen = []
        for batch in reader.epoch(1):
            batch.wait(stream)
            with stream:
                x, y = cupy.asnumpy(batch.x, stream=stream), cupy.asnumpy(batch.y, stream=stream)
            stream.synchronize()
            assert isinstance(batch.x, cupy.ndarray)
            assert batch.x.shape == (len(batch.indices), 1, 32, 24)
            want_x, want_y = pairs(batch.indices, 32, 24)
            np.testing.assert_array_equal(x, want_x)
            np.testing.assert_array_equal(y, want_y)
            seen.extend(batch.indices)
    assert sorted(seen) == list(range(20 if drop_last else 23))


def test_slow_steps_are_not_overwritten(identity_dataset, pairs):
    """Each step spins ~1 ms before reading its batch; the reader must wait for it on the GPU."""
    import cupy

    dataset = identity_dataset(64, height=64, width=64)
    kernel = cupy.RawKernel(SLOW_SUM, "slow_sum")
    stream = cupy.cuda.Stream(non_blocking=True)
    sums, expected = [], []
    with PairReader(dataset, 2, shuffle=True, seed=5, device=True, prefetch=2) as reader:
        for epoch in range(2):
            for batch in reader.epoch(epoch):
                batch.wait(stream)
                with stream:
                    out = cupy.zeros(2, cupy.float64)
                    kernel((8,), (256,), (batch.x, batch.y, np.int32(batch.x.size),
                                          np.int64(2_000_000), out))
                sums.append(out)
                want_x, want_y = pairs(batch.indices, 64, 64)
                expected.append([want_x.sum(dtype=np.float64), want_y.sum(dtype=np.float64)])
    stream.synchronize()
    np.testing.assert_array_equal(np.array([s.get() for s in sums]), np.array(expected))
