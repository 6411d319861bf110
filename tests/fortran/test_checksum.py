"""cudnn_denoise.port.checksum on its own (no compiler): what it adds, in which order, and how it prints.

test_fortran.py checks that Fortran prints the same text.
"""

import numpy as np
import pytest

from cudnn_denoise.port import checksum


def in_order(values, absolute=False) -> float:
    total = 0.0
    for v in values.tolist():
        total += abs(v) if absolute else v
    return total


def test_sums_are_taken_in_order_across_chunks(monkeypatch):
    monkeypatch.setattr(checksum, "_CHUNK", 7)  # 100 values: 15 chunks
    rng = np.random.default_rng(0)
    # magnitudes from 1e-20 to 1e20: any other order of addition rounds differently
    values = (rng.standard_normal(100) * 10.0 ** rng.integers(-20, 20, 100)).astype(np.float32)
    c = checksum.checksum(values)
    assert c["sum"] == in_order(values)
    assert c["abssum"] == in_order(values, absolute=True)
    assert c["sum"] != float(np.sum(values.astype(np.float64)[::-1]))  # the data tell orders apart


def test_multi_dimensional_arrays_are_read_in_c_order():
    values = np.arange(12, dtype=np.float32).reshape(3, 4) ** 3
    assert checksum.checksum(np.asfortranarray(values)) == checksum.checksum(values.ravel())


def test_the_line_for_float32_exact_values():
    line = checksum.format_checksum("conv1.weight", np.array([1.0, -2.5, -0.0], np.float32))
    assert line == ("conv1.weight     n=3 sum=-1.5000000000000000E+000"
                    " abssum=3.5000000000000000E+000 min=-2.50000000E+000 max=1.00000000E+000")


def test_nan_makes_min_and_max_nan_and_zeros_print_unsigned():
    c = checksum.checksum(np.array([1.0, np.nan, -1.0], np.float32))
    assert np.isnan(c["min"]) and np.isnan(c["max"]) and np.isnan(c["sum"])
    line = checksum.format_checksum("z", np.array([-0.0, -0.0], np.float32))
    assert line.endswith("sum=0.0000000000000000E+000 abssum=0.0000000000000000E+000"
                         " min=0.00000000E+000 max=0.00000000E+000")


@pytest.mark.parametrize("value, text", [(float("inf"), "Infinity"), (float("-inf"), "-Infinity"),
                                         (float("nan"), "NaN"), (0.1, "1.0000000000000001E-001"),
                                         (-5e-324, "-4.9406564584124654E-324")])
def test_scientific_writes_what_gfortran_writes(value, text):
    assert checksum.scientific(value, 16) == text


def test_only_nonempty_float32_arrays_have_a_checksum():
    with pytest.raises(TypeError, match="float32"):
        checksum.checksum(np.zeros(3))
    with pytest.raises(ValueError, match="empty"):
        checksum.checksum(np.zeros(0, np.float32))
