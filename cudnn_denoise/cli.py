"""cudnn-denoise, the installed command: `cudnn-denoise COMMAND [ARGS]` runs one of the programs.

Each command is the module `python -m cudnn_denoise.<module>` runs, with the same flags, help and
exit codes, named either way (make-dataset or make_dataset); `--version` works on the command and
on each subcommand. `python -m cudnn_denoise COMMAND` is the same as the installed command.
"""

from __future__ import annotations

import importlib
import sys

from . import __version__
from .userio import console

SCRIPT = "cudnn-denoise"
# program (its module, cudnn_denoise.<program>) -> what it does
PROGRAMS = {
    "train": "train the denoising CNN on a dataset (the seed's defaults)",
    "denoise": "denoise MRC / TIFF micrographs with a trained checkpoint",
    "make_dataset": "make a dataset of micrographs, even/odd sums or synthetic",
    "dump": "write one training step's every intermediate, for the Fortran port",
    "plan": "print one training step's cuDNN and cuBLAS calls",
    "fortran": "generate the Fortran interfaces and the checkpoint reader",
    "compare": "how far apart two runs' losses and parameters are (Python, Fortran)",
}
# command -> program: the program's name with - for _ (make-dataset)
COMMANDS = {name.replace("_", "-"): name for name in PROGRAMS}
VERSION = f"cudnn_denoise {__version__}"

_running: tuple[str, str] | None = None  # (module, "cudnn-denoise COMMAND" as typed) in main()


def prog(module: str) -> str:
    """A program's name in its --help and errors: `cudnn-denoise <command>` as typed when main()
    runs it, else `python -m cudnn_denoise.<module>`."""
    if _running is not None and _running[0] == module:
        return _running[1]
    return f"python -m cudnn_denoise.{module}"


def description(doc: str) -> str:
    """A program's --help description: its docstring's first paragraph without the
    `python -m cudnn_denoise.<module>: ` it begins with, one of the two ways to run it."""
    text = doc.split("\n\n")[0].split(": ", 1)[1]
    return text[0].upper() + text[1:]


def add_version(parser) -> None:
    """--version: print the package's version and exit 0."""
    parser.add_argument("--version", action="version", version=VERSION,
                        help="print the version and exit")


def usage(invoked_as: str) -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: {invoked_as} COMMAND [ARGS...]   ({invoked_as} COMMAND --help: its flags)",
             "", "Train the seed's cryo-EM denoising CNN with raw cuDNN calls, and use it.",
             "", "commands:"]
    lines += [f"  {name:<{width}}  {PROGRAMS[module]}" for name, module in COMMANDS.items()]
    lines += ["", "  --version  print the version and exit"]
    return "\n".join(lines)


def main(argv: list[str] | None = None, invoked_as: str = SCRIPT) -> int:
    global _running
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if not argv:
        print(usage(invoked_as), file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(usage(invoked_as))
        return 0
    if argv[0] == "--version":
        print(VERSION)
        return 0
    # a command, or a program's own name (make_dataset), as the docs' `python -m` lines spell it
    name = COMMANDS.get(argv[0], argv[0] if argv[0] in PROGRAMS else None)
    if name is None:
        console.error(invoked_as, f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}")
        return 2
    module = importlib.import_module(f"cudnn_denoise.{name}")
    _running = (name, f"{invoked_as} {argv[0]}")
    try:
        return module.main(argv[1:])
    finally:
        _running = None
