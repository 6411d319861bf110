"""One operation graph of the NHWC path with its execution plan chosen and run (FusedOp).

Engines are chosen as cudnnFind chooses legacy algorithms: every configuration that heuristics
mode A and the fallback list offer is finalized into a plan and timed on random buffers of the
graph's shapes and types; the fastest that the policy allows (strict fp32: no tensor-core engine;
deterministic: none noted NONDETERMINISTIC; the workspace limit) is kept, and its position in
those lists cached on disk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cupy

from ..bindings import CudnnError, ffi
from ..bindings.backend import BackendDescriptor
from .algorithm_cache import make_key
from .algorithms import Choice, Policy
from .graphs import Role
from .precision import BFLOAT16

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
        self.position = -1  # the chosen configuration's in _configs() (port/engine_table.py)
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
        if hit is not None:
            choice = self._from_cache(hit, configs, policy)
            if choice is not None:
                return choice
        ms, plan, info, offered = self._search(configs, policy)
        choice = self._take(plan, info, ms, offered)
        if key is not None:
            cache.put(key, {"position": info.position, "engine": info.engine, "time_ms": ms})
        return choice

    def _from_cache(self, hit: dict, configs: list, policy: Policy) -> Choice | None:
        """The cached engine if cuDNN still offers it at the same position and it finalizes."""
        if hit["position"] >= len(configs):
            return None
        info = self._info(hit["position"], configs[hit["position"]])
        if info.engine != hit["engine"] or self._rejection(info, policy) is not None:
            return None
        try:
            plan = self._plan(configs[info.position])
        except CudnnError:
            return None  # the cached engine no longer finalizes: search again
        return self._take(plan, info, hit["time_ms"], ("from the algorithm cache",))

    def _usable_plan(self, info: EngineInfo, config, policy: Policy):
        """(plan, None) for an allowed configuration that finalizes within the workspace limit,
        else (None, why not)."""
        why = self._rejection(info, policy)
        if why is not None:
            return None, why
        try:
            plan = self._plan(config)
        except CudnnError as exc:
            return None, f"plan refused ({exc.status_name})"
        if self._workspace_size(plan) > policy.workspace_limit:
            why = f"needs {self._workspace_size(plan)} bytes of workspace"
            plan.close()
            return None, why
        return plan, None

    def _search(self, configs: list, policy: Policy):
        """(ms, plan, info, what was offered) of the fastest usable configuration (the first one
        untimed, ms -1, with the heuristic search)."""
        offered, best, buffers = [], None, None
        for position, config in enumerate(configs):
            info = self._info(position, config)
            plan, why = self._usable_plan(info, config, policy)
            if why is not None:
                offered.append(f"{info.name()}: {why}")
                continue
            if policy.search == "heuristic":
                return -1.0, plan, info, tuple(offered)
            if buffers is None:
                with self.ctx.stream:
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
        return (*best, tuple(offered))

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
        self.plan, self.position = plan, info.position
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
