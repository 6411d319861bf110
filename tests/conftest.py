"""Shared test setup: GPU-marked tests are skipped, with the reason, where no GPU is usable; the
small dataset that the CLI and the distributed tests share; small file systems for full disks."""

import subprocess

import pytest

from cudnn_denoise.data.synthetic import write_dataset
from cudnn_denoise.bindings.device import gpu_status


def pytest_report_header(config):
    ok, reason = gpu_status()
    return f"cudnn_denoise GPU: {reason if ok else 'none (' + reason + ')'}"


def pytest_collection_modifyitems(config, items):
    ok, reason = gpu_status()
    if ok:
        return
    skip = pytest.mark.skip(reason=f"needs a CUDA GPU: {reason}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def backend_api():
    """Skip, with cuDNN's words, where graph-API descriptors cannot be finalized without a GPU:
    cuDNN 9.28 (the cu12 wheels) loads libcudnn_engines_runtime_compiled to finalize any backend
    descriptor, and that library links the driver's libcuda.so.1 (9.24, the cu13 wheels, does not)."""
    from cudnn_denoise.bindings import CudnnError
    from cudnn_denoise.bindings.backend import BackendDescriptor

    with BackendDescriptor("CUDNN_BACKEND_POINTWISE_DESCRIPTOR") as probe:
        probe.set("CUDNN_ATTR_POINTWISE_MODE", "CUDNN_TYPE_POINTWISE_MODE", probe.cudnn.CUDNN_POINTWISE_ADD)
        probe.set("CUDNN_ATTR_POINTWISE_MATH_PREC", "CUDNN_TYPE_DATA_TYPE", probe.cudnn.CUDNN_DATA_FLOAT)
        try:
            probe.finalize()
        except CudnnError as exc:
            if exc.status_name != "CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED":
                raise
            pytest.skip("this cuDNN finalizes graph-API descriptors only where the GPU driver is installed "
                        f"(libcudnn_engines_runtime_compiled links libcuda.so.1): {exc}")


@pytest.fixture(scope="session")
def data32(tmp_path_factory):
    """40 synthetic pairs of 32 x 32 (10 batches of 4, or of 2 x 2 on two ranks): read only."""
    return write_dataset(tmp_path_factory.mktemp("data32"), 40, 32, seed=1)


@pytest.fixture
def small_fs(tmp_path):
    """Factory: mount(size, read_only=False) -> a fresh tmpfs of `size` bytes in tmp_path, for a
    real full disk (ENOSPC) or read-only file system (EROFS); skipped, with the reason, where
    mounting is not allowed (it needs root). Unmounted after the test."""
    mounted = []

    def mount(size: int = 1 << 20, read_only: bool = False):
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"a small file system needs `mount -t tmpfs` (root): {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)
