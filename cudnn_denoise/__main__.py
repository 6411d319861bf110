"""python -m cudnn_denoise COMMAND: the installed `cudnn-denoise` command (cli.py)."""

import sys

from .cli import main

sys.exit(main(invoked_as="python -m cudnn_denoise"))
