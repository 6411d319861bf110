"""The command-line flags that name a dataset (--data, or --noisy and --clean) and open it.

Every program that reads a dataset takes the same flags, each optionally after a prefix
("val-" for train's held-out set).
"""

from __future__ import annotations

import argparse

from ..userio.arguments import integer
from .format import (
    CLEAN_NAME,
    META_NAME,
    NOISY_NAME,
    DataError,
    Dataset,
    check_values,
    open_dataset,
    open_dir,
)


def add_data_arguments(parser: argparse.ArgumentParser, prefix: str = "",
                       description: str | None = None) -> None:
    """Add --data, --noisy/--clean, --patch-size and --check-data, each after a `prefix`.

    A prefix such as "val-" lets one CLI take a second dataset (`description` says what it is
    for). dataset_from_args reads them back.
    """
    group = parser.add_argument_group(f"{prefix}dataset" if prefix else "dataset", description)
    source = group.add_mutually_exclusive_group()
    source.add_argument(f"--{prefix}data", metavar="DIR",
                        help=f"directory holding {NOISY_NAME} and {CLEAN_NAME} "
                             f"(and optionally {META_NAME})")
    source.add_argument(f"--{prefix}noisy", metavar="FILE",
                        help=f"noisy float32 file, sample-major (N, H, W) (float16 where a "
                             f"{META_NAME} beside it says so); needs --{prefix}clean")
    group.add_argument(f"--{prefix}clean", metavar="FILE",
                       help=f"clean file paired sample by sample with --{prefix}noisy, same type")
    group.add_argument(f"--{prefix}patch-size", type=integer(minimum=1), metavar="PX",
                       help=f"sample height = width, needed when no {META_NAME} says it")
    group.add_argument(f"--{prefix}check-data", action="store_true",
                       help="scan every value for NaN, Inf and values outside [0, 1] before use")


def dataset_from_args(args: argparse.Namespace, prefix: str = "",
                      required: bool = True) -> Dataset | None:
    """Open (and with --check-data scan) the dataset that add_data_arguments' flags name.

    Returns None when no dataset was named and `required` is false (a CLI with a default dataset).
    """
    dest = prefix.replace("-", "_")
    data_dir = getattr(args, f"{dest}data")
    noisy = getattr(args, f"{dest}noisy")
    clean = getattr(args, f"{dest}clean")
    patch_size = getattr(args, f"{dest}patch_size")
    if data_dir is not None and clean is not None:
        raise DataError(f"--{prefix}data DIR already names the clean file; drop --{prefix}clean")
    if clean is not None and noisy is None:
        raise DataError(f"--{prefix}clean needs --{prefix}noisy")
    if data_dir is not None:
        dataset = open_dir(data_dir, patch_size, f"--{prefix}patch-size")
    elif noisy is not None:
        if clean is None:
            raise DataError(f"--{prefix}noisy needs --{prefix}clean")
        dataset = open_dataset(noisy, clean, patch_size, f"--{prefix}patch-size")
    elif required:
        raise DataError(f"no dataset: give --{prefix}data DIR or --{prefix}noisy FILE "
                        f"--{prefix}clean FILE")
    else:
        return None
    if getattr(args, f"{dest}check_data"):
        check_values(dataset)
    return dataset
