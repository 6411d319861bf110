"""Checksums of float32 arrays that Python and the Fortran port compute and print identically.

A checksum is n, the float64 sum of the values added in order, the float64 sum of their absolute
values, and the min and max. Adding in order, ((0 + x1) + x2) + ..., is exactly reproducible in
any language on IEEE hardware (np.sum adds pairwise, so it is not used). Min and max are NaN if any
value is NaN; a zero min or max is printed as +0 (NumPy's choice of 0 or -0 depends on the order).

Numbers are printed as Fortran's ES edit descriptor writes them, leading blanks removed: the sums
with ES24.16E3 (17 significant digits: enough to tell any two float64 apart), min and max with
ES16.8E3 (9 digits: enough for float32); NaN and infinities as gfortran writes them (NaN, Infinity,
-Infinity). Python's float formatting and gfortran's both round correctly (half to even), so the
text is identical. The Fortran twin is module cudnn_denoise_checksum in
fortran/cudnn_denoise_checksum.f90; tests/fortran/ compare the two.
"""

from __future__ import annotations

import math

import numpy as np

LINE = "{name:<16s} n={n} sum={sum} abssum={abssum} min={min} max={max}"
SUM_DECIMALS = 16  # ES24.16E3
VALUE_DECIMALS = 8  # ES16.8E3
_CHUNK = 1 << 20  # elements converted to float64 at a time


def checksum(array) -> dict:
    """n, sum, abssum, min and max of a float32 array, its elements taken in C (row-major) order."""
    values = np.asarray(array)
    if values.dtype != np.float32:
        raise TypeError(f"checksum is defined for float32 arrays, got {values.dtype}")
    if values.size == 0:
        raise ValueError("checksum of an empty array")
    values = values.ravel(order="C")
    return {
        "n": int(values.size),
        "sum": _sum_in_order(values, absolute=False),
        "abssum": _sum_in_order(values, absolute=True),
        "min": _signless_zero(float(np.min(values))),
        "max": _signless_zero(float(np.max(values))),
    }


def format_checksum(name: str, array) -> str:
    """One line: `name n=... sum=... abssum=... min=... max=...`, as Fortran's format_checksum."""
    c = checksum(array)
    return LINE.format(
        name=name,
        n=c["n"],
        sum=scientific(c["sum"], SUM_DECIMALS),
        abssum=scientific(c["abssum"], SUM_DECIMALS),
        min=scientific(c["min"], VALUE_DECIMALS),
        max=scientific(c["max"], VALUE_DECIMALS),
    )


def scientific(value: float, decimals: int) -> str:
    """value as gfortran's ES(decimals+8).(decimals)E3 writes it, without the leading blanks."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    mantissa, exponent = f"{value:.{decimals}E}".split("E")
    return f"{mantissa}E{int(exponent):+04d}"  # three exponent digits, as E3 asks


def _sum_in_order(values: np.ndarray, absolute: bool) -> float:
    """((0 + v1) + v2) + ... in float64, as a Fortran do loop adds; v = |x| if absolute."""
    total = np.float64(0.0)
    for start in range(0, values.size, _CHUNK):
        chunk = values[start : start + _CHUNK].astype(np.float64)
        if absolute:
            chunk = np.abs(chunk)
        # accumulate adds strictly left to right; the running total goes first. Inf - Inf is NaN,
        # as in Fortran: no warning.
        with np.errstate(invalid="ignore"):
            total = np.add.accumulate(np.concatenate(([total], chunk)))[-1]
    return float(total)


def _signless_zero(value: float) -> float:
    return 0.0 if value == 0 else value
