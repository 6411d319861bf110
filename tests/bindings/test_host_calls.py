"""Host-side cuDNN calls with the real library (no GPU needed), errors, and library search."""

import pytest

from cudnn_denoise import bindings
from cudnn_denoise.bindings import _load, cublas, cudnn, ffi
from cudnn_denoise.bindings.descriptors import (
    ActivationDescriptor,
    ConvolutionDescriptor,
    FilterDescriptor,
    OpTensorDescriptor,
    TensorDescriptor,
)
from cudnn_denoise.bindings.errors import CUDNN_STATUS_NAMES, CudnnError
from cudnn_denoise.bindings.device import gpu_status


def test_versions_are_cudnn9_and_one_cuda_major():
    v = bindings.versions()
    assert v["cudnn"] // 10000 == 9
    assert v["cudnn_cudart"] // 1000 == v["cublas_cudart"] // 1000
    assert int(v["cublas"].split(".")[0]) == v["cublas_cudart"] // 1000


def conv_output_dim(n, c, h, w, k):
    x = TensorDescriptor().set_4d(cudnn.CUDNN_TENSOR_NCHW, cudnn.CUDNN_DATA_FLOAT, n, c, h, w)
    f = FilterDescriptor().set_4d(cudnn.CUDNN_DATA_FLOAT, cudnn.CUDNN_TENSOR_NCHW, k, c, 3, 3)
    conv = ConvolutionDescriptor().set_2d(1, 1, 1, 1, 1, 1, cudnn.CUDNN_CROSS_CORRELATION, cudnn.CUDNN_DATA_FLOAT)
    return conv.forward_output_dim(x, f)


@pytest.mark.parametrize("n, c, h, w, k", [
    (4, 1, 1024, 1024, 16),  # the seed's conv1
    (4, 16, 1024, 1024, 16),  # conv2
    (4, 16, 1024, 1024, 1),  # conv3
    (3, 16, 37, 53, 16),  # odd sizes
    (3, 16, 37, 53, 1),
])
def test_same_padding_keeps_height_and_width(n, c, h, w, k):
    assert conv_output_dim(n, c, h, w, k) == (n, k, h, w)


def test_descriptors_read_back_what_was_set():
    x = TensorDescriptor().set_4d_ex(cudnn.CUDNN_DATA_FLOAT, 2, 3, 5, 7, 105, 1, 21, 3)  # NHWC strides
    assert x.get_4d() == (cudnn.CUDNN_DATA_FLOAT, (2, 3, 5, 7), (105, 1, 21, 3))
    x.set_nd(cudnn.CUDNN_DATA_FLOAT, [2, 3, 5, 7], [105, 35, 7, 1])  # re-set the same descriptor
    assert x.get_4d() == (cudnn.CUDNN_DATA_FLOAT, (2, 3, 5, 7), (105, 35, 7, 1))
    f = FilterDescriptor().set_4d(cudnn.CUDNN_DATA_FLOAT, cudnn.CUDNN_TENSOR_NHWC, 16, 8, 3, 3)
    assert f.get_4d() == (cudnn.CUDNN_DATA_FLOAT, cudnn.CUDNN_TENSOR_NHWC, (16, 8, 3, 3))
    conv = ConvolutionDescriptor().set_2d(1, 2, 1, 1, 1, 1, cudnn.CUDNN_CROSS_CORRELATION, cudnn.CUDNN_DATA_FLOAT)
    conv.set_math_type(cudnn.CUDNN_FMA_MATH).set_group_count(1)
    assert conv.math_type() == cudnn.CUDNN_FMA_MATH
    assert conv.get_2d()["pad_w"] == 2 and conv.get_2d()["mode"] == cudnn.CUDNN_CROSS_CORRELATION
    act = ActivationDescriptor().set(cudnn.CUDNN_ACTIVATION_RELU, cudnn.CUDNN_PROPAGATE_NAN, 0.0)
    assert act.get() == (cudnn.CUDNN_ACTIVATION_RELU, cudnn.CUDNN_PROPAGATE_NAN, 0.0)
    with OpTensorDescriptor() as op:
        op.set(cudnn.CUDNN_OP_TENSOR_ADD, cudnn.CUDNN_DATA_FLOAT, cudnn.CUDNN_NOT_PROPAGATE_NAN)
    assert op.ptr is None


def test_negative_dimension_raises_bad_param_with_cudnn_message():
    with pytest.raises(CudnnError) as info:
        TensorDescriptor().set_4d(cudnn.CUDNN_TENSOR_NCHW, cudnn.CUDNN_DATA_FLOAT, 4, -1, 8, 8)
    err = info.value
    assert err.status == cudnn.CUDNN_STATUS_BAD_PARAM and err.status_name == "CUDNN_STATUS_BAD_PARAM"
    assert err.function == "cudnnSetTensor4dDescriptor"
    assert "cudnnSetTensor4dDescriptor failed: CUDNN_STATUS_BAD_PARAM (2000)" in str(err)
    assert "<= 0" in err.message  # cudnnGetLastErrorString's explanation


def test_every_declared_status_has_a_name():
    assert CUDNN_STATUS_NAMES[2000] == "CUDNN_STATUS_BAD_PARAM"
    assert len(CUDNN_STATUS_NAMES) == len(ffi.typeof("cudnnStatus_t").relements)


@pytest.mark.skipif(gpu_status()[0], reason="a GPU is visible here")
def test_no_gpu_gives_the_clear_error():
    from cudnn_denoise.bindings.handles import CublasHandle, CudnnHandle
    from cudnn_denoise.bindings.device import NoGpuError

    for handle in (CudnnHandle, CublasHandle):
        with pytest.raises(NoGpuError, match="no CUDA GPU is visible: "):
            handle()


@pytest.mark.skipif(gpu_status()[0], reason="a GPU is visible here")
def test_cudnn_create_without_gpu_is_not_initialized():
    out = ffi.new("cudnnHandle_t *")
    with pytest.raises(CudnnError, match="CUDNN_STATUS_NOT_INITIALIZED"):
        cudnn.cudnnCreate(out)


def test_library_not_found_lists_every_place_tried(monkeypatch, tmp_path):
    spec = _load.LibrarySpec("cuDNN", "CUDNN_DENOISE_TEST_LIB", ("nvidia/cudnn/lib/libcudnn.so.9",),
                             ("libcudnn_denoise_absent.so.9",))
    monkeypatch.setattr(_load, "site_folders", lambda: [tmp_path])
    with pytest.raises(_load.LibraryNotFound) as info:
        _load.open_library(ffi, spec)
    message = str(info.value)
    assert "libcudnn_denoise_absent.so.9" in message and "pip install" in message
    assert "CUDNN_DENOISE_TEST_LIB" in message


def test_env_var_path_that_does_not_open_is_the_error(monkeypatch, tmp_path):
    bogus = tmp_path / "libcudnn.so.9"
    bogus.write_bytes(b"not a library")
    monkeypatch.setenv("CUDNN_DENOISE_CUDNN", str(bogus))
    with pytest.raises(_load.LibraryNotFound, match=f"CUDNN_DENOISE_CUDNN={bogus} cannot be opened"):
        _load.open_library(ffi, _load.CUDNN)


def test_env_var_path_is_used_first(monkeypatch):
    monkeypatch.setenv("CUDNN_DENOISE_CUDNN", cudnn.path)
    assert _load.candidates(_load.CUDNN)[0] == cudnn.path
    assert _load.open_library(ffi, _load.CUDNN).path == cudnn.path


def test_cublas_of_another_cuda_major_is_skipped_and_reported(monkeypatch, tmp_path):
    lib = tmp_path / "nvidia" / "cublas" / "lib"
    lib.mkdir(parents=True)
    (lib / "libcublas.so.12").write_bytes(b"")
    spec = _load.LibrarySpec("cuBLAS", "CUDNN_DENOISE_TEST_LIB", ("nvidia/cublas/lib/libcublas.so.12",), ())
    monkeypatch.setattr(_load, "site_folders", lambda: [tmp_path])
    with pytest.raises(_load.LibraryNotFound, match="for CUDA 12, need 13"):
        _load.open_library(ffi, spec, wanted_major=13)


@pytest.mark.parametrize("args, match", [
    ((8907, 12080, 12080, 12), "needs cuDNN 9.x"),  # cuDNN 8.9.7 (8's encoding: major * 1000)
    ((100100, 13030, 13030, 13), "cuDNN 100100 at .* needs cuDNN 9.x"),  # a cuDNN 10.1.0
    ((92400, 13030, 12080, 13), "built for CUDA 13 but cuBLAS .* for CUDA 12"),
    ((92400, 13030, 13000, 12), "CuPy is built for CUDA 12 but cuDNN"),
])
def test_version_mismatches_are_refused_naming_each_side(args, match):
    with pytest.raises(_load.LibraryMismatch, match=match):
        _load.check_versions(*args, cudnn_path="/a/libcudnn.so.9", cublas_path="/b/libcublas.so")


@pytest.mark.parametrize("version", [90000, 91900, 99999])
def test_every_cudnn_9_is_accepted(version):
    _load.check_versions(version, 13030, 13030, 13, cudnn_path="/a/libcudnn.so.9",
                         cublas_path="/b/libcublas.so")


def test_cublas_status_names_come_from_the_declared_enum():
    from cudnn_denoise.bindings import cublas
    from cudnn_denoise.bindings.errors import CublasError, cublas_message

    err = CublasError("cublasSaxpy_v2", 7, cublas_message(cublas.lib, 7))
    assert err.status_name == "CUBLAS_STATUS_INVALID_VALUE"
    assert str(err).startswith("cublasSaxpy_v2 failed: CUBLAS_STATUS_INVALID_VALUE (7): ")


@pytest.mark.skipif(gpu_status()[0], reason="a GPU is visible here")
def test_cuda_runtime_without_gpu_raises_cuda_error_with_the_runtimes_words():
    from cudnn_denoise.bindings import CudaError, load_cudart

    cudart = load_cudart()
    count = ffi.new("int *")
    with pytest.raises(CudaError) as info:
        cudart.cudaGetDeviceCount(count)
    err = info.value
    # no driver here (CI): 35; a driver without a GPU would say 100
    assert err.status_name in ("cudaErrorInsufficientDriver", "cudaErrorNoDevice")
    assert str(err).startswith(f"cudaGetDeviceCount failed: {err.status_name} ({err.status}): {err.status_name}: ")


def test_cuda_runtime_is_of_cublas_cuda_major():
    from cudnn_denoise.bindings import load_cudart

    cudart = load_cudart()
    version = ffi.new("int *")
    cudart.cudaRuntimeGetVersion(version)  # needs no driver
    assert version[0] // 1000 == cublas.lib.cublasGetCudartVersion() // 1000
    assert _load._soname_major(cudart.path) == version[0] // 1000


def test_a_hook_sees_the_calls_of_the_thread_that_set_it_only():
    """A trace or profile follows the training step's thread; the reader's workers (which widen
    float16 batches with cudnnTransformTensor) stay out of it."""
    import contextlib
    import gc
    import threading

    from cudnn_denoise.bindings import library

    seen = []

    @contextlib.contextmanager
    def hook(name, args):
        seen.append((threading.get_ident(), name))
        yield

    def make_descriptor():
        TensorDescriptor().set_4d(cudnn.CUDNN_TENSOR_NCHW, cudnn.CUDNN_DATA_HALF, 2, 1, 3, 4).close()

    gc.collect()  # descriptors that earlier tests dropped destroy themselves when collected:
    gc.disable()  # not inside the hook's window (seen in CI: one more cudnnDestroyTensorDescriptor)
    previous = library.set_hook(hook)
    try:
        make_descriptor()
        worker = threading.Thread(target=make_descriptor)
        worker.start()
        worker.join()
    finally:
        library.set_hook(previous)
        gc.enable()
    assert [name for _, name in seen] == ["cudnnCreateTensorDescriptor",
                                         "cudnnSetTensor4dDescriptor",
                                         "cudnnDestroyTensorDescriptor"]
    assert {thread for thread, _ in seen} == {threading.get_ident()}
