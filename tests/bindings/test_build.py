"""The committed cffi module is what cffi_build/build.py makes from the declarations today."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_committed_ffi_module_is_up_to_date(tmp_path):
    spec = importlib.util.spec_from_file_location("cffi_build_build", ROOT / "cffi_build" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    fresh = build.module_source(tmp_path)
    committed = (ROOT / "cudnn_denoise" / "bindings" / "_ffi.py").read_text()
    assert fresh == committed, "cudnn_denoise/bindings/_ffi.py is stale: run `python cffi_build/build.py`"
