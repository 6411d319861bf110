"""Datasets of (noisy, clean) float32 patches: the format, a streaming reader, synthetic data.

format.py describes and validates the files, flags.py names them on a command line; reader.py
streams batches into pinned host memory and onto the GPU; synthetic.py makes cryo-EM-like pairs.
"""

from cudnn_denoise.data.flags import add_data_arguments, dataset_from_args
from cudnn_denoise.data.format import (
    DataError,
    Dataset,
    check_values,
    open_dataset,
    open_dir,
)
from cudnn_denoise.data.reader import Batch, PairReader
from cudnn_denoise.data.synthetic import SyntheticPatches, write_dataset

__all__ = [
    "Batch",
    "DataError",
    "Dataset",
    "PairReader",
    "SyntheticPatches",
    "add_data_arguments",
    "check_values",
    "dataset_from_args",
    "open_dataset",
    "open_dir",
    "write_dataset",
]
