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

Engines are chosen as cudnnFind chooses legacy algorithms: every configuration that heuristics
mode A and the fallback list offer is finalized into a plan and timed on random buffers of the
graph's shapes and types; the fastest that the policy allows (strict fp32: no tensor-core engine;
deterministic: none noted NONDETERMINISTIC; the workspace limit) is kept, and its position in
those lists cached on disk. dgrad has more than one form (FusedConv2d, DGRAD_FORMS); the layer
times each and keeps the fastest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cupy

from ..bindings import CudnnError, ffi
from ..bindings.backend import BackendDescriptor
from ..bindings.cdata import ONE, ZERO, device_ptr, float_ptr
from ..params import ConvSpec
from .algorithm_cache import make_key
from .algorithms import Choice, Policy
from .precision import BFLOAT16, FLOAT, LayerTypes

ALIGNMENT = 16  # bytes; CuPy's allocations are 256-byte aligned
TIMED_RUNS = 3


def mean_ms(stream, run) -> float:
    """Mean milliseconds of TIMED_RUNS calls of run() on `stream` after one warm-up (CUDA events)."""
    run()
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record(stream)
    for _ in range(TIMED_RUNS):
        run()
    end.record(stream)
    end.synchronize()
    return cupy.cuda.get_elapsed_time(start, end) / TIMED_RUNS


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


def random_buffer(role: Role):
    """Device values in [-0.5, 0.5) for timing an engine (ReLU masks see both signs). BFLOAT16
    is kept as uint16 storage (CuPy has no bfloat16): the upper half of each float32."""
    values = cupy.random.random(math.prod(role.dims), dtype=cupy.float32) - 0.5
    if role.dtype == BFLOAT16:
        return (values.view(cupy.uint32) >> 16).astype(cupy.uint16)
    return values


# ---- one operation graph, its chosen plan and its execution ----


@dataclass(frozen=True)
class EngineInfo:
    """What heuristics said of one engine configuration."""

    position: int  # in mode A's list, then the fallback list's
    engine: int  # CUDNN_ATTR_ENGINE_GLOBAL_INDEX
    tensor_core: bool  # TF32 for float data: not strict fp32
    nondeterministic: bool
    runtime_compiled: bool

    def name(self) -> str:
        notes = [n for n, on in (("TC", self.tensor_core), ("RTC", self.runtime_compiled),
                                 ("nondet", self.nondeterministic)) if on]
        return f"engine {self.engine}" + (f" ({' '.join(notes)})" if notes else "")


class FusedOp:
    """An operation graph of the step with a plan chosen for it; execute() is one cudnnBackendExecute."""

    def __init__(self, ctx, name: str, ops, roles: dict[str, Role], geometry: str):
        self.ctx, self.name, self.roles, self.geometry = ctx, name, roles, geometry
        self.uids = {role: r.uid for role, r in roles.items()}
        graph = BackendDescriptor("CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR")
        graph.set("CUDNN_ATTR_OPERATIONGRAPH_OPS", "CUDNN_TYPE_BACKEND_DESCRIPTOR", list(ops))
        graph.set("CUDNN_ATTR_OPERATIONGRAPH_HANDLE", "CUDNN_TYPE_HANDLE", ctx.cudnn_handle.ptr)
        self.graph = graph.finalize()
        self.plan: BackendDescriptor | None = None
        self.choice: Choice | None = None
        self._packs: dict[tuple, BackendDescriptor] = {}

    # -- choosing --

    def _configs(self) -> list[BackendDescriptor]:
        """Engine configurations: heuristics mode A's list, then the fallback list."""
        configs = []
        for mode in ("CUDNN_HEUR_MODE_A", "CUDNN_HEUR_MODE_FALLBACK"):
            heur = BackendDescriptor("CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR")
            heur.set("CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH", "CUDNN_TYPE_BACKEND_DESCRIPTOR", self.graph)
            heur.set("CUDNN_ATTR_ENGINEHEUR_MODE", "CUDNN_TYPE_HEUR_MODE", getattr(heur.cudnn, mode))
            try:
                heur.finalize()
            except CudnnError:  # no engine of this kind for the graph
                continue
            count = heur.count("CUDNN_ATTR_ENGINEHEUR_RESULTS", "CUDNN_TYPE_BACKEND_DESCRIPTOR")
            configs += heur.get_descriptors("CUDNN_ATTR_ENGINEHEUR_RESULTS", "CUDNN_BACKEND_ENGINECFG_DESCRIPTOR", count)
        return configs

    @staticmethod
    def _info(position: int, config: BackendDescriptor) -> EngineInfo:
        cudnn = config.cudnn
        engine = config.get_descriptors("CUDNN_ATTR_ENGINECFG_ENGINE", "CUDNN_BACKEND_ENGINE_DESCRIPTOR", 1)[0]
        notes = engine.get("CUDNN_ATTR_ENGINE_NUMERICAL_NOTE", "CUDNN_TYPE_NUMERICAL_NOTE", 16)
        behaviour = engine.get("CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE", "CUDNN_TYPE_BEHAVIOR_NOTE", 16)
        index = engine.get("CUDNN_ATTR_ENGINE_GLOBAL_INDEX", "CUDNN_TYPE_INT64")[0]
        return EngineInfo(position, index, cudnn.CUDNN_NUMERICAL_NOTE_TENSOR_CORE in notes,
                          cudnn.CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC in notes,
                          cudnn.CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION in behaviour)

    def _plan(self, config: BackendDescriptor) -> BackendDescriptor:
        plan = BackendDescriptor("CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR")
        plan.set("CUDNN_ATTR_EXECUTION_PLAN_HANDLE", "CUDNN_TYPE_HANDLE", self.ctx.cudnn_handle.ptr)
        plan.set("CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG", "CUDNN_TYPE_BACKEND_DESCRIPTOR", config)
        return plan.finalize()

    @staticmethod
    def _workspace_size(plan: BackendDescriptor) -> int:
        return plan.get("CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE", "CUDNN_TYPE_INT64")[0]

    @staticmethod
    def _rejection(info: EngineInfo, policy: Policy) -> str | None:
        if policy.strict_fp32 and info.tensor_core:
            return "tensor cores (TF32), strict fp32 asked"
        if policy.deterministic and info.nondeterministic:
            return "not deterministic"
        return None

    def choose(self, policy: Policy) -> Choice:
        """Time every allowed engine configuration on random buffers of the graph's tensors; keep
        the fastest. With policy.search == "heuristic" the first allowed configuration that
        finalizes is taken untimed.
        """
        ctx = self.ctx
        cache, key = ctx.algorithm_cache, None
        if policy.search == "find" and cache is not None:
            key = make_key(ctx.gpu_name, ctx.cudnn.cudnnGetVersion(), self.geometry, self.name, policy)
        configs = self._configs()
        hit = cache.get(key) if key is not None else None
        if hit is not None and hit["position"] < len(configs):
            info = self._info(hit["position"], configs[hit["position"]])
            if info.engine == hit["engine"] and self._rejection(info, policy) is None:
                try:
                    plan = self._plan(configs[info.position])
                    return self._take(plan, info, hit["time_ms"], ("from the algorithm cache",))
                except CudnnError:
                    pass  # the cached engine no longer finalizes: search again
        offered, best, buffers = [], None, None
        for position, config in enumerate(configs):
            info = self._info(position, config)
            why = self._rejection(info, policy)
            if why is None:
                try:
                    plan = self._plan(config)
                except CudnnError as exc:
                    why = f"plan refused ({exc.status_name})"
            if why is None and self._workspace_size(plan) > policy.workspace_limit:
                why = f"needs {self._workspace_size(plan)} bytes of workspace"
                plan.close()
            if why is not None:
                offered.append(f"{info.name()}: {why}")
                continue
            if policy.search == "heuristic":
                return self._take(plan, info, -1.0, tuple(offered))
            if buffers is None:
                with ctx.stream:
                    buffers = {role: random_buffer(r) for role, r in self.roles.items()}
            ms = self._time(plan, buffers)
            offered.append(f"{info.name()}: {ms:.3f} ms, {self._workspace_size(plan) >> 20} MiB")
            if best is None or ms < best[0]:
                if best is not None:
                    best[1].close()
                best = (ms, plan, info)
            else:
                plan.close()
        if best is None:
            raise RuntimeError(f"no usable engine for {self.name} ({self.geometry}, {policy}); "
                               f"cuDNN offered: {'; '.join(offered) or 'nothing'}")
        ms, plan, info = best
        choice = self._take(plan, info, ms, tuple(offered))
        if key is not None:
            cache.put(key, {"position": info.position, "engine": info.engine, "time_ms": ms})
        return choice

    def _time(self, plan: BackendDescriptor, buffers: dict) -> float:
        """Mean ms of the plan on `buffers` (mean_ms), with a scratch workspace of its own: the
        shared one grows only to what the chosen plans need (as legacy find's scratch)."""
        ctx = self.ctx
        with ctx.stream:
            scratch = cupy.empty(self._workspace_size(plan), dtype=cupy.uint8)
        pack = self._variant_pack({role: buffers[role].data.ptr for role in self.uids}, scratch)

        def run():
            ctx.cudnn.cudnnBackendExecute(ctx.cudnn_handle.ptr, plan.ptr, pack.ptr)

        ms = mean_ms(ctx.stream, run)
        self._drop_packs()  # the timing's variant pack: the step binds its own buffers
        return ms

    def _take(self, plan: BackendDescriptor, info: EngineInfo, ms: float, offered: tuple) -> Choice:
        """Keep `plan` (finalized once: an engine configuration's second plan may fail to compile)."""
        cudnn = self.ctx.cudnn
        self.plan = plan
        workspace = self._workspace_size(self.plan)
        self.ctx.reserve_workspace(workspace)
        # math_type in the legacy API's terms: tensor-core engines run float data as TF32.
        math_type = cudnn.CUDNN_TENSOR_OP_MATH if info.tensor_core else cudnn.CUDNN_FMA_MATH
        self.choice = Choice(info.engine, info.name(), workspace, math_type, not info.nondeterministic, ms, offered)
        return self.choice

    # -- running --

    def _variant_pack(self, pointers: dict[str, int], workspace=None) -> BackendDescriptor:
        """The CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR binding device addresses to the graph's uids
        (made once per set of addresses and workspace; a step reuses the same buffers). The
        workspace is the context's shared one unless another is given."""
        workspace = (self.ctx.workspace if workspace is None else workspace).data.ptr
        key = tuple(pointers[role] for role in self.uids) + (workspace,)
        pack = self._packs.get(key)
        if pack is None:
            if len(self._packs) >= 8:  # rotating input batches: keep a few
                self._packs.pop(next(iter(self._packs))).close()
            pack = BackendDescriptor("CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR")
            pack.set("CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS", "CUDNN_TYPE_INT64", list(self.uids.values()))
            pack.set("CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS", "CUDNN_TYPE_VOID_PTR",
                     [ffi.cast("void *", p) for p in key[:-1]])
            pack.set("CUDNN_ATTR_VARIANT_PACK_WORKSPACE", "CUDNN_TYPE_VOID_PTR", ffi.cast("void *", workspace))
            self._packs[key] = pack.finalize()
        return pack

    def execute(self, **buffers) -> None:
        """cudnnBackendExecute of the chosen plan on these buffers (role=CuPy array)."""
        pack = self._variant_pack({role: array.data.ptr for role, array in buffers.items()})
        self.ctx.cudnn.cudnnBackendExecute(self.ctx.cudnn_handle.ptr, self.plan.ptr, pack.ptr)

    def _drop_packs(self) -> None:
        for pack in self._packs.values():
            pack.close()
        self._packs.clear()

    def close(self) -> None:
        """Destroy the variant packs, the plan and the graph (the model's close() calls this)."""
        self._drop_packs()
        for descriptor in (self.plan, self.graph):
            if descriptor is not None:
                descriptor.close()


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
