"""Data-parallel scaling on one machine: our NCCL path (mpirun) against PyTorch DDP (torchrun).

    python benchmarks/bench_ddp.py [--out DIR] [--gpus 1,2,4,8] [--steps 200] [--quick] [--rehearse]

For 1, 2, 4 and 8 GPUs (those the machine has), one process per GPU, each implementation trains the
seed model with the same per-GPU batch, 4 x 1 x 1024 x 1024, in TF32:
  ours   cudnn_denoise's training.Trainer with --graph-api --graph (our fastest TF32 step) under
         mpirun -n R: gradients by ncclAllReduce + cublasSscal inside the step's CUDA graph
  DDP    torch.nn.parallel.DistributedDataParallel under torchrun (python -m torch.distributed.run
         --standalone), NCCL backend, TF32, cudnn.benchmark: eager NCHW (the seed's recipe) and,
         unless --quick, eager channels_last (PyTorch's fastest eager step)
One GPU is each implementation as a user runs it there: a plain process, no launcher, no NCCL, no
DDP wrapper (--rehearse adds one GPU under the launchers: mpirun -n 1, torchrun with DDP).
Each process times two data modes, each after WARMUP steps:
  gpu    4 rotating random batches already on each GPU: the step alone (ours: the model's step and
         the watchdog's event, without the loop's per-step stop-signal agreement)
  files  the training loop reading each rank's rows of every global batch from files in /dev/shm
         (ours: Trainer.run with PairReader; DDP: an np.memmap Dataset, DistributedSampler,
         DataLoader with 2 workers, pinned memory and persistent workers)
Reported: global steps/s (all ranks together: synchronised, then a barrier), samples/s (x 4 x
GPUs), efficiency (samples/s / (GPUs x one GPU's samples/s), same implementation and data mode)
and ours / DDP eager. Tables go to DIR (default benchmarks/results/) as markdown and JSON.
NVLink multicast stays off in every process: NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1,
NVSHMEM_DISABLE_NVLS=1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCH, SIZE, LR = 4, 1024, 0.001
WARMUP = 30
NO_MULTICAST = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}
OURS = "ours graph-api graph"
IMPLEMENTATIONS = {  # name -> (worker, options)
    OURS: ("ours", {}),
    "DDP eager": ("torch", {"channels_last": False}),
    "DDP channels_last": ("torch", {"channels_last": True}),
}
BASELINE = "DDP eager"


# ---- worker side: one rank of one implementation ------------------------------------------------


def timed_steps(step, steps: int, synchronize) -> float:
    """Steps per second of `steps` calls of step(i) after WARMUP, every rank finished (synchronize:
    this GPU's work done, then a barrier of the ranks)."""
    for i in range(WARMUP):
        step(i)
    synchronize()
    start = time.perf_counter()
    for i in range(WARMUP, WARMUP + steps):
        step(i)
    synchronize()
    return steps / (time.perf_counter() - start)


def run_ours(spec: dict, world) -> int:
    """One rank of ours; rank 0 prints the result line. Under MPI, a failure ends every rank."""
    import cupy

    from cudnn_denoise.data.format import open_dir
    from cudnn_denoise.params import init_params
    from cudnn_denoise.training.loop import Config, Trainer

    config = Config(
        batch_size=BATCH,
        lr=LR,
        backend="cudnn",
        graph_api=True,
        graph=True,
        drop_last=True,
        epochs=10**6,
        max_steps=WARMUP,
        log_every=10**9,
        checkpoint_every=0,
    )
    out = Path(spec["scratch"]) / f"ours-{world.size}"
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(
        open_dir(spec["data"]), config, out, init_params(0), world=world, report=lambda line: None
    )
    try:
        trainer.run()  # warm-up: algorithms from the cache, the graph captured, the reader running
        config.max_steps = WARMUP + spec["steps"]
        summary = trainer.run()
        files = summary.steps_run / summary.seconds
        model = trainer.model
        with model.stream:
            data = [
                (
                    cupy.random.random(model.shape, dtype=cupy.float32),
                    cupy.random.random(model.shape, dtype=cupy.float32),
                )
                for _ in range(4)
            ]

        def step(i):
            x, target = data[i % len(data)]
            model.train_step_async(x, target, LR, slot=i % 1000)
            if trainer.gpus is not None:
                trainer.gpus.step_queued(model.stream)

        def synchronize():
            model.stream.synchronize()
            world.barrier()

        gpu = timed_steps(step, spec["steps"], synchronize)
    finally:
        trainer.close()
    if world.lead:
        print(json.dumps({"gpu": gpu, "files": files, "ranks": world.size}), flush=True)
    return 0


class MemmapPairs:
    """The seed's PyTorch dataset: (noisy, clean) sample i from two float32 files, np.memmap'ed
    (opened in each DataLoader worker on first use)."""

    def __init__(self, folder: str, count: int, height: int, width: int):
        self.folder, self.shape = Path(folder), (count, 1, height, width)
        self.files = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int):
        import numpy as np
        import torch

        if self.files is None:
            self.files = [
                np.memmap(self.folder / name, np.float32, "r", shape=self.shape)
                for name in ("noisy.bin", "clean.bin")
            ]
        return tuple(torch.from_numpy(np.array(f[index])) for f in self.files)


def run_torch(spec: dict) -> int:
    """One rank of DDP (or the plain model); rank 0 prints the result line. torchrun ends every
    rank when one fails."""
    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.utils.data import DataLoader, DistributedSampler

    from cudnn_denoise.data.format import open_dir

    launched = "LOCAL_RANK" in os.environ  # torchrun: DDP, even on one GPU; else the plain model
    rank, size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.cuda.set_device(device)
    if launched:
        dist.init_process_group("nccl", device_id=device)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    fmt = torch.channels_last if spec["options"]["channels_last"] else torch.contiguous_format
    net = (
        nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 1, 3, padding=1),
        )
        .to(device)
        .to(memory_format=fmt)
    )
    model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index]) if launched else net
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def train(x, target):
        opt.zero_grad(set_to_none=True)
        nn.functional.mse_loss(model(x), target).backward()
        opt.step()

    def synchronize():
        torch.cuda.synchronize()
        if launched:
            dist.barrier()

    shape = (BATCH, 1, SIZE, SIZE)
    data = [
        (
            torch.rand(shape, device=device).contiguous(memory_format=fmt),
            torch.rand(shape, device=device).contiguous(memory_format=fmt),
        )
        for _ in range(4)
    ]
    gpu = timed_steps(lambda i: train(*data[i % len(data)]), spec["steps"], synchronize)
    dataset = open_dir(spec["data"])
    pairs = MemmapPairs(spec["data"], dataset.count, dataset.height, dataset.width)
    sampler = DistributedSampler(
        pairs, num_replicas=size, rank=rank, shuffle=True, seed=0, drop_last=True
    )
    loader = DataLoader(
        pairs,
        batch_size=BATCH,
        sampler=sampler,
        num_workers=2,
        pin_memory=True,
        drop_last=True,
        persistent_workers=True,
    )

    def batches():
        epoch = 0
        while True:
            sampler.set_epoch(epoch)
            for x, target in loader:
                yield (
                    x.to(device, non_blocking=True).contiguous(memory_format=fmt),
                    target.to(device, non_blocking=True).contiguous(memory_format=fmt),
                )
            epoch += 1

    stream = batches()
    files = timed_steps(lambda i: train(*next(stream)), spec["steps"], synchronize)
    if launched:
        dist.destroy_process_group()
    if rank == 0:
        print(json.dumps({"gpu": gpu, "files": files, "ranks": size}), flush=True)
    return 0


# ---- driver side ---------------------------------------------------------------------------------


def mpirun() -> str | None:
    """The MPI launcher: $CUDNN_DENOISE_MPIRUN, the mpich wheel's next to this Python, or PATH's."""
    for candidate in (
        os.environ.get("CUDNN_DENOISE_MPIRUN"),
        Path(sys.executable).parent / "mpirun",
        shutil.which("mpirun"),
    ):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return None


def command(worker: str, ranks: int, launched: bool, spec: dict) -> list[str]:
    args = [__file__, "--worker", json.dumps(spec)]
    if not launched:
        return [sys.executable, *args]
    if worker == "ours":
        launcher = mpirun()
        if launcher is None:
            raise FileNotFoundError("no mpirun: set CUDNN_DENOISE_MPIRUN or pip install mpich")
        return [launcher, "-n", str(ranks), sys.executable, *args]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={ranks}",
        *args,
    ]


def run_point(name: str, ranks: int, launched: bool, args, environ: dict) -> dict:
    worker, options = IMPLEMENTATIONS[name]
    spec = {
        "worker": worker,
        "options": options,
        "data": str(args.data),
        "scratch": str(args.scratch),
        "steps": args.steps,
    }
    row = {"name": name, "gpus": ranks, "launched": launched}
    log = (
        args.out
        / "bench_ddp_logs"
        / f"{name.replace(' ', '_')}-{ranks}{'-launched' if launched else ''}.log"
    )
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            command(worker, ranks, launched, spec),
            cwd=ROOT,
            env=environ,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        return {**row, "error": str(exc)}
    try:
        out, err = proc.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and every rank
        out, err = proc.communicate()
        log.write_text(f"$ {' '.join(proc.args)}\n{out}\n--- stderr ---\n{err}")
        return {**row, "error": f"timed out after {args.timeout} s (log: {log.name})"}
    log.write_text(f"$ {' '.join(proc.args)}\n{out}\n--- stderr ---\n{err}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (err.strip().splitlines() or ["no output"])[-2:]
        return {
            **row,
            "error": f"exit {proc.returncode}: " + " | ".join(tail) + f" (log: {log.name})",
        }
    return {**row, **json.loads(lines[-1]), "wall_s": round(time.monotonic() - started, 1)}


def with_efficiency(rows: list[dict]) -> None:
    """samples/s, efficiency against the same implementation's plain one-GPU run, and ours / DDP."""
    one = {
        (r["name"], mode): r[mode]
        for r in rows
        if "error" not in r and r["gpus"] == 1 and not r["launched"]
        for mode in ("gpu", "files")
    }
    base = {
        (r["gpus"], r["launched"], mode): r[mode]
        for r in rows
        if "error" not in r and r["name"] == BASELINE
        for mode in ("gpu", "files")
    }
    for r in rows:
        if "error" in r:
            continue
        for mode in ("gpu", "files"):
            r[f"{mode}_samples"] = r[mode] * BATCH * r["gpus"]
            single = one.get((r["name"], mode))
            r[f"{mode}_efficiency"] = r[mode] / single if single else None
            ddp = base.get((r["gpus"], r["launched"], mode))
            r[f"{mode}_vs_ddp"] = r[mode] / ddp if ddp else None


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| data | implementation | GPUs | global steps/s | samples/s | efficiency | x DDP eager |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"
    times = lambda v: "-" if v is None else f"{v:.2f}"
    for mode, label in (("gpu", "on the GPU"), ("files", "from files")):
        for r in rows:
            gpus = f"{r['gpus']}{' (launched)' if r['launched'] and r['gpus'] == 1 else ''}"
            if "error" in r:
                lines.append(f"| {label} | {r['name']} | {gpus} | - | - | - | {r['error']} |")
                continue
            lines.append(
                f"| {label} | {r['name']} | {gpus} | {r[mode]:.1f} | {r[f'{mode}_samples']:.0f} | "
                f"{pct(r[f'{mode}_efficiency'])} | {times(r[f'{mode}_vs_ddp'])} |"
            )
    return lines


def summary(rows: list[dict]) -> list[str]:
    """One line per GPU count > 1 and data mode: the goals' figures (>= 95% on 2 GPUs; vs DDP)."""
    lines = []
    ok = [r for r in rows if "error" not in r and r["gpus"] > 1]
    for mode in ("gpu", "files"):
        for gpus in sorted({r["gpus"] for r in ok}):
            parts = []
            for r in (r for r in ok if r["gpus"] == gpus):
                efficiency = r[f"{mode}_efficiency"]
                parts.append(
                    f"{r['name']} {r[mode]:.1f} steps/s, efficiency "
                    + ("-" if efficiency is None else f"{100 * efficiency:.1f}%")
                )
            ours = next((r for r in ok if r["gpus"] == gpus and r["name"] == OURS), None)
            if ours is not None and ours[f"{mode}_vs_ddp"] is not None:
                parts.append(f"ours / {BASELINE} {ours[f'{mode}_vs_ddp']:.2f}")
            lines.append(
                f"{gpus} GPUs, data {'on the GPU' if mode == 'gpu' else 'from files'}: "
                + "; ".join(parts)
            )
    return lines


def gpu_count() -> int:
    import cupy

    return cupy.cuda.runtime.getDeviceCount()


def describe() -> dict:
    from bench_train import environment

    from cudnn_denoise.bindings import load_nccl, nccl_version

    env = environment()
    env["nccl"] = nccl_version(load_nccl())
    env["gpus"] = gpu_count()
    topo = subprocess.run(["nvidia-smi", "topo", "-m"], capture_output=True, text=True, check=False)
    env["topology"] = (
        topo.stdout.strip()
        if topo.returncode == 0
        else f"nvidia-smi topo -m: {topo.stderr.strip()}"
    )
    return env


def ensure_data(folder: Path, samples: int):
    """The files the `files` mode reads: made once (make_dataset's synthetic pairs), then reused."""
    from cudnn_denoise.data.format import open_dir
    from cudnn_denoise.data.synthetic import write_dataset

    if (folder / "dataset.json").exists():
        dataset = open_dir(folder)
        if dataset.count >= samples and dataset.height == SIZE:
            return dataset
    started = time.monotonic()
    dataset = write_dataset(
        folder, samples, SIZE, seed=0, overwrite=True, workers=os.cpu_count() or 1
    )
    print(
        f"data: {samples} pairs of {SIZE}x{SIZE} written to {folder} in "
        f"{time.monotonic() - started:.0f} s",
        flush=True,
    )
    return dataset


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results", help="folder for the tables"
    )
    parser.add_argument(
        "--gpus", help="GPU counts to run, e.g. 1,2 (default: 1, 2, 4, 8 up to the GPUs here)"
    )
    parser.add_argument(
        "--steps", type=int, default=200, help="timed steps per data mode (default 200)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("/dev/shm/cudnn_denoise_bench_ddp"),
        help="folder of the files the `files` mode reads (made if missing)",
    )
    parser.add_argument(
        "--samples", type=int, help="pairs in it (default 128 x the most GPUs, at least 256)"
    )
    parser.add_argument(
        "--scratch",
        type=Path,
        default=Path("/dev/shm/cudnn_denoise_bench_ddp_runs"),
        help="folder for our runs' checkpoints and metrics (memory: the timed run ends with a "
        "checkpoint, whose fsync on a disk would count)",
    )
    parser.add_argument("--quick", action="store_true", help="DDP eager only (no channels_last)")
    parser.add_argument(
        "--rehearse",
        action="store_true",
        help="also one GPU under the launchers (mpirun -n 1 through NCCL; torchrun with DDP)",
    )
    parser.add_argument("--timeout", type=int, default=300, help="seconds per launch")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        if spec["worker"] == "torch":
            return run_torch(spec)
        from cudnn_denoise.distributed.world import detect

        world = detect()
        return world.run_or_abort(run_ours, spec, world)

    for name, value in NO_MULTICAST.items():  # inherited by every launcher and rank
        os.environ[name] = value
    env = describe()
    counts = (
        [int(c) for c in args.gpus.split(",")]
        if args.gpus
        else [c for c in (1, 2, 4, 8) if c <= env["gpus"]]
    )
    args.samples = args.samples or max(256, 128 * max(counts))
    print(
        f"{env['gpus']} x {env['gpu']}, driver {env['driver']}, cuDNN {env['cudnn']}, "
        f"NCCL {env['nccl']}, "
        f"PyTorch {env['torch']}; GPU counts {counts}; per GPU batch {BATCH} x 1 x {SIZE} x {SIZE}",
        flush=True,
    )
    ensure_data(args.data, args.samples)
    names = [n for n in IMPLEMENTATIONS if not (args.quick and n == "DDP channels_last")]
    points = [(name, gpus, gpus > 1) for gpus in counts for name in names]
    if args.rehearse:
        points += [(name, 1, True) for name in names]
    rows = []
    for name, gpus, launched in points:
        row = run_point(name, gpus, launched, args, dict(os.environ))
        rows.append(row)
        print(
            f"  {name:22s} {gpus} GPU(s){' launched' if launched and gpus == 1 else ''}: "
            + (
                row["error"]
                if "error" in row
                else f"on the GPU {row['gpu']:.1f} steps/s, from files {row['files']:.1f} steps/s "
                f"({row['wall_s']} s)"
            ),
            flush=True,
        )
    with_efficiency(rows)
    md = [
        (
            f"# Data-parallel scaling, {env['gpus']} x {env['gpu']}, per GPU batch "
            f"{BATCH} x 1 x {SIZE} x {SIZE}, TF32"
        ),
        "",
        (
            f"{env['date']}; driver {env['driver']}; cuDNN {env['cudnn']} (ours), "
            f"NCCL {env['nccl']}; PyTorch {env['torch']} (cuDNN {env['torch_cudnn']}); "
            f"CuPy {env['cupy']}; Python {env['python']}. benchmarks/bench_ddp.py: {WARMUP} "
            f"warm-up steps, then {args.steps} timed steps per data mode; files: "
            f"{args.samples} pairs in {args.data}. NCCL_NVLS_ENABLE=0."
        ),
        "",
        *table(rows),
        "",
        "GPU topology (nvidia-smi topo -m):",
        "",
        "```",
        env["topology"],
        "```",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"bench_ddp_{env['gpus']}x{env['gpu'].replace(' ', '_')}"
    (args.out / f"{stem}.md").write_text("\n".join(md) + "\n")
    (args.out / f"{stem}.json").write_text(
        json.dumps({"environment": env, "rows": rows}, indent=1) + "\n"
    )
    print("\n".join(md))
    print("\nsummary:\n" + "\n".join(summary(rows) or ["no run on more than one GPU"]))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
