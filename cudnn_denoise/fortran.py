"""CLI: generate the Fortran 2008 modules of the port from cffi_build/ and cudnn_denoise.params.

    python -m cudnn_denoise.fortran --out DIR           the two modules (port/fortran_source.py)
    python -m cudnn_denoise.fortran --doc FILE          docs/fortran.md's step from the program's
    python -m cudnn_denoise.fortran --link-flags        how fortran/Makefile links denoise_train

The committed copies of the modules live in fortran/ (`make -C fortran generate`). --link-flags
prints the gfortran flags for the cuDNN, cuBLAS and CUDA runtime libraries that this Python finds
(bindings._load: the nvidia wheels first), their folders as run paths.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cudnn_denoise import cli
from cudnn_denoise.port.fortran_source import (
    CHECKPOINT_FILE,
    INTERFACES_FILE,
    ROOT,
    STEP_FILE,
    doc_with_step,
    generate,
)


def library_paths() -> list[Path]:
    """The cuDNN, cuBLAS and CUDA runtime files that Python loads (a bare name: the system loader's)."""
    from cudnn_denoise.bindings import load, load_cudart

    return [Path(lib.path) for lib in (*load(), load_cudart())]


def library_folders() -> list[Path]:
    """The folders of library_paths(), each once, in order (none for a bare loader name)."""
    return list(dict.fromkeys(p.parent for p in library_paths() if p.parent != Path(".")))


def link_flags() -> list[str]:
    """-L, -l:NAME and -rpath flags for the cuDNN, cuBLAS and CUDA runtime that Python loads."""
    folders = library_folders()
    return ([f"-L{f}" for f in folders] + [f"-Wl,-rpath,{f}" for f in folders]
            + [f"-l:{p.name}" for p in library_paths()])


# ---- the CLI ----


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=cli.prog("fortran"),
        description=f"Write {INTERFACES_FILE} (cuDNN/cuBLAS interfaces from cffi_build/) and "
                    f"{CHECKPOINT_FILE} (the parameter layout, params.bin I/O) into a folder.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", type=Path, metavar="DIR",
                      help="folder to write the two .f90 files into (created if missing; "
                           "the committed copies are in fortran/)")
    what.add_argument("--doc", type=Path, metavar="FILE",
                      help=f"copy {STEP_FILE.relative_to(ROOT)} into FILE (docs/fortran.md) after "
                           "its marker line")
    what.add_argument("--link-flags", action="store_true",
                      help="print the gfortran flags that link the cuDNN, cuBLAS and CUDA runtime "
                           "libraries this Python loads (fortran/Makefile uses them)")
    cli.add_version(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.link_flags:
        print(" ".join(link_flags()))
    elif args.doc is not None:
        args.doc.write_text(doc_with_step(args.doc.read_text(), STEP_FILE.read_text()))
        print(f"wrote {args.doc}")
    else:
        for path in generate(args.out):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
