"""Previews: a micrograph and its denoised output side by side in one 8-bit grey PNG, a quick look.

Each panel is binned by one integer factor, the smallest that brings the micrograph's longer side
to at most `size` pixels (the mean of each factor x factor block; rows and columns left over at the
bottom and right are dropped): by binned() on the CPU, by cuDNN's average pooling on the GPU
(inference/device_math.py), where the micrograph is. Both panels get the same contrast rule, each from its own values:
the 1st percentile is black, the 99th white, linear between, clipped outside. So the contrast does
not depend on an affine change of scale (the model's or the input's intensities look the same),
and a few hot pixels or a dark ice blob do not set it. Input left, denoised right, GAP white columns
between them.

The PNG is written with zlib from the standard library (8-bit greyscale, no interlace, filter 0 on
every row): no imaging library is needed, so previews work in the minimal install. Written under a
temporary name and renamed, as the denoised files are.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np

from ..userio.files import write_atomic

DEFAULT_SIZE = 1024  # pixels of a panel's longer side, at most
PERCENTILES = (1.0, 99.0)  # black and white
GAP = 8  # white columns between the panels


def bin_factor(height: int, width: int, size: int) -> int:
    """The smallest integer factor that brings max(height, width) to at most `size` pixels."""
    if size < 1:
        raise ValueError(f"--preview-size must be at least 1, not {size}")
    return max(1, math.ceil(max(height, width) / size))


def binned(x: np.ndarray, factor: int) -> np.ndarray:
    """Block means of factor x factor pixels, float64; the remainder rows and columns dropped.

    Summed by strided slices, columns then rows, without a float64 copy of the whole frame (a
    fraction of a second less per 4096^2 micrograph). A block's float32 values sum exactly in
    float64 unless their magnitudes span more than about 2^20, so the order does not change the
    means."""
    if factor == 1:
        return np.asarray(x, np.float64)
    h, w = x.shape[0] // factor, x.shape[1] // factor
    columns = np.zeros((h * factor, w), np.float64)
    for j in range(factor):
        columns += x[: h * factor, j : w * factor : factor]
    blocks = np.zeros((h, w), np.float64)
    for i in range(factor):
        blocks += columns[i::factor]
    return blocks / (factor * factor)


def grey(x: np.ndarray) -> np.ndarray:
    """uint8: PERCENTILES[0] of x -> 0, PERCENTILES[1] -> 255, linear, clipped (flat: 128)."""
    low, high = np.percentile(x, PERCENTILES)
    if not high > low:
        return np.full(x.shape, 128, np.uint8)
    scaled = (x - low) * (255.0 / (high - low))
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The preview image (uint8) of two binned panels: left scaled, GAP white columns, right."""
    left, right = grey(left), grey(right)
    gap = np.full((left.shape[0], GAP), 255, np.uint8)
    return np.concatenate([left, gap, right], axis=1)


def write_png(path: Path, image: np.ndarray) -> None:
    """A 2-D uint8 array as an 8-bit greyscale PNG, written atomically."""
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"a PNG needs a 2-D uint8 image, not {image.dtype} {image.shape}")
    height, width = image.shape
    rows = np.concatenate([np.zeros((height, 1), np.uint8), image], axis=1)  # filter byte 0

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    # IHDR: width, height, bit depth 8, colour type 0 (grey), compression, filter, interlace 0.
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))
    write_atomic(path, data)


def preview_path(output: Path, index: int, frames: int) -> Path:
    """OUT/x.denoised.png for a micrograph's output; OUT/x.denoised.<index>.png for stack frames."""
    stem = output.name[: -len(output.suffix)] if output.suffix else output.name
    name = f"{stem}.png" if frames == 1 else f"{stem}.{index:04d}.png"
    return output.with_name(name)
