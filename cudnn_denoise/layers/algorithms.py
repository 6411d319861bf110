"""Choosing an algorithm for each convolution direction, once per shape.

`find` runs every algorithm cuDNN offers on the real buffers (cudnnFind...AlgorithmEx) and takes the
fastest; `heuristic` asks cudnnGet...Algorithm_v7 and takes its first pick. Either way the choice
must succeed, fit the workspace limit, be deterministic when asked, and in strict fp32 mode use
CUDNN_FMA_MATH (no TF32). The three directions differ only in names and arguments: DIRECTIONS
holds those names; the layer supplies the arguments in the manual's order.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..bindings import ffi
from .algorithm_cache import make_key


@dataclass(frozen=True)
class Direction:
    """The C names for one convolution direction."""

    name: str
    perf_type: str
    max_count: str
    find: str
    heuristic: str
    workspace_size: str
    algo_enum: str


DIRECTIONS = {
    "forward": Direction("forward", "cudnnConvolutionFwdAlgoPerf_t",
                         "cudnnGetConvolutionForwardAlgorithmMaxCount",
                         "cudnnFindConvolutionForwardAlgorithmEx",
                         "cudnnGetConvolutionForwardAlgorithm_v7",
                         "cudnnGetConvolutionForwardWorkspaceSize", "cudnnConvolutionFwdAlgo_t"),
    "backward_data": Direction("backward_data", "cudnnConvolutionBwdDataAlgoPerf_t",
                               "cudnnGetConvolutionBackwardDataAlgorithmMaxCount",
                               "cudnnFindConvolutionBackwardDataAlgorithmEx",
                               "cudnnGetConvolutionBackwardDataAlgorithm_v7",
                               "cudnnGetConvolutionBackwardDataWorkspaceSize", "cudnnConvolutionBwdDataAlgo_t"),
    "backward_filter": Direction("backward_filter", "cudnnConvolutionBwdFilterAlgoPerf_t",
                                 "cudnnGetConvolutionBackwardFilterAlgorithmMaxCount",
                                 "cudnnFindConvolutionBackwardFilterAlgorithmEx",
                                 "cudnnGetConvolutionBackwardFilterAlgorithm_v7",
                                 "cudnnGetConvolutionBackwardFilterWorkspaceSize",
                                 "cudnnConvolutionBwdFilterAlgo_t"),
}


@dataclass(frozen=True)
class Choice:
    """One chosen algorithm with what cuDNN reported for it."""

    algo: int
    algo_name: str
    workspace: int  # bytes
    math_type: int
    deterministic: bool
    time_ms: float  # measured by find; -1 from the heuristics
    offered: tuple[str, ...] = ()  # every result cuDNN returned, in its order, for logs and docs


@dataclass(frozen=True)
class Policy:
    """What a choice must satisfy."""

    search: str  # "find" or "heuristic"
    strict_fp32: bool
    deterministic: bool
    workspace_limit: int  # bytes


def choose(ctx, direction: Direction, policy: Policy, descriptors: tuple, buffers: tuple | None,
           geometry: str = "") -> Choice:
    """Pick the algorithm for one direction.

    descriptors: the direction's descriptors in the manual's order for the _v7 call
    (forward: x, w, conv, y; backward_data: w, dy, conv, dx; backward_filter: x, dy, conv, dw);
    buffers: the matching device pointers for find (same order, conv omitted); geometry: the
    shapes and layout, for the on-disk cache of find's choices (ctx.algorithm_cache).
    """
    cache, key = ctx.algorithm_cache, None
    if policy.search == "find" and cache is not None and geometry:
        key = make_key(ctx.gpu_name, ctx.cudnn.cudnnGetVersion(), geometry, direction.name, policy)
        hit = cache.get(key)
        if hit is not None:
            return Choice(**hit, offered=("from the algorithm cache",))
    choice = _search(ctx, direction, policy, descriptors, buffers)
    if key is not None:
        cache.put(key, {f: getattr(choice, f) for f in ("algo", "algo_name", "workspace", "math_type",
                                                         "deterministic", "time_ms")})
    return choice


def _search(ctx, direction: Direction, policy: Policy, descriptors: tuple, buffers: tuple | None) -> Choice:
    """Ask cuDNN (find or heuristics) and take the first result that passes the policy."""
    cudnn = ctx.cudnn
    count = ffi.new("int *")
    getattr(cudnn, direction.max_count)(ctx.cudnn_handle.ptr, count)
    perf = ffi.new(f"{direction.perf_type}[]", count[0])
    returned = ffi.new("int *")
    if policy.search == "find":
        import cupy

        a, b, conv, c = descriptors
        pa, pb, pc = buffers
        with ctx.stream:  # a scratch workspace for trying algorithms; freed when find returns
            scratch = cupy.empty(policy.workspace_limit, dtype=cupy.uint8)
        getattr(cudnn, direction.find)(ctx.cudnn_handle.ptr, a, pa, b, pb, conv, c, pc, count[0], returned, perf,
                                       ffi.cast("void *", scratch.data.ptr), policy.workspace_limit)
        del scratch
    elif policy.search == "heuristic":
        getattr(cudnn, direction.heuristic)(ctx.cudnn_handle.ptr, *descriptors, count[0], returned, perf)
    else:
        raise ValueError(f"algorithm search must be 'find' or 'heuristic', not {policy.search!r}")
    names = dict(ffi.typeof(direction.algo_enum).elements)
    results = perf[0 : returned[0]]
    offered = tuple(f"{names.get(p.algo, p.algo)} status {p.status} {p.time:.3f} ms {p.memory >> 20} MiB "
                    f"math {p.mathType}{' det' if p.determinism == cudnn.CUDNN_DETERMINISTIC else ''}"
                    for p in results)
    for p in results:
        if _rejection(p, policy, cudnn) is None:
            return Choice(p.algo, names.get(p.algo, str(p.algo)), p.memory, p.mathType,
                          p.determinism == cudnn.CUDNN_DETERMINISTIC,
                          p.time if policy.search == "find" else -1.0, offered)
    rejected = [f"{names.get(p.algo, p.algo)}: {_rejection(p, policy, cudnn)}" for p in results]
    raise RuntimeError(f"no usable {direction.name} convolution algorithm ({policy}); cuDNN offered: "
                       + "; ".join(rejected))


def _rejection(perf, policy: Policy, cudnn) -> str | None:
    """Why a perf result cannot be used, or None."""
    if perf.status != cudnn.CUDNN_STATUS_SUCCESS:
        return f"status {perf.status}"
    if perf.memory > policy.workspace_limit:
        return f"needs {perf.memory} bytes of workspace"
    if policy.deterministic and perf.determinism != cudnn.CUDNN_DETERMINISTIC:
        return "not deterministic"
    if policy.strict_fp32 and perf.mathType != cudnn.CUDNN_FMA_MATH:
        return f"math type {perf.mathType}, strict fp32 needs CUDNN_FMA_MATH"
    return None
