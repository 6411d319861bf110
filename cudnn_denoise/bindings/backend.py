"""Graph (backend) API descriptors: cudnnBackendCreateDescriptor, Set/GetAttribute, Finalize, Destroy.

A backend descriptor is a bag of typed attributes, frozen by cudnnBackendFinalize. This module
mirrors those calls and nothing more (what the training step builds from them is layers/graphs.py):

    t = BackendDescriptor("CUDNN_BACKEND_TENSOR_DESCRIPTOR")
    t.set("CUDNN_ATTR_TENSOR_DIMENSIONS", "CUDNN_TYPE_INT64", [4, 16, 1024, 1024]).finalize()

Attribute names and types are the manual's enum names, as strings, so a call site reads like the
C it mirrors. Tensors, convolutions and operations are finalized host-side (no GPU needed);
operation graphs, heuristics and plans need a handle, hence a GPU.
"""

from __future__ import annotations

from . import load
from ._ffi import ffi
from .owned import Owned

# cudnnBackendAttributeType_t -> the C type of one element of the attribute's array
ELEMENT_TYPES = {
    "CUDNN_TYPE_HANDLE": "cudnnHandle_t",
    "CUDNN_TYPE_DATA_TYPE": "cudnnDataType_t",
    "CUDNN_TYPE_BOOLEAN": "_Bool",
    "CUDNN_TYPE_INT64": "int64_t",
    "CUDNN_TYPE_FLOAT": "float",
    "CUDNN_TYPE_DOUBLE": "double",
    "CUDNN_TYPE_VOID_PTR": "void *",
    "CUDNN_TYPE_CONVOLUTION_MODE": "cudnnConvolutionMode_t",
    "CUDNN_TYPE_HEUR_MODE": "cudnnBackendHeurMode_t",
    "CUDNN_TYPE_NUMERICAL_NOTE": "cudnnBackendNumericalNote_t",
    "CUDNN_TYPE_POINTWISE_MODE": "cudnnPointwiseMode_t",
    "CUDNN_TYPE_BACKEND_DESCRIPTOR": "cudnnBackendDescriptor_t",
    "CUDNN_TYPE_REDUCTION_OPERATOR_TYPE": "cudnnReduceTensorOp_t",
    "CUDNN_TYPE_BEHAVIOR_NOTE": "cudnnBackendBehaviorNote_t",
}


class BackendDescriptor(Owned):
    """One cudnnBackendDescriptor_t of a given cudnnBackendDescriptorType_t, e.g.
    "CUDNN_BACKEND_TENSOR_DESCRIPTOR"; destroyed once (close(), `with`, or the backstop)."""

    def __init__(self, kind: str):
        self.cudnn = load()[0]
        self.kind = kind
        out = ffi.new("cudnnBackendDescriptor_t *")
        self.cudnn.cudnnBackendCreateDescriptor(getattr(self.cudnn, kind), out)
        self.ptr = out[0]
        self._referenced: list[BackendDescriptor] = []  # kept alive while this one may use them

    def set(self, attribute: str, attribute_type: str, values) -> BackendDescriptor:
        """cudnnBackendSetAttribute with one value or a list; descriptors may be given as objects."""
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        elements = []
        for value in values:
            if isinstance(value, BackendDescriptor):
                self._referenced.append(value)
                value = value.ptr
            elements.append(value)
        array = ffi.new(f"{ELEMENT_TYPES[attribute_type]}[]", elements)
        self.cudnn.cudnnBackendSetAttribute(self.ptr, getattr(self.cudnn, attribute),
                                            getattr(self.cudnn, attribute_type), len(elements), array)
        return self

    def finalize(self) -> BackendDescriptor:
        """cudnnBackendFinalize: checks the attributes; afterwards they can only be read."""
        self.cudnn.cudnnBackendFinalize(self.ptr)
        return self

    def count(self, attribute: str, attribute_type: str) -> int:
        """How many elements an attribute holds (cudnnBackendGetAttribute asked for none)."""
        n = ffi.new("int64_t *")
        self.cudnn.cudnnBackendGetAttribute(self.ptr, getattr(self.cudnn, attribute),
                                            getattr(self.cudnn, attribute_type), 0, n, ffi.NULL)
        return n[0]

    def get(self, attribute: str, attribute_type: str, capacity: int = 1) -> list:
        """Up to `capacity` elements of a value attribute (numbers, enums)."""
        array = ffi.new(f"{ELEMENT_TYPES[attribute_type]}[]", max(capacity, 1))
        n = ffi.new("int64_t *")
        self.cudnn.cudnnBackendGetAttribute(self.ptr, getattr(self.cudnn, attribute),
                                            getattr(self.cudnn, attribute_type), capacity, n, array)
        return list(array[0 : n[0]])

    def get_descriptors(self, attribute: str, kind: str, capacity: int) -> list[BackendDescriptor]:
        """Up to `capacity` descriptors of an attribute: cuDNN fills descriptors we create."""
        made = [BackendDescriptor(kind) for _ in range(capacity)]
        array = ffi.new("cudnnBackendDescriptor_t[]", [d.ptr for d in made])
        n = ffi.new("int64_t *")
        self.cudnn.cudnnBackendGetAttribute(self.ptr, getattr(self.cudnn, attribute),
                                            self.cudnn.CUDNN_TYPE_BACKEND_DESCRIPTOR, capacity, n, array)
        for extra in made[n[0]:]:
            extra.close()
        return made[: n[0]]

    def _release(self, ptr) -> None:
        self.cudnn.cudnnBackendDestroyDescriptor(ptr)
