"""reader.py on the host path: order, pairing, partial batches, resume, errors, bounded memory."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cudnn_denoise.data.cache import cached_bytes
from cudnn_denoise.data.format import CLEAN_NAME, NOISY_NAME, DataError, open_dir
from cudnn_denoise.data.reader import PairReader
from cudnn_denoise.data.synthetic import write_dataset


def read_epoch(reader, epoch, start=0):
    """[(indices, x copy, y copy, position)] of one epoch: copies, since buffers are reused."""
    return [(batch.indices, batch.x.copy(), batch.y.copy(), batch.position)
            for batch in reader.epoch(epoch, start)]


def assert_batches_hold_their_indices(batches, dataset, pairs):
    for indices, x, y, _ in batches:
        want_x, want_y = pairs(indices, dataset.height, dataset.width)
        np.testing.assert_array_equal(x, want_x)
        np.testing.assert_array_equal(y, want_y)


def test_sequential_epoch_reads_every_pair_in_order(identity_dataset, pairs):
    dataset = identity_dataset(12)
    with PairReader(dataset, 4, shuffle=False) as reader:
        batches = read_epoch(reader, 0)
    assert [list(b[0]) for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert [b[3] for b in batches] == [0, 1, 2]
    assert batches[0][1].shape == (4, 1, 8, 6) and batches[0][1].dtype == np.float32
    assert_batches_hold_their_indices(batches, dataset, pairs)


@pytest.mark.parametrize("workers, prefetch", [(1, 1), (2, 4), (3, 8)])
def test_shuffle_sees_every_sample_once_with_its_pair(identity_dataset, pairs, workers, prefetch):
    dataset = identity_dataset(37)
    with PairReader(dataset, 3, shuffle=True, seed=7, drop_last=False, workers=workers,
                    prefetch=prefetch) as reader:
        orders = []
        for epoch in range(3):
            batches = read_epoch(reader, epoch)
            assert_batches_hold_their_indices(batches, dataset, pairs)
            seen = np.concatenate([b[0] for b in batches])
            assert sorted(seen) == list(range(37))
            np.testing.assert_array_equal(seen, reader.order(epoch))
            orders.append(seen)
    assert not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[1], orders[2])


def test_order_is_the_documented_permutation(identity_dataset):
    dataset = identity_dataset(20)
    with PairReader(dataset, 4, shuffle=True, seed=3) as reader:
        np.testing.assert_array_equal(reader.order(5),
                                      np.random.default_rng((3, 5)).permutation(20))
    with PairReader(dataset, 4, shuffle=True, seed=4) as other:
        assert not np.array_equal(other.order(5), np.random.default_rng((3, 5)).permutation(20))


@pytest.mark.parametrize("drop_last, sizes", [(True, [4, 4]), (False, [4, 4, 2])])
def test_last_partial_batch(identity_dataset, pairs, drop_last, sizes):
    dataset = identity_dataset(10)
    with PairReader(dataset, 4, shuffle=True, seed=1, drop_last=drop_last) as reader:
        assert reader.batches_per_epoch == len(sizes)
        batches = read_epoch(reader, 0)
    assert [len(b[0]) for b in batches] == sizes
    assert [b[1].shape[0] for b in batches] == sizes
    assert_batches_hold_their_indices(batches, dataset, pairs)
    seen = np.concatenate([b[0] for b in batches])
    np.testing.assert_array_equal(seen, reader.order(0)[: sum(sizes)])


@pytest.mark.parametrize("start", [0, 1, 4, 7, 8])
def test_resume_gives_the_remaining_batches(identity_dataset, pairs, start):
    dataset = identity_dataset(30)
    with PairReader(dataset, 4, shuffle=True, seed=11, drop_last=False) as reader:
        full = read_epoch(reader, 2)
        resumed = read_epoch(reader, 2, start=start)
    assert reader.batches_per_epoch == 8
    assert [list(b[0]) for b in resumed] == [list(b[0]) for b in full[start:]]
    assert [b[3] for b in resumed] == list(range(start, 8))
    assert_batches_hold_their_indices(resumed, dataset, pairs)


def test_leaving_an_epoch_early_frees_its_buffers(identity_dataset, pairs):
    dataset = identity_dataset(40)
    with PairReader(dataset, 2, shuffle=True, prefetch=2) as reader:
        for _ in range(5):  # each break would strand a buffer if they were not given back
            for batch in reader.epoch(0):
                if batch.position == 3:
                    break
        batches = read_epoch(reader, 1)
    assert len(batches) == 20
    assert_batches_hold_their_indices(batches, dataset, pairs)


def test_one_epoch_at_a_time(identity_dataset):
    with PairReader(identity_dataset(8), 2) as reader:
        first = reader.epoch(0)
        next(first)
        with pytest.raises(RuntimeError, match="one epoch at a time"):
            reader.epoch(1)
        first.close()
        assert len(list(reader.epoch(1))) == 4


def test_start_out_of_range(identity_dataset):
    with PairReader(identity_dataset(8), 4) as reader:
        with pytest.raises(ValueError, match=r"start 3 is outside 0..2"):
            reader.epoch(0, start=3)
        assert list(reader.epoch(0, start=2)) == []


def test_fewer_samples_than_one_batch(identity_dataset):
    dataset = identity_dataset(3)
    with pytest.raises(DataError, match=r"noisy.bin: holds 3 samples, fewer than one batch of 4"):
        PairReader(dataset, 4)


def test_file_truncated_while_reading_is_an_error(identity_dataset):
    dataset = identity_dataset(16)
    with PairReader(dataset, 4, shuffle=False, prefetch=1) as reader:
        batches = reader.epoch(0)
        next(batches)  # batches 0 and 1 are read by now
        os.truncate(dataset.clean, 10 * dataset.sample_nbytes + 100)
        with pytest.raises(DataError, match=rf"clean.bin: short read at offset "
                                            rf"{8 * dataset.sample_nbytes}: got "
                                            rf"{2 * dataset.sample_nbytes + 100} of "
                                            rf"{4 * dataset.sample_nbytes} bytes"):
            next(batches)
            next(batches)


def test_partial_reads_are_continued(identity_dataset, pairs, monkeypatch):
    dataset = identity_dataset(9)
    real_preadv = os.preadv

    def trickle(fd, buffers, offset):  # at most 40 bytes a call: never a whole sample
        return real_preadv(fd, [buffers[0][:40]], offset)

    monkeypatch.setattr(os, "preadv", trickle)
    with PairReader(dataset, 3, shuffle=True, seed=2) as reader:
        assert_batches_hold_their_indices(read_epoch(reader, 0), dataset, pairs)


# --- bounded memory -------------------------------------------------------------------------

def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def evict(dataset):
    """Write the files back and drop them from the page cache; skip where that cannot work."""
    for path in (dataset.noisy, dataset.clean):
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
        if cached_bytes(path) > os.path.getsize(path) // 2:
            pytest.skip(f"{path.parent}'s filesystem keeps dropped pages cached (tmpfs?)")


def readahead_bytes(path) -> int:
    """The readahead window of the disk holding `path` (sysfs read_ahead_kb), else 16 MiB."""
    st = os.stat(path)
    device = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    for queue in (device / "queue", device.resolve().parent / "queue"):  # a disk, or a partition's
        if (queue / "read_ahead_kb").exists():
            return int((queue / "read_ahead_kb").read_text()) * 1024
    return 16 * 2**20  # overlay and other virtual filesystems: a generous guess


SIDE = 256  # 256 KiB samples: readahead's large folios straddle batches, as in the worst case
BATCH, PREFETCH = 2, 2
IN_FLIGHT = (PREFETCH + 1) * BATCH * SIDE * SIDE * 4 * 2  # buffer slots x batch x sample x files


def cache_bound(path, shuffle: bool) -> int:
    """What the reader may leave cached (reader.py's docstring): shuffled, the reads in flight;
    sequential, also as much again behind them and, in each file, the readahead ahead of them:
    two windows (the one being read and the next), and a third for the moment of measuring."""
    return IN_FLIGHT if shuffle else 2 * IN_FLIGHT + 2 * 3 * readahead_bytes(path)


@pytest.fixture
def big_dataset(tmp_path):
    """Files together 4x what a sequential pass may leave cached, and 20x or more the reader's
    buffers (too many pixels for identity values; the tests above check those)."""
    count = max(128, -(-4 * cache_bound(tmp_path, False) // (2 * SIDE * SIDE * 4)))
    samples = np.full((count, SIDE, SIDE), 0.5, "<f4")
    samples.tofile(tmp_path / NOISY_NAME)
    samples.tofile(tmp_path / CLEAN_NAME)
    return open_dir(tmp_path, patch_size=SIDE)


@pytest.mark.parametrize("shuffle", [False, True])
def test_page_cache_and_rss_stay_bounded(big_dataset, shuffle):
    evict(big_dataset)
    bound = cache_bound(big_dataset.noisy, shuffle)
    rss_before = rss_bytes()
    most_cached, most_rss = 0, 0
    with PairReader(big_dataset, BATCH, shuffle=shuffle, prefetch=PREFETCH) as reader:
        for epoch in range(2):
            for batch in reader.epoch(epoch):
                if batch.position % 8 == 0:
                    most_cached = max(most_cached, cached_bytes(big_dataset.noisy)
                                      + cached_bytes(big_dataset.clean))
                    most_rss = max(most_rss, rss_bytes())
    assert most_cached <= bound, f"{most_cached} of {big_dataset.nbytes} bytes stayed cached"
    assert most_rss - rss_before < IN_FLIGHT + 16 * 2**20


@pytest.mark.parametrize("shuffle", [False, True])
def test_keeping_the_page_cache_keeps_no_copy_in_the_process(big_dataset, shuffle):
    """drop_cache=False (train --cache keep): the files stay cached, in the kernel's page cache,
    not in the process, whose RSS grows by the reader's buffers only. (Also the control of the
    test above: its measurement does see cached pages when the reader keeps them.)"""
    evict(big_dataset)
    rss_before, most_rss = rss_bytes(), 0
    with PairReader(big_dataset, BATCH, shuffle=shuffle, prefetch=PREFETCH,
                    drop_cache=False) as reader:
        for epoch in range(2):
            for batch in reader.epoch(epoch):
                if batch.position % 8 == 0:
                    most_rss = max(most_rss, rss_bytes())
    cached = cached_bytes(big_dataset.noisy) + cached_bytes(big_dataset.clean)
    assert cached > 0.9 * big_dataset.nbytes
    assert most_rss - rss_before < IN_FLIGHT + 16 * 2**20


def test_statistics_of_a_set_that_shrinks_name_the_file_instead_of_sigbus(tmp_path):
    # The statistics read before training: a file cut short meanwhile is an error, not SIGBUS.
    code = ("import os, sys; from cudnn_denoise.data.format import open_dir, DataError; "
            "from cudnn_denoise.data.stats import noisy_stats; d = open_dir(sys.argv[1]); "
            "os.truncate(d.noisy, 4096)\n"
            "try:\n    noisy_stats(d)\nexcept DataError as exc:\n    print(exc); sys.exit(2)")
    write_dataset(tmp_path / "d", 40, 32, seed=0)
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "d")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stdout.startswith(f"{tmp_path / 'd' / 'noisy.bin'}: short read")
