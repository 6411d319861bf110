"""MrcWriter: frames written with pwrite, the header's statistics from the frames' moments, and the
data on the disk by fsync before the memory map is closed."""

import os

import mrcfile
import numpy as np
import pytest
from micrograph_files import read_mrc

from cudnn_denoise.micrographs import mrc_io
from cudnn_denoise.micrographs.moments import Moments, combine


def test_finish_writes_the_file_back_by_fsync_before_closing_the_map(tmp_path, monkeypatch):
    """close()'s msync holds the GIL while it writes; an fsync first (which releases it) leaves it
    nothing to write, so the other threads of the pipeline go on."""
    events = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd)))
    out = tmp_path / "x.mrc"
    writer = mrc_io.MrcWriter(out, 1, 8, 8, stack=False, header=None, label="test")
    frame = np.arange(64, dtype=np.float32).reshape(8, 8)
    writer.write(0, frame, Moments.of(frame))
    real_close = writer._mrc.close
    writer._mrc.close = lambda: (events.append(("close", None)), real_close())
    writer.finish()
    assert [e[0] for e in events] == ["fsync", "close"]
    assert events[0][1] == str(writer.tmp)
    np.testing.assert_array_equal(read_mrc(out), frame)


@pytest.mark.parametrize("frames", [1, 3])
def test_the_header_statistics_are_the_data_s_from_the_frames_moments(tmp_path, frames):
    """dmin, dmax, dmean and rms as mrcfile's update_header_stats gives them for the data read back,
    but from each frame's moments (a stack's combined): the writer never reads its frames."""
    rng = np.random.default_rng(3)
    data = [rng.normal(100.0 * (i + 1), 5.0 * (i + 1), (24, 40)).astype(np.float32) for i in range(frames)]
    out = tmp_path / ("x.mrcs" if frames > 1 else "x.mrc")
    writer = mrc_io.MrcWriter(out, frames, 24, 40, stack=frames > 1, header=None, label="test")
    for index, frame in enumerate(data):
        writer.write(index, frame, Moments.of(frame))
    writer.finish()
    with mrcfile.open(out, mode="r+") as mrc:
        np.testing.assert_array_equal(mrc.data, np.stack(data) if frames > 1 else data[0])
        ours = [float(mrc.header[k]) for k in ("dmin", "dmax", "dmean", "rms")]
        mrc.update_header_stats()  # mrcfile's own, from the data (float32 sums)
        theirs = [float(mrc.header[k]) for k in ("dmin", "dmax", "dmean", "rms")]
    assert ours[:2] == theirs[:2]
    np.testing.assert_allclose(ours[2:], theirs[2:], rtol=1e-6)


def test_combined_moments_are_those_of_the_frames_together():
    rng = np.random.default_rng(4)
    parts = [rng.normal(10.0 * i, 1.0 + i, 1000 + 17 * i) for i in range(4)]
    whole = Moments.of(np.concatenate(parts))
    got = combine([Moments.of(p) for p in parts])
    assert (got.count, got.minimum, got.maximum) == (whole.count, whole.minimum, whole.maximum)
    assert got.mean == pytest.approx(whole.mean, rel=1e-13)
    assert got.std == pytest.approx(whole.std, rel=1e-12)
    one = Moments.of(parts[0])
    assert combine([one]) is one
