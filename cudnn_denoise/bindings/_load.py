"""Find and open libcudnn, libcublas, libnccl and libcudart at run time; check that they fit together.

Search order for each library, every step logged at debug level:
  1. the environment variable (CUDNN_DENOISE_CUDNN, CUDNN_DENOISE_CUBLAS): a full path;
  2. the nvidia pip wheels in every site-packages folder on sys.path:
       cuDNN   nvidia/cudnn/lib/libcudnn.so.9           (nvidia-cudnn-cu12 and -cu13 alike)
       cuBLAS  nvidia/cu13/lib/libcublas.so.13          (nvidia-cublas, CUDA 13 layout)
               nvidia/cublas/lib/libcublas.so.12        (nvidia-cublas-cu12)
               nvidia/nccl/lib/libnccl.so.2             (NCCL: nvidia-nccl-cu13 and -cu12 alike)
       CUDA runtime nvidia/cu13/lib/libcudart.so.13     (nvidia-cuda-runtime, CUDA 13 layout)
               nvidia/cuda_runtime/lib/libcudart.so.12  (nvidia-cuda-runtime-cu12)
  3. the system loader: libcudnn.so.9, libcublas.so.13, libcublas.so.12, libnccl.so.2,
     libcudart.so.13, libcudart.so.12.
cuBLAS is opened first (cuDNN's engines use it). NCCL (env CUDNN_DENOISE_NCCL) is opened only by a
run over several processes (bindings.load_nccl). When a library cannot be opened, LibraryNotFound
lists every place tried and the pip command that fixes it. The CUDA runtime (env CUDNN_DENOISE_CUDART)
is opened only for the Fortran port (its link flags, bindings.load_cudart): CuPy brings its own.
"""

from __future__ import annotations

import logging
import os
import site
import sys
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CUDNN_MAJOR = 9
PIP_FIX = "pip install 'cudnn_denoise[cuda13]' (or '[cuda12]' with cupy-cuda12x)"


class LibraryNotFound(ImportError):
    """A library could not be opened from any place searched."""


class LibraryMismatch(ImportError):
    """The libraries found do not fit each other, CuPy, or the major version we need."""


@dataclass(frozen=True)
class LibrarySpec:
    """Where to look for one library."""

    name: str  # for messages: "cuDNN"
    env_var: str
    wheel_paths: tuple[str, ...]  # relative to a site-packages folder
    system_names: tuple[str, ...]
    fix: str = PIP_FIX  # the install command the error suggests


CUDNN = LibrarySpec(
    "cuDNN",
    "CUDNN_DENOISE_CUDNN",
    ("nvidia/cudnn/lib/libcudnn.so.9",),
    ("libcudnn.so.9",),
)
CUBLAS = LibrarySpec(
    "cuBLAS",
    "CUDNN_DENOISE_CUBLAS",
    ("nvidia/cu13/lib/libcublas.so.13", "nvidia/cublas/lib/libcublas.so.12"),
    ("libcublas.so.13", "libcublas.so.12"),
)
NCCL = LibrarySpec(
    "NCCL",
    "CUDNN_DENOISE_NCCL",
    ("nvidia/nccl/lib/libnccl.so.2",),
    ("libnccl.so.2",),
    fix="pip install nvidia-nccl-cu13 (or nvidia-nccl-cu12 with the CUDA 12 wheels)",
)

CUDART = LibrarySpec(
    "CUDA runtime",
    "CUDNN_DENOISE_CUDART",
    ("nvidia/cu13/lib/libcudart.so.13", "nvidia/cuda_runtime/lib/libcudart.so.12"),
    ("libcudart.so.13", "libcudart.so.12"),
    fix="pip install nvidia-cuda-runtime (or nvidia-cuda-runtime-cu12 with the CUDA 12 wheels)",
)


@dataclass
class Opened:
    """An opened library and the path (or loader name) it came from."""

    lib: object
    path: str
    tried: list[str] = field(default_factory=list)


def site_folders() -> list[Path]:
    """Every site-packages-like folder, in sys.path order, without duplicates."""
    folders = [*sys.path, *site.getsitepackages(), site.getusersitepackages()]
    seen: dict[str, Path] = {}
    for folder in folders:
        if folder and os.path.isdir(folder):
            seen.setdefault(os.path.realpath(folder), Path(folder))
    return list(seen.values())


def candidates(spec: LibrarySpec) -> list[str]:
    """Places to try, in order: the env var's path, wheel files that exist, then loader names."""
    found = []
    env = os.environ.get(spec.env_var)
    if env:
        found.append(env)
    for folder in site_folders():
        for rel in spec.wheel_paths:
            path = folder / rel
            if path.is_file():
                found.append(str(path))
    return found + list(spec.system_names)


def open_library(ffi, spec: LibrarySpec, wanted_major: int | None = None) -> Opened:
    """Open the first candidate that loads; with wanted_major, skip cuBLAS builds of another CUDA.

    The env var is taken as given: if it fails to load, that is the error, not a fallback.
    """
    tried = []
    env = os.environ.get(spec.env_var)
    for candidate in candidates(spec):
        if wanted_major is not None and _soname_major(candidate) not in (None, wanted_major):
            tried.append(f"{candidate} (for CUDA {_soname_major(candidate)}, need {wanted_major})")
            continue
        try:
            lib = ffi.dlopen(candidate)
        except OSError as exc:
            log.debug("%s: could not open %s: %s", spec.name, candidate, exc)
            tried.append(f"{candidate} ({_first_line(exc)})")
            if env and candidate == env:
                raise LibraryNotFound(f"{spec.env_var}={env} cannot be opened: {_first_line(exc)}") from exc
            continue
        log.debug("%s: opened %s", spec.name, candidate)
        return Opened(lib, candidate, tried)
    places = "; ".join(tried) if tried else "nothing found"
    raise LibraryNotFound(
        f"{spec.name} could not be loaded. Tried: {places}. "
        f"Set {spec.env_var} to the library's full path, or {spec.fix}."
    )


def _soname_major(path: str) -> int | None:
    """The CUDA major version a cuBLAS or CUDA runtime file name encodes (libcublas.so.13 -> 13)."""
    name = os.path.basename(path)
    if name.startswith(("libcublas.so.", "libcudart.so.")):
        major = name.split(".")[2]
        return int(major) if major.isdigit() else None
    return None


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def cupy_cuda_major() -> int | None:
    """The CUDA major version CuPy was built for (its runtime's version), or None without CuPy."""
    try:
        import cupy
    except ImportError:
        return None
    try:
        return cupy.cuda.runtime.runtimeGetVersion() // 1000
    except Exception as exc:  # a broken CuPy install: say so in debug, do not block CPU work
        log.debug("CuPy runtime version unavailable: %s", exc)
        return None


def check_versions(cudnn_version: int, cudnn_cudart: int, cublas_cudart: int, cupy_major: int | None,
                   cudnn_path: str, cublas_path: str) -> None:
    """Refuse a cuDNN that is not 9.x, or libraries built for different CUDA majors."""
    if cudnn_version // 10000 != CUDNN_MAJOR:
        raise LibraryMismatch(
            f"cuDNN {cudnn_version} at {cudnn_path}: cudnn_denoise needs cuDNN {CUDNN_MAJOR}.x")
    cudnn_major, cublas_major = cudnn_cudart // 1000, cublas_cudart // 1000
    if cudnn_major != cublas_major:
        raise LibraryMismatch(
            f"cuDNN at {cudnn_path} is built for CUDA {cudnn_major} but cuBLAS at {cublas_path} "
            f"for CUDA {cublas_major}; install one CUDA major's wheels: {PIP_FIX}")
    if cupy_major is not None and cupy_major != cudnn_major:
        raise LibraryMismatch(
            f"CuPy is built for CUDA {cupy_major} but cuDNN at {cudnn_path} and cuBLAS at {cublas_path} "
            f"for CUDA {cudnn_major}; use cupy-cuda{cudnn_major}x, or the nvidia-*-cu{cupy_major} wheels")
