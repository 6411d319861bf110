"""denoise_train's reads in flight (fortran/denoise_read_jobs.f90: a pthread per read, pread into
the batch's buffer) on a CPU: every batch read at once gives Python's values, and a read past the
end of the file is named. The threads feeding the GPU are benchmarks/fortran_parity.py's to time.
"""

import numpy as np
import pytest

from cudnn_denoise.data.synthetic import write_dataset
from cudnn_denoise.port import checksum
from test_denoise_train import built_program
from test_fortran import build, run  # noqa: F401 (build: the Makefile's build, a fixture)


@pytest.fixture(scope="module")
def reader(build):
    return built_program("read_batches", build, ["denoise_read_jobs.o", "cudnn_denoise_checksum.o",
                                                 "denoise_check.o", "cudnn_interfaces.o"])


@pytest.mark.parametrize("drop", [0, 1])
def test_batches_read_in_flight_are_pythons(reader, tmp_path, drop):
    data = write_dataset(tmp_path / "data", 12, 32, seed=3)
    result = run([reader, data.noisy, 32 * 32, 3, 4, drop])
    assert result.returncode == 0, result.stderr
    values = np.fromfile(data.noisy, "<f4").reshape(4, 3 * 32 * 32)
    assert result.stdout.splitlines() == [checksum.format_checksum(f"batch {b}", values[b]) for b in range(4)]


def test_a_read_past_the_end_is_named(reader, tmp_path):
    data = write_dataset(tmp_path / "data", 12, 32, seed=3)
    result = run([reader, data.noisy, 32 * 32, 3, 5, 0])
    assert result.returncode == 2
    assert result.stderr.strip() == (f"denoise_train: {data.noisy}: ends before byte {5 * 3 * 32 * 32 * 4} "
                                     f"(a batch at byte {4 * 3 * 32 * 32 * 4})")
