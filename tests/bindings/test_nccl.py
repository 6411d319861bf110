"""NCCL through the same bindings: lazy loading, host-side calls with the real library, errors, search.

No GPU is needed: ncclGetVersion and ncclGetUniqueId run on the host, and a NULL communicator gives
ncclInvalidArgument before NCCL touches a device.
"""

import subprocess
import sys

import pytest

from cudnn_denoise.bindings import _load, ffi, load_nccl, nccl_version
from cudnn_denoise.bindings.errors import NCCL_RESULT_NAMES, NcclError


def test_importing_the_package_and_the_trainer_does_not_open_nccl():
    code = ("import sys, cudnn_denoise.bindings, cudnn_denoise.training.loop, cudnn_denoise.distributed.world; "
            "from cudnn_denoise.bindings import cudnn; cudnn.cudnnGetVersion(); "
            "print(any('nccl' in line for line in open('/proc/self/maps')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr


def test_version_is_nccl2():
    assert nccl_version(load_nccl()) // 10000 == 2


def test_unique_id_is_128_bytes_and_fresh_each_time():
    ids = [ffi.new("ncclUniqueId *") for _ in range(2)]
    for uid in ids:
        load_nccl().ncclGetUniqueId(uid)
    assert ffi.sizeof("ncclUniqueId") == 128
    assert bytes(ffi.buffer(ids[0])) != bytes(ffi.buffer(ids[1]))


def test_null_communicator_raises_invalid_argument_with_nccl_message():
    nccl = load_nccl()
    with pytest.raises(NcclError) as info:
        nccl.ncclAllReduce(ffi.NULL, ffi.NULL, 1, nccl.ncclFloat32, nccl.ncclSum, ffi.NULL, ffi.NULL)
    err = info.value
    assert err.status == nccl.ncclInvalidArgument and err.status_name == "ncclInvalidArgument"
    assert err.function == "ncclAllReduce"
    assert str(err).startswith("ncclAllReduce failed: ncclInvalidArgument (4): invalid argument")


def test_every_declared_result_has_a_name():
    assert NCCL_RESULT_NAMES[0] == "ncclSuccess"
    assert len(NCCL_RESULT_NAMES) == len(ffi.typeof("ncclResult_t").relements)


def test_nccl_not_found_lists_every_place_tried(monkeypatch, tmp_path):
    spec = _load.LibrarySpec("NCCL", "CUDNN_DENOISE_TEST_LIB", _load.NCCL.wheel_paths,
                             ("libnccl_denoise_absent.so.2",), fix=_load.NCCL.fix)
    monkeypatch.setattr(_load, "site_folders", lambda: [tmp_path])
    with pytest.raises(_load.LibraryNotFound) as info:
        _load.open_library(ffi, spec)
    message = str(info.value)
    assert "NCCL could not be loaded" in message and "libnccl_denoise_absent.so.2" in message
    assert "CUDNN_DENOISE_TEST_LIB" in message and "nvidia-nccl-cu13" in message


def test_nccl_env_var_path_is_used_first(monkeypatch):
    path = load_nccl().path
    monkeypatch.setenv("CUDNN_DENOISE_NCCL", path)
    assert _load.candidates(_load.NCCL)[0] == path
    assert _load.open_library(ffi, _load.NCCL).path == path
