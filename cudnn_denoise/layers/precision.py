"""--precision bf16: which tensors of the NHWC graph-API step are BF16, and the FP32 <-> BF16 copies.

The parameters, their gradients, the loss and the SGD update stay FP32 (PyTorch's autocast
recipe). The hidden activations and their gradients are BF16, and so are the filters that the
BF16 convolutions read (a copy of the FP32 parameters made at the start of each step). Every
graph computes in FLOAT (its virtual tensors and compute type are FLOAT); only what reaches
memory is rounded. Where a tensor is FLOAT or BF16 was measured per graph on the H100 (cuDNN 9.19,
benchmarks/probe/graph_dtypes.py; docs/performance.md):
  conv1 forward    FLOAT x, filter, bias (1 input channel: cheap); BF16 output     0.21 ms
  conv2 forward    BF16 x, filter, output; FLOAT bias                              0.39 ms
  conv3 forward    BF16 x, filter, bias; FLOAT output (the loss reads it)          0.36 ms
  every wgrad      BF16 x, dy and dw (no engine writes a FLOAT dw quickly)        0.44-0.64 ms
  every dgrad      BF16 dy, filter; the ReLU backward below: BF16 h, da; FLOAT db (a reduction
                   in the graph, or cublasSgemmEx reading the BF16 da: fusion.nhwc_bias_gradient)
Conversions are cudnnTransformTensor: the parameters to BF16 (one call), the input and the
loss gradient (1 channel) to BF16, and the three BF16 filter gradients to FP32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..bindings.cdata import ONE, ZERO, device_ptr
from ..bindings.descriptors import TensorDescriptor
from ..params import ConvSpec

PRECISIONS = ("fp32", "bf16")
FLOAT, BFLOAT16 = "CUDNN_DATA_FLOAT", "CUDNN_DATA_BFLOAT16"
HALF = "CUDNN_DATA_HALF"  # float16 dataset files, widened to FLOAT by data/reader.py


@dataclass(frozen=True)
class LayerTypes:
    """The data type of each graph's tensors by role (fusion's names); a role not named is FLOAT."""

    forward: dict = field(default_factory=dict)
    wgrad: dict = field(default_factory=dict)
    dgrad: dict = field(default_factory=dict)  # dgrad and the ReLU backward of the layer below

    @property
    def tag(self) -> str:
        """Appended to the graphs' names (and so to their algorithm-cache keys): "" for FP32."""
        return " bf16" if any(BFLOAT16 in d.values() for d in (self.forward, self.wgrad, self.dgrad)) else ""


def layer_types(precision: str, spec: ConvSpec, first: bool) -> LayerTypes:
    """The types of one layer's graphs (the table above)."""
    if precision == "fp32":
        return LayerTypes()
    if first:
        forward = {"y": BFLOAT16}
    elif spec.relu:
        forward = {"x": BFLOAT16, "w": BFLOAT16, "y": BFLOAT16}
    else:
        forward = {"x": BFLOAT16, "w": BFLOAT16, "b": BFLOAT16}
    backward = {role: BFLOAT16 for role in ("x", "dy", "dw", "w", "dh", "h", "da")}
    return LayerTypes(forward, backward, backward)


class Convert:
    """y = x in another data type, for packed (n, c, h, w) tensors: cudnnTransformTensor, alpha 1, beta 0."""

    def __init__(self, ctx, dims, source: str, target: str):
        self.ctx = ctx
        cudnn = ctx.cudnn
        self.x_desc = TensorDescriptor().set_4d(cudnn.CUDNN_TENSOR_NCHW, getattr(cudnn, source), *dims)
        self.y_desc = TensorDescriptor().set_4d(cudnn.CUDNN_TENSOR_NCHW, getattr(cudnn, target), *dims)

    def __call__(self, x, y) -> None:
        ctx = self.ctx
        ctx.cudnn.cudnnTransformTensor(ctx.cudnn_handle.ptr, ONE, self.x_desc.ptr, device_ptr(x),
                                       ZERO, self.y_desc.ptr, device_ptr(y))

    def close(self) -> None:
        self.x_desc.close()
        self.y_desc.close()
