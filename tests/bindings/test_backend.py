"""The graph (backend) API's descriptors host-side, with the real library (no GPU needed)."""

import pytest

from cudnn_denoise.bindings import cudnn
from cudnn_denoise.bindings.backend import ELEMENT_TYPES, BackendDescriptor
from cudnn_denoise.bindings.errors import CudnnError


def nhwc_tensor(dims, strides, uid=1):
    t = BackendDescriptor("CUDNN_BACKEND_TENSOR_DESCRIPTOR")
    t.set("CUDNN_ATTR_TENSOR_DATA_TYPE", "CUDNN_TYPE_DATA_TYPE", cudnn.CUDNN_DATA_FLOAT)
    t.set("CUDNN_ATTR_TENSOR_DIMENSIONS", "CUDNN_TYPE_INT64", dims)
    t.set("CUDNN_ATTR_TENSOR_STRIDES", "CUDNN_TYPE_INT64", strides)
    t.set("CUDNN_ATTR_TENSOR_UNIQUE_ID", "CUDNN_TYPE_INT64", uid)
    t.set("CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT", "CUDNN_TYPE_INT64", 16)
    return t


@pytest.mark.usefixtures("backend_api")
def test_a_finalized_tensor_reads_back_what_was_set():
    dims, strides = [4, 16, 1024, 1024], [16 * 1024 * 1024, 1, 16 * 1024, 16]  # NHWC
    with nhwc_tensor(dims, strides, uid=7).finalize() as t:
        assert t.get("CUDNN_ATTR_TENSOR_DIMENSIONS", "CUDNN_TYPE_INT64", 8) == dims
        assert t.get("CUDNN_ATTR_TENSOR_STRIDES", "CUDNN_TYPE_INT64", 8) == strides
        assert t.get("CUDNN_ATTR_TENSOR_UNIQUE_ID", "CUDNN_TYPE_INT64") == [7]
        assert t.count("CUDNN_ATTR_TENSOR_DIMENSIONS", "CUDNN_TYPE_INT64") == 4


@pytest.mark.usefixtures("backend_api")
def test_a_bad_tensor_is_refused_at_finalize_with_cudnns_reason():
    t = nhwc_tensor([4, -16, 8, 8], [1024, 1, 128, 16])
    with pytest.raises(CudnnError) as caught:
        t.finalize()
    assert caught.value.function == "cudnnBackendFinalize"
    assert caught.value.status_name.startswith("CUDNN_STATUS_BAD_PARAM")
    t.close()


def test_an_unknown_attribute_type_is_a_key_error():
    with BackendDescriptor("CUDNN_BACKEND_TENSOR_DESCRIPTOR") as t, pytest.raises(KeyError):
        t.set("CUDNN_ATTR_TENSOR_UNIQUE_ID", "CUDNN_TYPE_NOT_A_TYPE", 1)


def test_every_element_type_is_a_declared_attribute_type_with_a_c_type():
    from cudnn_denoise.bindings import ffi

    declared = dict(ffi.typeof("cudnnBackendAttributeType_t").relements)
    for name, ctype in ELEMENT_TYPES.items():
        assert name in declared, name
        ffi.typeof(ctype)  # raises for an undeclared C type


def test_closing_twice_destroys_once():
    t = BackendDescriptor("CUDNN_BACKEND_POINTWISE_DESCRIPTOR")
    t.close()
    t.close()
    assert t.ptr is None
