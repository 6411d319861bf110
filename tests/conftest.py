"""Shared test setup: GPU-marked tests are skipped, with the reason, where no GPU is usable."""

import pytest

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
