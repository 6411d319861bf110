"""Which mixed FLOAT / BFLOAT16 graphs cuDNN's engines accept for the step, and how fast they run.

    python benchmarks/probe/graph_dtypes.py            (GPU machine; ~1 minute)

The C probe (cudnn_probe.c) gives every tensor of a graph one data type. A BF16 step needs graphs
whose tensors differ: FLOAT filters and 1-channel tensors beside BF16 hidden activations, FLOAT
bias gradients from BF16 data. Each graph here is built by layers/graphs.py's builders and timed over
every engine configuration as the model chooses (FusedOp.choose, on random buffers), at
4 x 1024 x 1024. layers/precision.py's choice of types comes from this table.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cupy

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cudnn_denoise.layers import engines, graphs  # noqa: E402
from cudnn_denoise.layers.algorithms import Policy  # noqa: E402
from cudnn_denoise.layers.context import Context  # noqa: E402
from cudnn_denoise.layers.precision import BFLOAT16, FLOAT  # noqa: E402
from cudnn_denoise.params import LAYERS  # noqa: E402

N, H, W = 4, 1024, 1024
F, B = FLOAT, BFLOAT16


def cases() -> list:
    """(name, builder(dtypes) -> (ops, roles), dtypes) for every graph timed."""
    conv1, conv2, conv3 = LAYERS
    cases = []
    for spec, name in ((conv1, "conv1"), (conv2, "conv2"), (conv3, "conv3")):
        fwd = lambda d, s=spec: graphs.forward_graph(s, N, H, W, d)  # noqa: E731
        wgrad = lambda d, s=spec: graphs.wgrad_graph(s, N, H, W, d)  # noqa: E731
        out = B if spec.relu else F
        cases += [(f"{name} fwd all bf16, y {out[11:]}", fwd, {"x": B, "w": B, "b": B, "y": out}),
                  (f"{name} fwd bf16, bias f32, y {out[11:]}", fwd, {"x": B, "w": B, "y": out}),
                  (f"{name} wgrad bf16, dw bf16", wgrad, {"x": B, "dy": B, "dw": B}),
                  (f"{name} wgrad bf16, dw f32", wgrad, {"x": B, "dy": B})]
    cases.append(("conv1 fwd f32, y bf16", lambda d: graphs.forward_graph(conv1, N, H, W, d), {"y": B}))
    for spec, name in ((conv2, "conv2"), (conv3, "conv3")):
        for bias in (False, True):
            dgrad = lambda d, s=spec, b=bias: graphs.dgrad_graph(s, N, H, W, b, d)  # noqa: E731
            tail = " +dbias" if bias else ""
            cases += [(f"{name} dgrad+drelu{tail} all bf16", dgrad, {"dy": B, "w": B, "h": B, "da": B}),
                      (f"{name} dgrad+drelu{tail} f32 conv, h/da bf16", dgrad, {"h": B, "da": B})]
        cases.append((f"{name} dgrad bf16 alone", lambda d, s=spec: graphs.plain_dgrad_graph(s, N, H, W, d),
                      {"dy": B, "w": B, "dh": B}))
    for bias, dtypes, label in ((False, B, "bf16"), (True, B, "bf16 +dbias"), (True, F, "f32 +dbias")):
        cases.append((f"relu bwd alone {label}",
                      lambda d, b=bias: graphs.relu_backward_graph(16, N, H, W, d, bias_gradient=b),
                      {role: dtypes for role in ("dh", "h", "da")}))
    return cases


def main() -> int:
    ctx = Context(algorithm_cache=False)
    policy = Policy("find", strict_fp32=False, deterministic=False, workspace_limit=1 << 30)
    print(f"{ctx.gpu_name}, cuDNN {ctx.cudnn.cudnnGetVersion()}, {N} x {H} x {W}", flush=True)
    for name, build, dtypes in cases():
        try:
            op = engines.FusedOp(ctx, name, *build(dtypes), "probe")
        except Exception as exc:  # noqa: BLE001 - a probe reports every refusal and goes on
            print(f"{name:48s} graph refused: {str(exc).splitlines()[0][:120]}", flush=True)
            continue
        try:
            choice = op.choose(policy)
            print(f"{name:48s} {choice.time_ms:7.3f} ms  {choice.algo_name}  ({len(choice.offered)} configs)",
                  flush=True)
        except Exception as exc:  # noqa: BLE001
            print(f"{name:48s} no engine: {str(exc).splitlines()[0][:160]}", flush=True)
        op.close()
        cupy.get_default_memory_pool().free_all_blocks()
    ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
