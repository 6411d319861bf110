"""The installed CUDA headers: the nvidia wheels' include folders, and what C makes of expressions.

Shared by tests/bindings/test_headers.py (enum values of cffi_build/) and tests/fortran/ (enum
values and struct layouts of the generated Fortran module).
"""

import subprocess
from pathlib import Path

from cudnn_denoise.bindings import _load


def nvidia_include_dirs() -> list[str]:
    """Every nvidia/*/include folder of the installed wheels (cudnn, cu13 or cuda_runtime, nccl ...)."""
    dirs = []
    for folder in _load.site_folders():
        dirs += sorted(str(p) for p in (folder / "nvidia").glob("*/include") if p.is_dir())
    return dirs


def c_values(expressions: list[str], folder: Path) -> dict[str, int]:
    """expression -> its integer value in a C program built by gcc with cudnn.h, cublas_v2.h, nccl.h.

    Expressions may be enum constants, sizeof(...) or offsetof(...); folder receives the program.
    """
    lines = ["#include <stddef.h>", "#include <stdio.h>", "#include <cudnn.h>",
             "#include <cublas_v2.h>", "#include <nccl.h>", "int main(void) {"]
    lines += [f'    printf("%lld\\n", (long long)({e}));' for e in expressions]
    lines += ["    return 0;", "}"]
    source, exe = folder / "check.c", folder / "check"
    source.write_text("\n".join(lines) + "\n")
    includes = [f"-I{d}" for d in nvidia_include_dirs()]
    build = subprocess.run(["gcc", "-w", str(source), "-o", str(exe), *includes],
                           capture_output=True, text=True)
    assert build.returncode == 0, (f"check program did not compile against {includes}:\n"
                                   f"{build.stderr[-3000:]}")
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return dict(zip(expressions, (int(v) for v in out.split()), strict=True))
