"""The dataset format: open and validate a noisy/clean pair of raw files.

A dataset is two raw files, `noisy.bin` and `clean.bin`: little-endian float32 (or float16, when
dataset.json says so), sample-major (N, H, W), values in [0, 1], sample i of one paired with
sample i of the other. An optional `dataset.json` beside them gives height, width, count, dtype
and how the data was made (docs/formats.md, "Dataset"). Batches are float32 whatever the files
hold. This module only describes and checks files; flags.py names them on a command line, reader.py
streams them, writer.py writes them (for synthetic.py, the micrograph conversion and recast.py,
which stores a set as another dtype), cache.py decides what stays in the page cache.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..userio.fields import Fields
from ..userio.files import UserFileError, open_regular, read_json, write_atomic
from .cache import drop_cached

NOISY_NAME = "noisy.bin"
CLEAN_NAME = "clean.bin"
META_NAME = "dataset.json"
DTYPE = np.dtype("<f4")  # what a batch holds; the files' type unless dataset.json says otherwise
# dataset.json's "dtype" -> the files' values: IEEE binary32 or binary16, little-endian
FILE_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
DEFAULT_PATCH_SIZE = 1024  # the seed's 1024 x 1024 patches
META_FORMAT = "cudnn_denoise.dataset"
META_VERSION = 1


class DataError(UserFileError):
    """A dataset file is missing, malformed, unreadable or holds bad values (message names it)."""


@dataclass(frozen=True)
class Dataset:
    """An opened, validated pair of files: `count` samples of `height` x `width` values each,
    stored as `dtype` (FILE_DTYPES)."""

    noisy: Path
    clean: Path
    height: int
    width: int
    count: int
    meta: dict = field(default_factory=dict, compare=False)  # dataset.json's content, if any
    dtype: np.dtype = DTYPE  # of the values in the files

    @property
    def sample_nbytes(self) -> int:
        """Bytes of one sample in one file."""
        return self.height * self.width * self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        """Bytes of both files together."""
        return 2 * self.count * self.sample_nbytes


def open_dataset(noisy: str | os.PathLike, clean: str | os.PathLike,
                 patch_size: int | None = None, flag: str = "--patch-size") -> Dataset:
    """Validate the two files and return their Dataset; raise DataError naming what is wrong.

    Height and width come from a dataset.json beside the noisy file, else from `patch_size`
    (square); without either the files are refused, since any shape whose sample size divides
    theirs would read them, scrambled. A patch_size that contradicts dataset.json is an error.
    `flag`: how the messages name patch_size (train's held-out set: --val-patch-size).
    """
    noisy, clean = Path(noisy), Path(clean)
    meta = read_meta(noisy.parent / META_NAME)
    height, width = _patch_shape(meta, patch_size, noisy.parent / META_NAME, flag)
    dtype = file_dtype(meta, noisy.parent / META_NAME)
    sample_nbytes = height * width * dtype.itemsize
    counts = {}
    for path in (noisy, clean):
        size = _readable_size(path)
        if size == 0 or size % sample_nbytes:
            raise DataError(
                f"{path}: size {size} bytes is not a positive multiple of one {height}x{width} "
                f"{dtype.name} sample ({sample_nbytes} bytes); wrong {flag} or a truncated "
                "file?")
        counts[path] = size // sample_nbytes
    if counts[noisy] != counts[clean]:
        raise DataError(f"{noisy} holds {counts[noisy]} samples but {clean} holds "
                        f"{counts[clean]}: the pairs would not match")
    if meta and meta.get("count", counts[noisy]) != counts[noisy]:
        raise DataError(f"{noisy.parent / META_NAME}: says count {meta['count']} but the files "
                        f"hold {counts[noisy]} samples")
    if "count" not in meta and dtype == FILE_DTYPES["float32"]:
        _refuse_float16_words(noisy, clean, noisy.parent / META_NAME)
    return Dataset(noisy, clean, height, width, counts[noisy], meta, dtype)


def open_dir(data_dir: str | os.PathLike, patch_size: int | None = None,
             flag: str = "--patch-size") -> Dataset:
    """Open the noisy.bin / clean.bin pair inside `data_dir` (open_dataset)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: --data must be a directory holding {NOISY_NAME} and "
                        f"{CLEAN_NAME}")
    return open_dataset(data_dir / NOISY_NAME, data_dir / CLEAN_NAME, patch_size, flag)


FLOAT16_LOOK = 0.15  # share of words over which float16 files are told from float32 ones


def _refuse_float16_words(noisy: Path, clean: Path, meta_path: Path, nbytes: int = 1 << 16) -> None:
    """DataError when the float32 files (no count to check their sizes against) hold float16
    values. A 32-bit word of float16 pixels is two neighbours, which mostly share their sign and
    exponent, the top 6 bits of each half (synthetic sets: 28% of the noisy words, 92% of the
    clean); in float32 values the low half is the mantissa's low bits, whose top 6 match the high
    half's in about 1 word of 64. Words with a half of 0 say nothing (zeros, rounded values)."""
    words = []
    for path in (noisy, clean):
        fd = open_readonly(path)
        try:
            data = os.pread(fd, nbytes, 0)
        finally:
            os.close(fd)
        words.append(np.frombuffer(data[: len(data) // 4 * 4], "<u4"))
    words = np.concatenate(words)
    high, low = words >> 16, words & 0xFFFF
    telling = (high != 0) & (low != 0)
    if not telling.any():
        return
    alike = float(np.mean(((high >> 10) == (low >> 10))[telling]))
    if alike > FLOAT16_LOOK:
        raise DataError(f"{meta_path}: says dtype float32, but {noisy} holds float16 values ("
                        f"{alike:.0%} of its first 32-bit words are two values of one sign and "
                        'exponent, as neighbouring float16 pixels are); set "dtype": "float16" '
                        'and "count" there')


def read_meta(path: Path) -> dict:
    """dataset.json's content, every field type-checked (check_meta), or {} when there is none."""
    if not os.path.lexists(path):
        return {}
    meta = read_json(path, DataError)
    check_meta(meta, path)
    return meta


def check_meta(meta, path: Path) -> None:
    """DataError naming the file and the field unless `meta` is a dataset.json object whose fields
    have the documented types: height and width (required), count, byte_order, format, version,
    made_by, pixel_size, ... (dtype and value_range are checked where they are read: file_dtype,
    value_range)."""
    fields = Fields(meta, path, error=DataError)
    fields.integer("height", minimum=1)
    fields.integer("width", minimum=1)
    fields.integer("count", minimum=1, default=None)
    fields.string("byte_order", choices=("little",), default=None)
    for key in ("format", "noisy", "clean", "layout"):
        fields.string(key, default=None)
    fields.integer("version", minimum=1, default=None)
    fields.object("made_by", required=False)
    fields.numbers("pixel_size", length=2, positive=True, default=None, nullable=True)


def write_meta(out_dir: Path, height: int, width: int, count: int, made_by: dict,
               extra: dict | None = None, *, dtype: str = "float32") -> Path:
    """Write dataset.json (atomically: a reader never sees half of it) and return its path.

    extra: more top-level keys (a micrograph dataset's pixel_size and sources); dtype: a
    FILE_DTYPES name, the type of the values in both files."""
    meta = {
        "format": META_FORMAT,
        "version": META_VERSION,
        "noisy": NOISY_NAME,
        "clean": CLEAN_NAME,
        "height": height,
        "width": width,
        "count": count,
        "dtype": FILE_DTYPES[dtype].name,
        "byte_order": "little",
        "layout": "sample-major (N, H, W)",
        "value_range": [0.0, 1.0],
        "made_by": made_by,
        **(extra or {}),
    }
    return write_atomic(out_dir / META_NAME, (json.dumps(meta, indent=2) + "\n").encode())


def pixel_size(dataset: Dataset) -> list[float] | None:
    """[x, y] in angstrom of the micrographs the samples were cut from (dataset.json's pixel_size,
    checked by read_meta), None when unknown."""
    return dataset.meta.get("pixel_size")


def value_range(dataset: Dataset) -> tuple[float, float, str]:
    """(low, high, where from): the values' range as dataset.json's value_range gives it, else the
    format's [0, 1]. DataError when dataset.json's value_range is not two finite numbers low < high.
    """
    where = dataset.noisy.parent / META_NAME
    if "value_range" not in dataset.meta:
        return 0.0, 1.0, f"the format's, {where} does not say"
    given = dataset.meta["value_range"]
    try:
        low, high = (float(v) for v in given)
        ok = all(not isinstance(v, bool) for v in given) and np.isfinite([low, high]).all()
    except (TypeError, ValueError):
        ok = False
    if not ok or not low < high:
        raise DataError(f"{where}: value_range must be two finite numbers [low, high] with low < "
                        f"high, not {given!r}")
    return low, high, str(where)


def _patch_shape(meta: dict, patch_size: int | None, meta_path: Path, flag: str) -> tuple[int, int]:
    """(height, width) from dataset.json (checked by read_meta), else the patch size given
    (`flag` on the command line); DataError when neither says it."""
    if patch_size is not None and patch_size <= 0:
        raise DataError(f"{flag} must be positive, not {patch_size}")
    if not meta:
        if patch_size is None:
            raise DataError(f"{meta_path.parent}: has no {META_NAME} to give the samples' shape; "
                            f"pass {flag} PX (the side of its square samples) or write a {META_NAME} "
                            "with height and width")
        return patch_size, patch_size
    height, width = meta["height"], meta["width"]
    if patch_size is not None and (patch_size, patch_size) != (height, width):
        raise DataError(f"{flag} {patch_size} contradicts {meta_path} ({height}x{width})")
    return height, width


def file_dtype(meta: dict, meta_path: Path) -> np.dtype:
    """The files' value type: dataset.json's "dtype" (FILE_DTYPES), float32 when absent."""
    name = meta.get("dtype", "float32")
    if not isinstance(name, str) or name not in FILE_DTYPES:
        raise DataError(f"{meta_path}: dtype {name!r} is not supported "
                        f"({' or '.join(FILE_DTYPES)})")
    return FILE_DTYPES[name]


def open_readonly(path: Path) -> int:
    """os.open(path, O_RDONLY) of a regular file (never blocking on a FIFO), with DataError naming
    the file when that fails."""
    return open_regular(path, DataError)


def _readable_size(path: Path) -> int:
    """The file's size in bytes, after checking it exists, is a regular file and can be opened."""
    fd = open_readonly(path)
    try:
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def read_exact(fd: int, buffer: memoryview, offset: int, path: Path) -> None:
    """Fill `buffer` from `fd` at `offset`; a short read is continued, and at end of file reported.

    os.preadv writes straight into the caller's memory (pinned or not): no intermediate copy.
    """
    done, want = 0, len(buffer)
    while done < want:
        try:
            got = os.preadv(fd, [buffer[done:]], offset + done)
        except OSError as exc:
            raise DataError(f"{path}: read failed at offset {offset + done}: "
                            f"{exc.strerror}") from exc
        if got == 0:
            raise DataError(f"{path}: short read at offset {offset}: got {done} of {want} bytes "
                            "(file truncated while in use?)")
        done += got


def iter_chunks(dataset: Dataset, chunk_samples: int = 16) -> Iterator[tuple[int, np.ndarray,
                                                                             np.ndarray]]:
    """(first sample, noisy, clean) for successive chunks of up to `chunk_samples` samples, each
    (n, H * W) in the files' dtype. The two buffers are reused: use a chunk before the next. Each
    chunk is dropped from the page cache once read, so memory stays constant whatever the size."""
    paths = (dataset.noisy, dataset.clean)
    buffers = [np.empty((chunk_samples, dataset.height * dataset.width), dataset.dtype)
               for _ in paths]
    fds: list[int] = []
    try:
        for path in paths:
            fds.append(open_readonly(path))
        for first in range(0, dataset.count, chunk_samples):
            n = min(chunk_samples, dataset.count - first)
            offset, size = first * dataset.sample_nbytes, n * dataset.sample_nbytes
            for path, fd, buffer in zip(paths, fds, buffers):
                read_exact(fd, memoryview(buffer[:n]).cast("B"), offset, path)
                drop_cached(fd, offset, size)
            yield first, buffers[0][:n], buffers[1][:n]
    finally:
        for fd in fds:
            os.close(fd)


def check_values(dataset: Dataset, chunk_samples: int = 16) -> None:
    """Scan both files for NaN, Inf and values outside [0, 1]; DataError names the first bad sample.

    Reads `chunk_samples` samples of each file at a time (iter_chunks), so memory stays constant.
    """
    paths = (dataset.noisy, dataset.clean)
    for first, *chunks in iter_chunks(dataset, chunk_samples):
        bad = []  # (sample, file order, path, values) of each file's first bad sample
        for order, (path, chunk) in enumerate(zip(paths, chunks)):
            in_range = (chunk >= 0.0) & (chunk <= 1.0)  # NaN fails both
            rows = np.flatnonzero(~in_range.all(axis=1))
            if rows.size:
                bad.append((first + rows[0], order, path, chunk[rows[0]]))
        if bad:
            sample, _, path, values = min(bad, key=lambda item: item[:2])
            raise DataError(f"{path}: sample {sample} {_describe_bad(values)}")


def find_bad_sample(dataset: Dataset, indices) -> str | None:
    """`FILE: sample I has ...` for the worst of these samples (of both files): the first with NaN
    or Inf, else the one reaching furthest outside [0, 1]; None when all are finite and in [0, 1].

    What a non-finite loss is blamed on: a few samples, read without the reader's buffers.
    """
    indices = sorted(int(i) for i in indices)
    worst = None  # (how far outside [0, 1], message)
    for path in (dataset.noisy, dataset.clean):
        values = np.empty(dataset.height * dataset.width, dataset.dtype)
        fd = open_readonly(path)
        try:
            for index in indices:
                read_exact(fd, memoryview(values).cast("B"), index * dataset.sample_nbytes, path)
                if not np.isfinite(values).all():
                    return f"{path}: sample {index} {_describe_bad(values)}"
                beyond = max(float(values.max()) - 1.0, -float(values.min()))
                if beyond > 0 and (worst is None or beyond > worst[0]):
                    worst = (beyond, f"{path}: sample {index} {_describe_bad(values)}")
        finally:
            os.close(fd)
    return None if worst is None else worst[1]


def _describe_bad(values: np.ndarray) -> str:
    """What is wrong with one sample's values: counts of NaN, Inf, out-of-range, and the range."""
    finite = values[np.isfinite(values)]
    n_out = int(((finite < 0.0) | (finite > 1.0)).sum())
    span = f" (finite min {finite.min():.6g}, max {finite.max():.6g})" if finite.size else ""
    return (f"has {int(np.isnan(values).sum())} NaN, {int(np.isinf(values).sum())} Inf and "
            f"{n_out} values outside [0, 1]{span}")
