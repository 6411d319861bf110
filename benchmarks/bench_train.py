"""Time one training step of the seed model: our cuDNN backend and PyTorch, same GPU, same run.

    python benchmarks/bench_train.py [--out DIR] [--sweep] [--quick]

Each variant runs in its own process (so memory figures do not mix) with the same protocol:
data already on the GPU (4 rotating random batches), 20 warm-up steps, then 5 timed windows of 40
steps between CUDA events; we report the median ms/step and the spread (min..max of the windows).
Memory, measured the same way for both sides: the device memory the process holds after the run
(cudaMemGetInfo before the model is built minus after the timing; both allocators keep their peak
cached) and the allocator's own peak. Tables go to DIR (default benchmarks/results/) as markdown
and JSON, with the GPU, driver, cuDNN, CuPy and PyTorch versions.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

WARMUP, WINDOWS, STEPS = 20, 5, 40
PROFILE_STEPS = 10  # after timing, our unfused variants run this many steps with per-call events
ROOT = Path(__file__).resolve().parent.parent

OURS = {  # name -> DenoiseCNN options
    "cudnn tf32": {"math": "tf32"},
    "cudnn tf32 fused": {"math": "tf32", "fused": True},
    "cudnn tf32 fused graph": {"math": "tf32", "fused": True, "graph": True},
    "cudnn tf32 graph": {"math": "tf32", "graph": True},
    "cudnn tf32 heuristic": {"math": "tf32", "search": "heuristic"},
    "cudnn tf32 graph-api": {"math": "tf32", "graph_api": True},
    "cudnn tf32 graph-api graph": {"math": "tf32", "graph_api": True, "graph": True},
    "cudnn fp32": {"math": "fp32"},
    "cudnn fp32 fused graph": {"math": "fp32", "fused": True, "graph": True},
    "cudnn fp32 graph": {"math": "fp32", "graph": True},
    "cudnn fp32 graph-api graph": {"math": "fp32", "graph_api": True, "graph": True},
    "cudnn bf16 graph-api": {"math": "tf32", "graph_api": True, "precision": "bf16"},
    "cudnn bf16 graph-api graph": {"math": "tf32", "graph_api": True, "precision": "bf16", "graph": True},
}
TORCH = {  # name -> options of the PyTorch step
    "torch eager tf32": {"tf32": True},
    "torch eager fp32": {"tf32": False},
    "torch channels_last tf32": {"tf32": True, "channels_last": True},
    "torch compile tf32": {"tf32": True, "compile": "default"},
    "torch compile fp32": {"tf32": False, "compile": "default"},
    "torch compile max-autotune tf32": {"tf32": True, "compile": "max-autotune"},
    "torch eager autocast bf16": {"tf32": True, "autocast": True},
    "torch channels_last autocast bf16": {"tf32": True, "channels_last": True, "autocast": True},
    "torch compile autocast bf16": {"tf32": True, "compile": "default", "autocast": True},
}
SWEEP = [(batch, size) for batch in (1, 4, 16) for size in (256, 512, 1024, 2048)]


# ---- worker side: one variant in this process ---------------------------------------------------

def _batches(rand, shape, count=4):
    """`count` (x, target) pairs of random values in [0, 1) on the GPU (never zeros)."""
    return [(rand(shape), rand(shape)) for _ in range(count)]


def _time(step, record, synchronize) -> list[float]:
    """ms per step for each timed window; step(i) queues step i, record() returns a CUDA event."""
    for i in range(WARMUP):
        step(i)
    synchronize()
    windows = []
    for w in range(WINDOWS):
        start = record()
        for i in range(STEPS):
            step(WARMUP + w * STEPS + i)
        end = record()
        end.synchronize()
        windows.append(end_ms(start, end) / STEPS)
    return windows


def end_ms(start, end) -> float:
    """Milliseconds between two recorded events, CuPy's or PyTorch's."""
    if hasattr(start, "elapsed_time"):  # torch.cuda.Event
        return start.elapsed_time(end)
    import cupy

    return cupy.cuda.get_elapsed_time(start, end)


def run_ours(options, batch, size) -> dict:
    import cupy

    from cudnn_denoise.network.model import DenoiseCNN
    from cudnn_denoise.params import init_params

    free0 = cupy.cuda.runtime.memGetInfo()[0]
    model = DenoiseCNN(init_params(0), batch=batch, height=size, width=size, **options)
    with model.stream:
        data = _batches(lambda s: cupy.random.random(s, dtype=cupy.float32), (batch, 1, size, size))

    def step(i):
        x, t = data[i % len(data)]
        model.train_step_async(x, t, 0.001, slot=i % 1000)

    def record():
        event = cupy.cuda.Event()
        event.record(model.stream)
        return event

    windows = _time(step, record, model.stream.synchronize)
    losses = model.read_losses(8)
    profile = None
    if not options.get("graph"):  # a replayed graph makes no calls to time one by one
        from cudnn_denoise.training.profile import CallProfiler

        with CallProfiler(model.stream) as profiler:
            for i in range(PROFILE_STEPS):
                step(i)
        profile = profiler.table(PROFILE_STEPS)
    held = free0 - cupy.cuda.runtime.memGetInfo()[0]
    pool_peak = cupy.get_default_memory_pool().total_bytes()
    algos = {layer: {d: {"chosen": f"{c.algo_name} ({c.workspace >> 20} MiB, math {c.math_type})",
                         "offered": c.offered} for d, c in dirs.items()}
             for layer, dirs in model.algorithms().items()}
    model.close()
    return {"windows_ms": windows, "held_mib": held / 2**20, "allocator_peak_mib": pool_peak / 2**20,
            "finite": bool(all(map(lambda v: v == v, losses))), "algorithms": algos, "profile": profile}


def run_torch(options, batch, size) -> dict:
    import torch
    from torch import nn

    torch.backends.cudnn.allow_tf32 = options["tf32"]
    torch.backends.cuda.matmul.allow_tf32 = options["tf32"]
    torch.backends.cudnn.benchmark = True
    free0 = torch.cuda.mem_get_info()[0]
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(16, 1, 3, padding=1)).cuda()
    fmt = torch.channels_last if options.get("channels_last") else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.SGD(net.parameters(), lr=0.001)
    data = [(x.contiguous(memory_format=fmt), t.contiguous(memory_format=fmt))
            for x, t in _batches(lambda s: torch.rand(s, device="cuda"), (batch, 1, size, size))]

    # autocast: BF16 convolutions and activations, FP32 parameters and gradients (PyTorch's AMP recipe)
    autocast = bool(options.get("autocast"))

    def train(x, t):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = nn.functional.mse_loss(net(x), t)
        loss.backward()
        opt.step()
        return loss

    if options.get("compile"):
        train = torch.compile(train, mode=options["compile"])

    def step(i):
        train(*data[i % len(data)])

    def record():
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    torch.cuda.reset_peak_memory_stats()
    windows = _time(step, record, torch.cuda.synchronize)
    held = free0 - torch.cuda.mem_get_info()[0]
    return {"windows_ms": windows, "held_mib": held / 2**20,
            "allocator_peak_mib": torch.cuda.max_memory_allocated() / 2**20}


def worker(spec: dict) -> dict:
    runner = run_ours if spec["impl"] == "cudnn" else run_torch
    result = runner(spec["options"], spec["batch"], spec["size"])
    ms = statistics.median(result["windows_ms"])
    return {**spec, **result, "ms": ms, "steps_per_s": 1000.0 / ms,
            "spread_ms": [min(result["windows_ms"]), max(result["windows_ms"])]}


# ---- driver side ---------------------------------------------------------------------------------

def run_variant(name, impl, options, batch, size, timeout) -> dict:
    spec = {"name": name, "impl": impl, "options": options, "batch": batch, "size": size}
    started = time.time()
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                              text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {**spec, "error": f"exit {proc.returncode}: {tail}"}
    result = json.loads(lines[-1])
    result["wall_s"] = round(time.time() - started, 1)
    return result


def environment() -> dict:
    import cupy
    import torch

    from cudnn_denoise import bindings

    props = cupy.cuda.runtime.getDeviceProperties(0)
    smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
    return {"gpu": props["name"].decode(), "driver": smi, "cudnn": bindings.versions()["cudnn"],
            "cublas": bindings.versions()["cublas"], "cupy": cupy.__version__, "torch": torch.__version__,
            "torch_cudnn": torch.backends.cudnn.version(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d")}


def precision_of(name: str) -> str:
    """The arithmetic a variant runs in, from its name: bf16, fp32 (strict) or tf32."""
    return next((p for p in ("bf16", "fp32") if p in name), "tf32")


def table(rows) -> list[str]:
    """One line per variant, with its ratio to PyTorch's best overall and to PyTorch's best in the
    same arithmetic (TF32, strict FP32, BF16): the goals compare like with like."""
    timed = [r for r in rows if "error" not in r and r["impl"] == "torch"]
    best = min(r["ms"] for r in timed)
    best_of = {}  # precision -> PyTorch's fastest ms in it
    for r in timed:
        best_of[precision_of(r["name"])] = min(r["ms"], best_of.get(precision_of(r["name"]), r["ms"]))
    lines = ["| variant | steps/s | ms/step (median) | spread ms | x PyTorch best | x PyTorch best, same precision "
             "| held MiB | allocator peak MiB |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | - | - | - | - | - | - | {r['error']} |")
            continue
        same = best_of.get(precision_of(r["name"]))
        same_ratio = f"{same / r['ms']:.2f}" if same else "-"
        lines.append(f"| {r['name']} | {r['steps_per_s']:.1f} | {r['ms']:.3f} | {r['spread_ms'][0]:.3f}..{r['spread_ms'][1]:.3f} "
                     f"| {best / r['ms']:.2f} | {same_ratio} | {r['held_mib']:.0f} | {r['allocator_peak_mib']:.0f} |")
    return lines


def write_results(out: Path, env: dict, md: list[str], rows: list, sweep_rows: list) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"bench_train_{env['gpu'].replace(' ', '_')}"
    (out / f"{stem}.md").write_text("\n".join(md) + "\n")
    (out / f"{stem}.json").write_text(json.dumps({"environment": env, "rows": rows, "sweep": sweep_rows},
                                                 indent=1) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="folder for the tables")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=1024, help="patch height and width")
    parser.add_argument("--sweep", action="store_true", help="also time batch 1/4/16 x patch 256..2048")
    parser.add_argument("--points", metavar="BxS,...",
                        help="time only these sweep points, e.g. 4x512,16x256 (default: all twelve)")
    parser.add_argument("--quick", action="store_true", help="skip torch.compile (minutes of compiling)")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per variant")
    parser.add_argument("--algorithms", action="store_true", help="print every algorithm cuDNN offered per op")
    parser.add_argument("--only", metavar="TEXT,...",
                        help="time only the variants whose names contain one of these comma-separated texts")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    points = SWEEP
    if args.points:
        try:
            points = [tuple(int(v) for v in p.split("x")) for p in args.points.split(",")]
        except ValueError:
            parser.error(f"--points: expected BATCHxSIZE,... (e.g. 4x512,16x256), got {args.points!r}")
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    env = environment()
    print(f"{env['gpu']}, driver {env['driver']}, cuDNN {env['cudnn']}, PyTorch {env['torch']} "
          f"(its cuDNN {env['torch_cudnn']}); batch {args.batch} x 1 x {args.size} x {args.size}", flush=True)
    variants = [(n, "cudnn", o) for n, o in OURS.items()]
    variants += [(n, "torch", o) for n, o in TORCH.items() if not (args.quick and o.get("compile"))]
    if args.only:
        wanted = args.only.split(",")
        variants = [v for v in variants if any(text in v[0] for text in wanted)]
    rows = []
    for name, impl, options in variants:
        row = run_variant(name, impl, options, args.batch, args.size, args.timeout)
        rows.append(row)
        print(f"  {name:34s} " + (row["error"] if "error" in row else
              f"{row['steps_per_s']:7.1f} steps/s  {row['ms']:.3f} ms  held {row['held_mib']:.0f} MiB"), flush=True)
    timed = [r for r in rows if "error" not in r]
    best_torch = min((r for r in timed if r["impl"] == "torch"), key=lambda r: r["ms"])
    md = [f"# Training step, {env['gpu']}, batch {args.batch} x 1 x {args.size} x {args.size}", "",
          f"{env['date']}; driver {env['driver']}; cuDNN {env['cudnn']} (ours), PyTorch {env['torch']} with cuDNN "
          f"{env['torch_cudnn']}; CuPy {env['cupy']}; cuBLAS {env['cublas']}; Python {env['python']}.",
          f"Protocol: {WARMUP} warm-up steps, {WINDOWS} windows of {STEPS} steps, median; PyTorch's best here: "
          f"{best_torch['name']} ({best_torch['steps_per_s']:.1f} steps/s).", ""]
    md += table(rows)
    sweep_rows = []
    write_results(args.out, env, md, rows, sweep_rows)  # kept if the sweep is cut short
    if args.sweep:  # ours in TF32 against PyTorch's default (eager, TF32): like with like
        ours_tf32 = [r for r in timed if r["impl"] == "cudnn" and precision_of(r["name"]) == "tf32"]
        best_ours = min(ours_tf32, key=lambda r: r["ms"])
        md += ["", f"## Sweep: {best_ours['name']} against torch eager tf32", ""]
        sweep_lines = ["| batch x patch | ours steps/s | torch steps/s | ratio | ours MiB | torch MiB |",
                       "| --- | ---: | ---: | ---: | ---: | ---: |"]
        md += sweep_lines
        for batch, size in points:
            pair = [run_variant(best_ours["name"], "cudnn", OURS[best_ours["name"]], batch, size, args.timeout),
                    run_variant("torch eager tf32", "torch", TORCH["torch eager tf32"], batch, size, args.timeout)]
            sweep_rows += pair
            if any("error" in p for p in pair):
                md.append(f"| {batch} x {size} | {pair[0].get('error', '')} | {pair[1].get('error', '')} | | | |")
            else:
                o, t = pair
                md.append(f"| {batch} x {size}^2 | {o['steps_per_s']:.1f} | {t['steps_per_s']:.1f} | "
                          f"{t['ms'] / o['ms']:.2f} | {o['held_mib']:.0f} | {t['held_mib']:.0f} |")
            print("  sweep", md[-1], flush=True)
            write_results(args.out, env, md, rows, sweep_rows)
    print("\n".join(md))
    for r in timed:
        if r.get("profile"):
            print(f"\n## Per call, {r['name']}\n" + "\n".join(r["profile"]))
    if args.algorithms:
        for r in timed:
            if r["impl"] == "cudnn" and not r["options"].get("graph"):
                print(f"\n## Algorithms offered, {r['name']}")
                for layer, dirs in r["algorithms"].items():
                    for d, info in dirs.items():
                        print(f"{layer} {d}: chose {info['chosen']}\n    " + "\n    ".join(info["offered"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
