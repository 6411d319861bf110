"""reader.py on the GPU path: batches on the device equal the files' values (float16 files widened
by cudnnTransformTensor), no buffer is overwritten while the training stream still reads it, and
a batch's copy never waits behind another slot's step."""

import os
import time

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


# Spins until *open is non-zero: holds a stream (a training step that has not finished).
GATE = r"""
extern "C" __global__ void gate(const volatile int* open) {
    while (*open == 0) {}
}
"""


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("shuffle, drop_last", [(False, True), (True, False)])
def test_device_batches_equal_the_files(identity_dataset, pairs, shuffle, drop_last, dtype):
    """float16: 23 samples of 6 x 7 keep the identity values float16-exact; the last batch of 3
    (drop_last=False) is widened by a second cudnnTransformTensor of 3 rows."""
    import cupy

    height, width = (32, 24) if dtype == "float32" else (6, 7)
    dataset = identity_dataset(23, height=height, width=width, dtype=dtype)
    stream = cupy.cuda.Stream(non_blocking=True)
    with PairReader(dataset, 4, shuffle=shuffle, seed=3, drop_last=drop_last,
                    device=True) as reader:
        seen = []
        for batch in reader.epoch(1):
            batch.wait(stream)
            with stream:
                x, y = cupy.asnumpy(batch.x, stream=stream), cupy.asnumpy(batch.y, stream=stream)
            stream.synchronize()
            assert isinstance(batch.x, cupy.ndarray) and batch.x.dtype == cupy.float32
            assert batch.x.shape == (len(batch.indices), 1, height, width)
            want_x, want_y = pairs(batch.indices, height, width)
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


def test_a_copy_never_waits_behind_another_slots_step(identity_dataset, pairs, monkeypatch):
    """Step j holds the training stream (a gate kernel) while the batches after it arrive, the
    read of batch j+2 slowed down so that the batch reusing step j's slot (j+1+prefetch) is read
    first. Each of the next `prefetch` batches must still reach the GPU while step j runs: only
    the batch that reuses step j's slot may wait for it."""
    import cupy

    prefetch, batch_size, side = 3, 2, 16
    dataset = identity_dataset(24, height=side, width=side)  # 12 batches, sequential
    held, slow = 4, 6  # batch positions: the gated step, and the batch read late
    slow_offset = slow * batch_size * dataset.sample_nbytes
    real_preadv = os.preadv

    def preadv(fd, buffers, offset):
        if offset == slow_offset:
            time.sleep(0.5)
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", preadv)
    gate = cupy.RawKernel(GATE, "gate")
    stream = cupy.cuda.Stream(non_blocking=True)
    side_stream = cupy.cuda.Stream(non_blocking=True)
    with side_stream:
        flag = cupy.zeros(1, cupy.int32)
    side_stream.synchronize()
    late = []
    with PairReader(dataset, batch_size, shuffle=False, device=True, workers=4,
                    prefetch=prefetch) as reader:
        batches = reader.epoch(0)
        try:
            for _ in range(held + 1):
                batch = next(batches)
                batch.wait(stream)
            with stream:
                gate((1,), (1,), (flag,))  # step `held` runs until the flag opens
            gated = cupy.cuda.Event(disable_timing=True)
            gated.record(stream)
            for _ in range(prefetch):
                batch = next(batches)
                deadline = time.monotonic() + 10.0
                while not batch._slot.copied.done and time.monotonic() < deadline:
                    time.sleep(0.01)
                if not batch._slot.copied.done:
                    late.append(batch.position)
            assert not gated.done, "the gate did not hold the training stream"
        finally:
            with side_stream:  # open the gate whatever happened, or the GPU spins for ever
                cupy.cuda.runtime.memsetAsync(flag.data.ptr, 1, 1, side_stream.ptr)
            stream.synchronize()
        assert late == [], f"batches {late} waited for step {held}, whose slot they do not reuse"
        rest = []  # the epoch goes on, intact
        for batch in batches:
            batch.wait(stream)
            rest.append((batch.indices, batch.x.get(stream=stream), batch.y.get(stream=stream)))
            stream.synchronize()
    positions = range(held + 1 + prefetch, 12)
    assert [list(i) for i, _, _ in rest] == [[2 * p, 2 * p + 1] for p in positions]
    for indices, x, y in rest:
        want_x, want_y = pairs(indices, side, side)
        np.testing.assert_array_equal(x, want_x)
        np.testing.assert_array_equal(y, want_y)
