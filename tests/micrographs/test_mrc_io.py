"""MrcWriter: its data reaches the disk by fsync before the memory map is closed."""

import os

import numpy as np

from cudnn_denoise.micrographs import mrc_io
from micrograph_files import read_mrc


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
    writer.write(0, frame)
    real_close = writer._mrc.close
    writer._mrc.close = lambda: (events.append(("close", None)), real_close())
    writer.finish()
    assert [e[0] for e in events] == ["fsync", "close"]
    assert events[0][1] == str(writer.tmp)
    np.testing.assert_array_equal(read_mrc(out), frame)
