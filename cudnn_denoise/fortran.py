"""CLI: generate the Fortran 2008 modules of the port from cffi_build/ and cudnn_denoise.params.

    python -m cudnn_denoise.fortran --out DIR           the two modules (port/fortran_source.py)
    python -m cudnn_denoise.fortran --doc FILE          docs/fortran.md's step from the program's
    python -m cudnn_denoise.fortran --link-flags        how fortran/Makefile links denoise_train

The committed copies of the modules live in fortran/ (`make -C fortran generate`). --link-flags
prints the gfortran flags for the cuDNN, cuBLAS and CUDA runtime libraries that this Python finds
(bindings._load: the nvidia wheels first), their folders as run paths.
"""

from __future__ import annotations

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
from cudnn_denoise.userio import arguments, console
from cudnn_denoise.userio.files import read_bytes, write_atomic


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


def build_parser() -> arguments.ArgumentParser:
    parser = arguments.ArgumentParser(
        prog=cli.prog("fortran"),
        description=f"Write {INTERFACES_FILE} (cuDNN/cuBLAS interfaces from cffi_build/) and "
                    f"{CHECKPOINT_FILE} (the parameter layout, params.bin I/O) into a folder.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("-o", "--out", type=Path, metavar="DIR",
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
        try:
            flags = link_flags()
        except (OSError, ValueError, ImportError) as exc:
            return _error(f"--link-flags: the cuDNN, cuBLAS or CUDA runtime library cannot be found: {exc}")
        print(" ".join(flags))
    elif args.doc is not None:
        try:
            write_doc(args.doc)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            return _error(f"--doc {args.doc}: {_why(exc, args.doc)}")
        print(f"wrote {args.doc}")
    else:
        if args.out.exists() and not args.out.is_dir():
            return _error(f"--out {args.out}: exists and is not a folder")
        try:
            written = generate(args.out)
        except (OSError, ValueError) as exc:
            return _error(f"--out {args.out}: {_why(exc, args.out)}")
        for path in written:
            print(f"wrote {path}")
    return 0


def write_doc(doc: Path) -> None:
    """Replace the step in doc (a regular file, never blocking on a FIFO), atomically: a doc that
    cannot take it is left as it was."""
    text = read_bytes(doc, ValueError).decode("utf-8")
    write_atomic(doc, doc_with_step(text, STEP_FILE.read_text()).encode("utf-8"))


def _why(exc: BaseException, path: Path) -> str:
    """exc's reason, without a repeat of the path the line already names."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() + (f" ({exc.filename})" if exc.filename and Path(exc.filename) != path else "")
    text = str(exc)
    return text[len(f"{path}: "):] if text.startswith(f"{path}: ") else text


def _error(line: str) -> int:
    console.error(cli.prog("fortran"), line)
    return 2


if __name__ == "__main__":
    sys.exit(main())
