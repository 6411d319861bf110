"""A dataset's samples stored as another dtype (make_dataset --from-dataset): float32 <-> float16.

The source is read in chunks of samples (format.iter_chunks: dropped from the page cache once
read, so the copy leaves memory as it found it) and never modified; the copy is written by
writer.write_pairs into another folder, with a dataset.json that records where it came from.
float32 -> float16 rounds each value to the nearest float16 (for values in [0, 1] at most 2**-12
off; docs/performance.md measures what that costs; a value beyond float16's range, 65504, is
refused, naming its sample); float16 -> float32 is exact.
"""

from __future__ import annotations

import os
from pathlib import Path

from cudnn_denoise.data.format import FILE_DTYPES, DataError, Dataset, iter_chunks
from cudnn_denoise.data.writer import check_target, write_pairs

CHUNK_SAMPLES = 16


def recast_dataset(source: Dataset, out_dir: str | os.PathLike, dtype: str, *,
                   overwrite: bool = False, progress=None) -> Dataset:
    """Write `source`'s samples, stored as `dtype`, into out_dir; return the new Dataset.
    `progress(done, total)` after each chunk."""
    if dtype not in FILE_DTYPES:
        raise DataError(f"--dtype must be one of {', '.join(FILE_DTYPES)}, not {dtype!r}")
    if FILE_DTYPES[dtype] == source.dtype:
        raise DataError(f"{source.noisy.parent}: already holds {dtype}: nothing to do "
                        "(--dtype names the type to store the copy as)")
    out_dir = Path(out_dir)
    if out_dir.exists() and out_dir.resolve() == source.noisy.parent.resolve():
        raise DataError(f"--out {out_dir}: is the source's folder; a copy never replaces its "
                        "source: name another folder")
    check_target(out_dir, overwrite)
    made_by = {"recast_by": "cudnn_denoise.make_dataset --from-dataset",
               "source": str(source.noisy.parent.resolve()), "source_dtype": source.dtype.name,
               "source_made_by": source.meta.get("made_by")}
    shape = (source.height, source.width)

    def chunks():
        for first, noisy, clean in iter_chunks(source, CHUNK_SAMPLES):
            yield noisy.reshape(-1, *shape), clean.reshape(-1, *shape)
            if progress is not None:
                progress(first + len(noisy), source.count)

    return write_pairs(out_dir, chunks(), *shape, made_by, overwrite=overwrite, dtype=dtype,
                       origin=str(source.noisy.parent))
