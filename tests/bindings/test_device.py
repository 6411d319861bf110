"""device: why no GPU can be used, said in a newcomer's words (no driver at all, an old driver, no
device) rather than the CUDA runtime's."""

from __future__ import annotations

import pytest

from cudnn_denoise.bindings import device
from cudnn_denoise.bindings.device import (
    CUDA_ERROR_INSUFFICIENT_DRIVER,
    CUDA_ERROR_NO_DEVICE,
    explain_cuda_error,
)

RUNTIME_TEXT = (
    "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version"
)


@pytest.mark.parametrize("status", [CUDA_ERROR_INSUFFICIENT_DRIVER, CUDA_ERROR_NO_DEVICE])
def test_without_a_driver_it_says_no_gpu_or_driver(status):
    assert explain_cuda_error(status, RUNTIME_TEXT, driver=False) == (
        "no NVIDIA GPU or driver was found (libcuda.so.1 is not installed)"
    )


def test_an_old_driver_is_called_old():
    text = explain_cuda_error(CUDA_ERROR_INSUFFICIENT_DRIVER, RUNTIME_TEXT, driver=True)
    assert text.startswith("the NVIDIA driver is older than the CUDA runtime") and "cuda12" in text


def test_a_driver_without_a_device_says_so():
    assert explain_cuda_error(CUDA_ERROR_NO_DEVICE, "no device", driver=True).startswith(
        "the NVIDIA driver sees no GPU"
    )


def test_other_errors_keep_the_runtime_text():
    assert explain_cuda_error(999, "cudaErrorUnknown: unknown error", driver=True) == (
        "CUDA runtime error: cudaErrorUnknown: unknown error"
    )


@pytest.mark.skipif(device.driver_installed(), reason="the NVIDIA driver is installed here")
def test_this_machine_without_a_driver_says_so():
    ok, reason = device.gpu_status()
    assert not ok
    assert reason.startswith("no NVIDIA GPU or driver was found") or reason.startswith(
        "CuPy is not installed"
    )
