"""Fortran tests: the helper modules of tests/bindings (declared, installed_headers) on the path."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bindings"))
