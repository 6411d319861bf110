"""The NHWC fast path's convolutions: fused cuDNN graph (backend) API operations, one execute each.

Per convolution layer (FusedConv2d), each an operation graph run by one cudnnBackendExecute:
  forward     y = relu(conv(x, w) + b)             CONVOLUTION_FORWARD, POINTWISE ADD, RELU_FWD
              (no ReLU after conv3)
  wgrad       dw = sum over n, h, w of x (shifted) * dy          CONVOLUTION_BACKWARD_FILTER
  dgrad       da = conv_transpose(dy, w) * (h > 0),              CONVOLUTION_BACKWARD_DATA,
              db = sum over n, h, w of da                        POINTWISE RELU_BWD, REDUCTION ADD
              (h: the ReLU output of the layer below, db: that layer's bias gradient)
The tensors are NHWC (strides n: HWC, c: 1, h: WC, w: C), filters KRSC; dimensions are given in
the manual's n, c, h, w order as always. The intermediate results between the fused operations
are virtual tensors (FLOAT): they never reach device memory, which is what the fusion saves. The
tensors in memory are FLOAT, or BFLOAT16 where the layer's LayerTypes say (layers/precision.py).

graphs.py builds each operation graph from descriptors, engines.py chooses and runs its plan
(FusedOp); this module holds the layer and the choice between dgrad's forms (DGRAD_FORMS): the
layer times each and keeps the fastest.
"""

from __future__ import annotations

import cupy

from ..bindings.cdata import ONE, ZERO, device_ptr, float_ptr
from ..params import ConvSpec
from .algorithms import Choice, Policy
from .engines import FusedOp, mean_ms, random_buffer
from .graphs import (
    Role,
    dgrad_graph,
    forward_graph,
    plain_dgrad_graph,
    relu_backward_graph,
    wgrad_graph,
)
from .precision import BFLOAT16, FLOAT, LayerTypes

# ---- one layer ----


def nhwc_bias_gradient(ctx, dy, db, partial, k: int, rows: int, width: int) -> None:
    """db[k] = sum over n, h, w of dy[n, h, w, k], by two cuBLAS calls against vectors of ones.

    Column-major views of the NHWC buffer: dy is a (W*K) x (N*H) matrix, so
        s  = dy . ones(N*H)     (W*K,) FP32 into `partial`, beta 0: cublasSgemv (CUBLAS_OP_N) for
                                FLOAT dy; for BF16 dy (uint16 storage) cublasSgemmEx with n = 1,
                                CUDA_R_16BF dy and ones, FP32 accumulation and CUDA_R_32F result
        db = S . ones(W)        (K,)   cublasSgemv (CUBLAS_OP_N), S = s as a K x W matrix
    Both calls have many rows to spread over the GPU (one call over a K x N*H*W view has K).
    """
    blas, handle = ctx.cublas, ctx.cublas_handle.ptr
    ones, s = float_ptr(ctx.ones(max(rows, width))), float_ptr(partial)
    if dy.dtype == cupy.uint16:  # BF16
        blas.cublasSgemmEx(handle, blas.CUBLAS_OP_N, blas.CUBLAS_OP_N, width * k, 1, rows, ONE,
                           device_ptr(dy), blas.CUDA_R_16BF, width * k,
                           device_ptr(ctx.ones(rows, BFLOAT16)), blas.CUDA_R_16BF, rows, ZERO,
                           s, blas.CUDA_R_32F, width * k)
    else:
        blas.cublasSgemv_v2(handle, blas.CUBLAS_OP_N, width * k, rows, ONE, float_ptr(dy),
                            width * k, ones, 1, ZERO, s, 1)
    blas.cublasSgemv_v2(handle, blas.CUBLAS_OP_N, k, width, ONE, s, k, ones, 1, ZERO, float_ptr(db), 1)


# How dgrad meets the ReLU backward of the layer below and that layer's bias gradient: one graph
# (fused) or dgrad alone into a scratch buffer, then a graph of the ReLU backward (split); the
# bias gradient a reduction inside the last graph, or nhwc_bias_gradient's cuBLAS calls after it.
DGRAD_FORMS = ("fused", "fused cublas", "split", "split cublas")


def dgrad_options(spec: ConvSpec, n: int, h: int, w: int, types: LayerTypes, forms, scratch: bool):
    """(form, bias fused, split, [(operation name, graph)]) for each of `forms` (DGRAD_FORMS
    entries) that a layer can run: split needs a scratch buffer (`scratch`)."""
    dtypes, tag = types.dgrad, types.tag
    options = []
    for form in forms:
        split, bias = form.startswith("split"), not form.endswith("cublas")
        if split and not scratch:
            continue
        reduction = " bias" if bias else ""
        if split:
            graphs = [(f"graph backward_data{tag}", plain_dgrad_graph(spec, n, h, w, dtypes)),
                      (f"graph relu_backward{reduction}{tag}",
                       relu_backward_graph(spec.in_channels, n, h, w, dtypes, bias_gradient=bias))]
        else:
            graphs = [(f"graph backward_data relu{reduction}{tag}",
                       dgrad_graph(spec, n, h, w, bias, dtypes))]
        options.append((form, bias, split, graphs))
    return options


class FusedConv2d:
    """One convolution layer of the NHWC graph-API path: its operation graphs and their calls.

    dgrad (for every layer but the first) also applies the ReLU backward of the layer below and
    computes that layer's bias gradient, in whichever of the DGRAD_FORMS measured fastest:
      fused         one graph: dgrad, ReLU backward, bias-gradient reduction
      fused cublas  one graph: dgrad, ReLU backward; then the cuBLAS calls of nhwc_bias_gradient
      split         two graphs: dgrad into `scratch`, then ReLU backward and reduction (offered where
                    the model gives a scratch buffer: BF16, where no engine fuses them quickly)
      split cublas  the same two graphs without the reduction; then nhwc_bias_gradient (in BF16:
                    cublasSgemmEx reads the BF16 gradient, measured faster than the reduction)
    Only the forms named in the module's DGRAD_FORMS when the layer is built are timed (a test
    names one to force it).
    """

    def __init__(self, ctx, spec: ConvSpec, n: int, h: int, w: int, *, data_gradient: bool,
                 types: LayerTypes = LayerTypes(), scratch=None):
        self.ctx, self.spec, self.types, self.scratch = ctx, spec, types, scratch
        self.rows, self.width, self._nhw = n * h, w, (n, h, w)
        self.shape = f"NHWC n{n} h{h} w{w} {spec.in_channels}->{spec.out_channels} pad {spec.pad}"
        self.ops = {"forward": FusedOp(ctx, f"graph forward{' relu' if spec.relu else ''}{types.tag}",
                                       *forward_graph(spec, n, h, w, types.forward), self.shape),
                    "backward_filter": FusedOp(ctx, f"graph backward_filter{types.tag}",
                                               *wgrad_graph(spec, n, h, w, types.wgrad), self.shape)}
        self.data_gradient, self.bias_fused, self.split = data_gradient, False, False
        self.dgrad_form: str | None = None  # the DGRAD_FORMS entry chosen
        self.forms = DGRAD_FORMS  # read when built: what _choose_dgrad may time
        with ctx.stream:
            self.db_per_column = cupy.empty(w * spec.out_channels, dtype=cupy.float32)  # (W, K) partial sums
        # nhwc_bias_gradient's vectors of ones, made now: a captured step must not allocate
        ctx.ones(max(self.rows, w))
        if types.tag:
            ctx.ones(self.rows, BFLOAT16)

    @property
    def choice(self) -> dict[str, Choice]:
        return {direction: op.choice for direction, op in self.ops.items()}

    def choose_algorithms(self, policy: Policy) -> None:
        """Choose every graph's engine (timed on random buffers of the graph's shapes)."""
        self.ops["forward"].choose(policy)
        self.ops["backward_filter"].choose(policy)
        if self.data_gradient:
            self._choose_dgrad(policy)

    def _choose_dgrad(self, policy: Policy) -> None:
        """Time every form dgrad_options offers (with heuristics: take the first that has engines)."""
        usable, refused = [], []
        n, h, w = self._nhw
        for label, bias, split, graphs in dgrad_options(self.spec, n, h, w, self.types, self.forms,
                                                        self.scratch is not None):
            ops = []
            try:
                for name, graph in graphs:
                    ops.append(FusedOp(self.ctx, name, *graph, self.shape))
                ms = sum(op.choose(policy).time_ms for op in ops)
            except RuntimeError as exc:  # CudnnError too: the graph or every engine refused
                refused.append(f"{label}: {exc}")
                for op in ops:
                    op.close()
                continue
            if not bias and policy.search == "find":
                ms += self._time_bias_gradient()
            usable.append((ms, label, bias, split, ops))
            if policy.search == "heuristic":
                break
        if not usable:
            raise RuntimeError(f"no engine for dgrad + ReLU backward of {self.spec.name}: " + "; ".join(refused))
        usable.sort(key=lambda option: option[0])
        _, self.dgrad_form, self.bias_fused, self.split, ops = usable[0]
        self.ops["backward_data"] = ops[0]
        if self.split:
            self.ops["relu_backward"] = ops[1]
        for *_, others in usable[1:]:
            for op in others:
                op.close()

    def _time_bias_gradient(self) -> float:
        """ms of nhwc_bias_gradient for the layer below (its K = our input channels), on a
        gradient of the type our dgrad writes (FLOAT, or BF16)."""
        k = self.spec.in_channels
        n, h, w = self._nhw
        with self.ctx.stream:
            dy = random_buffer(Role(0, (n, k, h, w), self.types.dgrad.get("da", FLOAT)))
            partial, db = cupy.empty(self.width * k, dtype=cupy.float32), cupy.empty(k, dtype=cupy.float32)

        def run():
            nhwc_bias_gradient(self.ctx, dy, db, partial, k, self.rows, self.width)

        return mean_ms(self.ctx.stream, run)

    def forward(self, x, w, b, y) -> None:
        """y = relu(conv(x, w) + b) (or without ReLU): one cudnnBackendExecute."""
        self.ops["forward"].execute(x=x, w=w, b=b, y=y)

    def backward_filter(self, x, dy, dw) -> None:
        self.ops["backward_filter"].execute(x=x, dy=dy, dw=dw)

    def backward_data(self, dy, w, h_below, da_below, db_below) -> None:
        """da_below = conv_transpose(dy, w) * (h_below > 0); db_below too when bias_fused."""
        below = {"h": h_below, "da": da_below}
        if self.bias_fused:
            below["db"] = db_below
        if self.split:
            self.ops["backward_data"].execute(dy=dy, w=w, dh=self.scratch)
            self.ops["relu_backward"].execute(dh=self.scratch, **below)
        else:
            self.ops["backward_data"].execute(dy=dy, w=w, **below)

    def backward_bias(self, dy, db) -> None:
        """This layer's bias gradient from its output gradient (FLOAT, or BF16 as uint16):
        nhwc_bias_gradient."""
        nhwc_bias_gradient(self.ctx, dy, db, self.db_per_column, self.spec.out_channels, self.rows, self.width)

    def close(self) -> None:
        for op in self.ops.values():
            op.close()
