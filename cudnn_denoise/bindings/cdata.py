"""Host scalars and device pointers as the cffi values the C calls take.

cuDNN reads alpha and beta through `const void *` as float for FLOAT tensors (double only for
DOUBLE data); cuBLAS's S-routines take `const float *`. Names follow the manual's use:
beta = ZERO overwrites the output, beta = ONE adds into it.
"""

from __future__ import annotations

from ._ffi import ffi


def host_float(value: float):
    """A `float *` holding value, for alpha/beta and cuBLAS scalars in host pointer mode."""
    return ffi.new("float *", value)


def host_double(value: float):
    """A `double *` holding value: alpha/beta of calls on DOUBLE tensors."""
    return ffi.new("double *", value)


ONE = host_float(1.0)   # alpha = 1, or beta = 1: accumulate into the output
ZERO = host_float(0.0)  # beta = 0: overwrite the output


def device_ptr(array):
    """`void *` to a CuPy array's device memory (NULL for None)."""
    return ffi.NULL if array is None else ffi.cast("void *", array.data.ptr)


def float_ptr(array):
    """`float *` to a CuPy float32 array's device memory, for cuBLAS."""
    return ffi.cast("float *", array.data.ptr)
