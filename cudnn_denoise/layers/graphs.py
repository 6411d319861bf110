"""The fused operation graphs of the NHWC path, built from backend descriptors (layers/fusion.py).

Each builder returns (operations, roles): the finalized operation descriptors, and for each buffer
the graph reads or writes its uid, dims and data type (Role). Dimensions are given in the
manual's n, c, h, w order; tensors in memory are NHWC, filters KRSC, and the results between the
fused operations are virtual tensors (FLOAT) that never reach device memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..bindings.backend import BackendDescriptor
from ..params import ConvSpec
from .precision import FLOAT

ALIGNMENT = 16  # bytes; CuPy's allocations are 256-byte aligned


def nhwc_strides(n: int, c: int, h: int, w: int) -> list[int]:
    """Strides of an NHWC (or, for filters k, c, r, s: KRSC) packed tensor, in n, c, h, w order."""
    return [h * w * c, 1, w * c, c]


def tensor(uid: int, dims, *, virtual: bool = False, dtype: str = FLOAT) -> BackendDescriptor:
    """A finalized CUDNN_BACKEND_TENSOR_DESCRIPTOR with NHWC strides; dtype: a cudnnDataType_t name.

    Virtual tensors (the values passed between fused operations) are always FLOAT.
    """
    t = BackendDescriptor("CUDNN_BACKEND_TENSOR_DESCRIPTOR")
    t.set("CUDNN_ATTR_TENSOR_DATA_TYPE", "CUDNN_TYPE_DATA_TYPE", getattr(t.cudnn, FLOAT if virtual else dtype))
    t.set("CUDNN_ATTR_TENSOR_DIMENSIONS", "CUDNN_TYPE_INT64", list(dims))
    t.set("CUDNN_ATTR_TENSOR_STRIDES", "CUDNN_TYPE_INT64", nhwc_strides(*dims))
    t.set("CUDNN_ATTR_TENSOR_UNIQUE_ID", "CUDNN_TYPE_INT64", uid)
    t.set("CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT", "CUDNN_TYPE_INT64", ALIGNMENT)
    t.set("CUDNN_ATTR_TENSOR_IS_VIRTUAL", "CUDNN_TYPE_BOOLEAN", virtual)
    return t.finalize()


def convolution(spec: ConvSpec) -> BackendDescriptor:
    """CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR: 2-d cross-correlation, stride 1, same padding, FLOAT compute."""
    c = BackendDescriptor("CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR")
    c.set("CUDNN_ATTR_CONVOLUTION_COMP_TYPE", "CUDNN_TYPE_DATA_TYPE", c.cudnn.CUDNN_DATA_FLOAT)
    c.set("CUDNN_ATTR_CONVOLUTION_CONV_MODE", "CUDNN_TYPE_CONVOLUTION_MODE", c.cudnn.CUDNN_CROSS_CORRELATION)
    c.set("CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS", "CUDNN_TYPE_INT64", 2)
    c.set("CUDNN_ATTR_CONVOLUTION_DILATIONS", "CUDNN_TYPE_INT64", [1, 1])
    c.set("CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES", "CUDNN_TYPE_INT64", [1, 1])
    c.set("CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS", "CUDNN_TYPE_INT64", [spec.pad, spec.pad])
    c.set("CUDNN_ATTR_CONVOLUTION_POST_PADDINGS", "CUDNN_TYPE_INT64", [spec.pad, spec.pad])
    return c.finalize()


# The three convolution operations: descriptor type, attribute prefix, and the names of its
# (input a, input b, output) tensors in the manual.
_CONV_OPERATIONS = {
    "forward": ("CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR", "FORWARD", ("X", "W", "Y")),
    "backward_data": ("CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR", "BWD_DATA",
                      ("DY", "W", "DX")),
    "backward_filter": ("CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR", "BWD_FILTER",
                        ("X", "DY", "DW")),
}


def convolution_operation(direction: str, spec: ConvSpec, a, b, out) -> BackendDescriptor:
    """out = alpha * op(a, b) + beta * out with alpha 1, beta 0 (overwrite)."""
    kind, prefix, names = _CONV_OPERATIONS[direction]
    attr = f"CUDNN_ATTR_OPERATION_CONVOLUTION_{prefix}_"
    op = BackendDescriptor(kind)
    op.set(attr + "ALPHA", "CUDNN_TYPE_FLOAT", 1.0)
    op.set(attr + "BETA", "CUDNN_TYPE_FLOAT", 0.0)
    op.set(attr + "CONV_DESC", "CUDNN_TYPE_BACKEND_DESCRIPTOR", convolution(spec))
    for name, t in zip(names, (a, b, out)):
        op.set(attr + name, "CUDNN_TYPE_BACKEND_DESCRIPTOR", t)
    return op.finalize()


def pointwise(mode: str, **tensors) -> BackendDescriptor:
    """A CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR; tensors by the manual's names (x, b, y, dy, dx)."""
    pw = BackendDescriptor("CUDNN_BACKEND_POINTWISE_DESCRIPTOR")
    pw.set("CUDNN_ATTR_POINTWISE_MODE", "CUDNN_TYPE_POINTWISE_MODE", getattr(pw.cudnn, mode))
    pw.set("CUDNN_ATTR_POINTWISE_MATH_PREC", "CUDNN_TYPE_DATA_TYPE", pw.cudnn.CUDNN_DATA_FLOAT)
    pw.finalize()
    op = BackendDescriptor("CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR")
    op.set("CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR", "CUDNN_TYPE_BACKEND_DESCRIPTOR", pw)
    for name, t in tensors.items():
        op.set(f"CUDNN_ATTR_OPERATION_POINTWISE_{name.upper()}DESC", "CUDNN_TYPE_BACKEND_DESCRIPTOR", t)
    return op.finalize()


def reduction_sum(x, y) -> BackendDescriptor:
    """y = x summed over the dimensions where y has size 1 (REDUCTION, CUDNN_REDUCE_TENSOR_ADD)."""
    r = BackendDescriptor("CUDNN_BACKEND_REDUCTION_DESCRIPTOR")
    r.set("CUDNN_ATTR_REDUCTION_OPERATOR", "CUDNN_TYPE_REDUCTION_OPERATOR_TYPE", r.cudnn.CUDNN_REDUCE_TENSOR_ADD)
    r.set("CUDNN_ATTR_REDUCTION_COMP_TYPE", "CUDNN_TYPE_DATA_TYPE", r.cudnn.CUDNN_DATA_FLOAT)
    r.finalize()
    op = BackendDescriptor("CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR")
    op.set("CUDNN_ATTR_OPERATION_REDUCTION_DESC", "CUDNN_TYPE_BACKEND_DESCRIPTOR", r)
    op.set("CUDNN_ATTR_OPERATION_REDUCTION_XDESC", "CUDNN_TYPE_BACKEND_DESCRIPTOR", x)
    op.set("CUDNN_ATTR_OPERATION_REDUCTION_YDESC", "CUDNN_TYPE_BACKEND_DESCRIPTOR", y)
    return op.finalize()


# ---- the step's operation graphs: (operations, uid of each buffer the graph reads or writes) ----

VIRTUAL = 100  # uids from here on name virtual tensors


@dataclass(frozen=True)
class Role:
    """One tensor a graph reads or writes in memory: its uid, dimensions (n, c, h, w) and type."""

    uid: int
    dims: tuple[int, ...]
    dtype: str


class _Tensors:
    """Makes a graph's tensors: `dtypes` maps a role (x, w, b, y, dy, dh, h, da, dw, db) to its
    cudnnDataType_t name; roles not named are FLOAT. uids: 1, 2, ... in order of creation."""

    def __init__(self, dtypes):
        self.dtypes, self.roles = dict(dtypes or {}), {}

    def __call__(self, role: str, dims) -> BackendDescriptor:
        r = self.roles[role] = Role(len(self.roles) + 1, tuple(dims), self.dtypes.get(role, FLOAT))
        return tensor(r.uid, r.dims, dtype=r.dtype)


def _filter_dims(spec: ConvSpec) -> tuple[int, int, int, int]:
    return (spec.out_channels, spec.in_channels, spec.kernel, spec.kernel)


def forward_graph(spec: ConvSpec, n: int, h: int, w: int, dtypes=None):
    """y = relu(conv(x, w) + b), or conv(x, w) + b when no ReLU follows the layer."""
    t = _Tensors(dtypes)
    out_dims = (n, spec.out_channels, h, w)
    x, wt = t("x", (n, spec.in_channels, h, w)), t("w", _filter_dims(spec))
    b, y = t("b", (1, spec.out_channels, 1, 1)), t("y", out_dims)
    conv_out = tensor(VIRTUAL, out_dims, virtual=True)
    biased = tensor(VIRTUAL + 1, out_dims, virtual=True) if spec.relu else y
    ops = [convolution_operation("forward", spec, x, wt, conv_out),
           pointwise("CUDNN_POINTWISE_ADD", x=conv_out, b=b, y=biased)]
    if spec.relu:
        ops.append(pointwise("CUDNN_POINTWISE_RELU_FWD", x=biased, y=y))
    return ops, t.roles


def wgrad_graph(spec: ConvSpec, n: int, h: int, w: int, dtypes=None):
    """dw from x and dy."""
    t = _Tensors(dtypes)
    x, dy = t("x", (n, spec.in_channels, h, w)), t("dy", (n, spec.out_channels, h, w))
    return [convolution_operation("backward_filter", spec, x, dy, t("dw", _filter_dims(spec)))], t.roles


def _relu_backward(t: _Tensors, dh, dims, bias_gradient: bool) -> list:
    """da = dh * (h > 0) [and db = sum of da over n, h, w]: the operations after a data gradient dh
    (virtual when fused into dgrad, in memory after a plain dgrad)."""
    hidden, da = t("h", dims), t("da", dims)
    ops = [pointwise("CUDNN_POINTWISE_RELU_BWD", dy=dh, x=hidden, dx=da)]
    if bias_gradient:
        ops.append(reduction_sum(da, t("db", (1, dims[1], 1, 1))))
    return ops


def dgrad_graph(spec: ConvSpec, n: int, h: int, w: int, bias_gradient: bool, dtypes=None):
    """da = conv_transpose(dy, w) * (h > 0) for the layer below (h: its ReLU output), and with
    bias_gradient that layer's db = sum of da over n, h, w."""
    t = _Tensors(dtypes)
    below = (n, spec.in_channels, h, w)
    dy, wt = t("dy", (n, spec.out_channels, h, w)), t("w", _filter_dims(spec))
    dh = tensor(VIRTUAL, below, virtual=True)
    ops = [convolution_operation("backward_data", spec, dy, wt, dh), *_relu_backward(t, dh, below, bias_gradient)]
    return ops, t.roles


def plain_dgrad_graph(spec: ConvSpec, n: int, h: int, w: int, dtypes=None):
    """dh = conv_transpose(dy, w) into memory, nothing fused (relu_backward_graph follows it)."""
    t = _Tensors(dtypes)
    dy, wt = t("dy", (n, spec.out_channels, h, w)), t("w", _filter_dims(spec))
    return [convolution_operation("backward_data", spec, dy, wt, t("dh", (n, spec.in_channels, h, w)))], t.roles


def relu_backward_graph(channels: int, n: int, h: int, w: int, dtypes=None, bias_gradient: bool = True):
    """da = dh * (h > 0) [and db = sum of da over n, h, w]: pointwise and reduction, no convolution."""
    t = _Tensors(dtypes)
    dims = (n, channels, h, w)
    return _relu_backward(t, t("dh", dims), dims, bias_gradient), t.roles
