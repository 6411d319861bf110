"""The declarations in cffi_build/ against the installed headers and libraries.

Enum values are checked by compiling a C program against the real headers (gcc, include folders of
the nvidia wheels, nccl.h included) that prints each declared constant; functions by resolving each
symbol, NCCL's too (CI installs nvidia-nccl-cu13 through torch, nvidia-nccl-cu12 in the cu12 run).
"""

import sys
from pathlib import Path

import pytest

from cudnn_denoise.bindings import cublas, cudnn, load_cudart, load_nccl
from declared import enum_constants, function_names
from installed_headers import c_values


@pytest.fixture(scope="module")
def header_values(tmp_path_factory) -> dict[str, int]:
    return c_values(sorted(enum_constants()), tmp_path_factory.mktemp("headers"))


def test_every_enum_value_matches_the_installed_headers(header_values):
    declared = enum_constants()
    assert len(declared) > 100
    wrong = {n: (v, header_values[n]) for n, v in declared.items() if header_values[n] != v}
    assert not wrong, f"declared (ours, header's) values differ: {wrong}"


@pytest.mark.parametrize("library, prefix, least", [(cudnn, "cudnn", 10), (cublas, "cublas", 10),
                                                  (load_nccl(), "nccl", 9), (load_cudart(), "cuda", 25)],
                         ids=["cudnn", "cublas", "nccl", "cudart"])
def test_every_declared_function_resolves_in_the_loaded_library(library, prefix, least):
    names = function_names(library.lib, prefix)
    assert len(names) >= least
    missing = []
    for name in names:
        try:
            getattr(library.lib, name)
        except AttributeError:
            missing.append(name)
    assert not missing, f"{library.path} lacks {missing}"


def test_libraries_come_from_the_wheels_of_this_environment():
    # CI installs the wheels into the test environment: the search must find them there.
    prefix = str(Path(sys.prefix).resolve())
    assert str(Path(cudnn.path).resolve()).startswith(prefix), cudnn.path
    assert str(Path(cublas.path).resolve()).startswith(prefix), cublas.path
    assert str(Path(load_nccl().path).resolve()).startswith(prefix), load_nccl().path
    assert str(Path(load_cudart().path).resolve()).startswith(prefix), load_cudart().path
