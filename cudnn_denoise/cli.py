"""cudnn-denoise, the installed command: `cudnn-denoise COMMAND [ARGS]` runs one of the programs.

Each command is the module `python -m cudnn_denoise.<module>` runs, with the same flags, help and
exit codes; `--version` works on the command and on each subcommand. `python -m cudnn_denoise
COMMAND` is the same as the installed command.
"""

from __future__ import annotations

import importlib
import sys

from . import __version__
from .userio import console

SCRIPT = "cudnn-denoise"
# command -> (module, what it does)
COMMANDS = {
    "train": ("train", "train the denoising CNN on a dataset (the seed's defaults)"),
    "denoise": ("denoise", "denoise MRC / TIFF micrographs with a trained checkpoint"),
    "make-dataset": ("make_dataset", "make a dataset of micrographs, even/odd sums or synthetic"),
    "dump": ("dump", "write one training step's every intermediate, for the Fortran port"),
    "plan": ("plan", "print one training step's cuDNN and cuBLAS calls"),
    "fortran": ("fortran", "generate the Fortran interfaces and the checkpoint reader"),
    "compare": ("compare", "how far apart two runs' losses and parameters are (Python, Fortran)"),
}
VERSION = f"cudnn_denoise {__version__}"

_invoked_as: str | None = None  # "cudnn-denoise" while main() runs a subcommand


def prog(module: str) -> str:
    """A program's name in its --help and errors: `cudnn-denoise <command>` when main() runs it,
    else `python -m cudnn_denoise.<module>`."""
    if _invoked_as is not None:
        command = next(c for c, (m, _) in COMMANDS.items() if m == module)
        return f"{_invoked_as} {command}"
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
    lines += [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    lines += ["", "  --version  print the version and exit"]
    return "\n".join(lines)


def main(argv: list[str] | None = None, invoked_as: str = SCRIPT) -> int:
    global _invoked_as
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
    if argv[0] not in COMMANDS:
        console.error(invoked_as, f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}")
        return 2
    module = importlib.import_module(f"cudnn_denoise.{COMMANDS[argv[0]][0]}")
    _invoked_as = invoked_as
    try:
        return module.main(argv[1:])
    finally:
        _invoked_as = None
