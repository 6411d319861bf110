"""Shared test setup: GPU-marked tests are skipped, with the reason, where no GPU is usable; the
small dataset that the CLI and the distributed tests share."""

import pytest

from cudnn_denoise.data.synthetic import write_dataset
from cudnn_denoise.device import gpu_status


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
def data32(tmp_path_factory):
    """40 synthetic pairs of 32 x 32 (10 batches of 4, or of 2 x 2 on two ranks): read only."""
    return write_dataset(tmp_path_factory.mktemp("data32"), 40, 32, seed=1)
