"""Training from files, end to end: our train CLI against the seed's PyTorch recipe, same files.

    python benchmarks/bench_e2e.py --out DIR [--data-dir /tmp/cudnn_denoise_e2e]
                                   [--samples 800] [--size 1024] [--epochs 3] [--quick] [--cpu]

Makes (or reuses) a float32 dataset with make_dataset and its float16 conversion on the local disk
(--data-dir; a tmpfs folder is flagged: nothing there is ever cold), measures the disk's own
O_DIRECT read rate (one stream of 16 MiB reads from offset 0, as `dd iflag=direct bs=16M` reads,
and four threads reading whole random samples), then runs each contender for --epochs epochs:
  ours         python -m cudnn_denoise.train --data D --graph-api --graph --epochs E --out O
               --log-every <batches per epoch> --cache C, as a user runs it (--cpu: --backend
               reference); the data-on-GPU step rate of the same options comes from
               bench_train.py's worker (data already on the GPU, median of windows)
  torch seed   the seed's recipe: np.memmap Dataset, DataLoader(batch 4, shuffle, num_workers=2,
               pin_memory=True), the seed's 3-layer model, SGD lr 0.001, MSE, loss.item() each step
  torch tuned  the same model and step with a tuned loader: 8 workers, persistent_workers,
               prefetch_factor 4, pin_memory, samples read with os.pread (no mapping, see below),
               cudnn.benchmark, the loss read once per epoch
in three cases:
  (a) warm     both files read once before each contender (the set fits in memory); ours with
               --cache auto (which keeps a set that fits)
  (b) cold     the page cache dropped before each epoch of every contender: ours with --cache
               drop (what auto chooses for a set larger than memory), whose reader drops every
               range it reads, so each epoch starts cold by itself; PyTorch's workers drop between
               epochs, after the DataLoader's workers have exited (the seed's) or while they map
               nothing (the tuned one's pread): pages mapped by a live process are never dropped
  (c) cold, float16 files: ours only, against (b)'s seed recipe on its float32 files
Dropping is `sync; echo 1 > /proc/sys/vm/drop_caches` where permitted (root; not with --cpu, the
smoke test, which leaves a shared machine's cache alone) and posix_fadvise DONTNEED on both files
always; every epoch records the fraction of both files cached when it
started (mincore), so a "cold" epoch that was not shows. Per epoch: steps/s, the data it consumed
in MB/s, the bytes the disk delivered (/proc/diskstats of the data's device) in MB/s, and the
process's largest resident set (VmRSS) and its process tree's (DataLoader workers included) largest
proportional set (PSS), both sampled every 0.1 s.
Writes e2e_<machine>.md and .json to --out, then prints the table and the goals last.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_reader import filesystem, machine  # the benchmarks folder is no package

from cudnn_denoise.data.cache import cached_bytes
from cudnn_denoise.data.format import (
    DataError,
    Dataset,
    drop_cached,
    open_dir,
)

MB = 1e6
BLOCK = 16 * 2**20  # O_DIRECT read size, as dd bs=16M
DIRECT_BYTES = 2 * 2**30  # read by the O_DIRECT measurements (at most the file)
BATCH = 4
GOALS = {"warm_of_gpu": 0.95, "warm_x_seed": 1.6, "cold_of_disk": 0.90, "f16_x_seed": 1.8}


# ---- the page cache, the disk, the processes ----

def drop_caches(paths, system: bool = True) -> str:
    """Write back, then drop the page cache: system-wide where permitted (and `system`), and each
    file's own cache (posix_fadvise DONTNEED) always. Returns how."""
    os.sync()
    how = "posix_fadvise DONTNEED"
    try:
        if system:
            with open("/proc/sys/vm/drop_caches", "w") as control:
                control.write("1\n")
            how = "drop_caches + " + how
    except OSError:
        pass  # not root, or a read-only /proc/sys (a container): the files' own drop remains
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            drop_cached(fd)
        finally:
            os.close(fd)
    return how


def warm_up(paths) -> None:
    """Read both files once, through the page cache."""
    buffer = bytearray(BLOCK)
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buffer):
                pass


def cached_fraction(paths) -> float:
    return sum(cached_bytes(p) for p in paths) / sum(os.path.getsize(p) for p in paths)


def block_devices(path: Path) -> list[str]:
    """The /proc/diskstats names that hold `path`: its own device, or where that is virtual
    (overlay, a container's root), every physical disk."""
    st = os.stat(path)
    device = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    if device.exists():
        return [device.resolve().name]
    return sorted(p.name for p in Path("/sys/block").iterdir() if (p / "device").exists())


def disk_read_bytes(devices: list[str]) -> int:
    """Bytes read so far from `devices` (/proc/diskstats: sectors of 512 bytes, field 6)."""
    total = 0
    for line in Path("/proc/diskstats").read_text().splitlines():
        fields = line.split()
        if fields[2] in devices:
            total += int(fields[5]) * 512
    return total


def odirect_rate(path: Path, nbytes: int, threads: int = 1,
                 sample_nbytes: int = BLOCK) -> float | None:
    """MB/s of O_DIRECT reads of `path`: one thread reading BLOCKs from offset 0 (dd's way), or
    `threads` threads reading whole samples at random offsets (the reader's way). None where the
    filesystem refuses O_DIRECT (tmpfs)."""
    import mmap

    size = os.path.getsize(path)
    nbytes = min(nbytes, size)
    try:
        fds = [os.open(path, os.O_RDONLY | os.O_DIRECT) for _ in range(threads)]
    except OSError:
        return None
    chunk = min(BLOCK, nbytes // 4096 * 4096) if threads == 1 else sample_nbytes
    offsets = list(range(0, nbytes - chunk + 1, chunk))
    if threads > 1:
        samples = size // sample_nbytes
        offsets = (np.random.default_rng(0).permutation(samples)[: len(offsets)]
                   * sample_nbytes).tolist()

    def read(fd, mine):
        buffer = mmap.mmap(-1, chunk)  # page-aligned, as O_DIRECT needs
        for offset in mine:
            os.preadv(fd, [buffer], offset)
        buffer.close()

    started = time.perf_counter()
    workers = [threading.Thread(target=read, args=(fd, offsets[i::threads]))
               for i, fd in enumerate(fds)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    seconds = time.perf_counter() - started
    for fd in fds:
        os.close(fd)
    return len(offsets) * chunk / seconds / MB


def cold_read_rate(path: Path, nbytes: int) -> float:
    """MB/s of a buffered sequential read of `path` in BLOCKs right after dropping its cache: the
    disk's rate where O_DIRECT is refused (overlay or tmpfs), a little above it (readahead)."""
    drop_caches([path], system=False)
    buffer, done = bytearray(BLOCK), 0
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while done < nbytes and (got := f.readinto(buffer)):
            done += got
    return done / (time.perf_counter() - started) / MB


def process_tree(root: int) -> list[int]:
    """root and its descendants (DataLoader workers), from /proc/*/stat."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def memory_kib(pids) -> tuple[int, int]:
    """(VmRSS of the first pid, PSS summed over all), in KiB. PSS shares each page among the
    processes that map it, so forked DataLoader workers are not counted many times over."""
    rss = pss = 0
    for i, pid in enumerate(pids):
        try:
            if i == 0:
                status = Path(f"/proc/{pid}/status").read_text()
                rss = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1))
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            pss += int(re.search(r"^Pss:\s+(\d+) kB", rollup, re.MULTILINE).group(1))
        except (OSError, AttributeError):
            continue  # gone meanwhile
    return rss, pss


class Watched:
    """A contender's process, run to its end (killed with its children after `timeout` s): its
    output lines, each with the time it arrived, and its process tree's memory every 0.1 s and at
    each line (epochs are marked by lines: a short epoch still gets its readings)."""

    def __init__(self, cmd: list[str], timeout: float, on_line=None):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env, cwd=HERE.parent, start_new_session=True)
        self.lines: list[tuple[float, str]] = []
        self.memory: list[tuple[float, int, int]] = []
        self.timed_out = False
        self._done = threading.Event()
        sampler = threading.Thread(target=self._sample, daemon=True)
        sampler.start()
        timer = threading.Timer(timeout, self._kill)
        timer.start()
        for line in self.proc.stdout:
            now = time.monotonic()
            self.lines.append((now, line.rstrip("\n")))
            self._record()
            if on_line is not None:
                on_line(now, line)
        self.code = self.proc.wait()
        timer.cancel()
        self._done.set()
        sampler.join()

    def _kill(self) -> None:
        self.timed_out = True
        os.killpg(self.proc.pid, 9)  # its own session: the DataLoader's workers too

    def _sample(self) -> None:
        while not self._done.wait(0.1):
            self._record()

    def _record(self) -> None:
        rss, pss = memory_kib(process_tree(self.proc.pid))
        if rss:
            self.memory.append((time.monotonic(), rss, pss))

    def peak_mib(self, start: float, end: float) -> tuple[float, float]:
        """The largest (RSS of the process, PSS of its tree) sampled between start and end."""
        inside = [(r, p) for t, r, p in self.memory if start <= t <= end] or [(0, 0)]
        return max(r for r, _ in inside) / 1024, max(p for _, p in inside) / 1024

    def tail(self) -> str:
        last = " | ".join(line for _, line in self.lines[-3:])
        return ("timed out; " if self.timed_out else "") + last


# ---- the contenders ----

def run_ours(case: str, dataset: Dataset, args, cache: str, devices) -> dict:
    """Our train CLI for args.epochs epochs, its --out in --data-dir; an epoch ends with its log
    line (--log-every is the epoch's batch count), at which the disk counter and the files' cache
    are read."""
    per_epoch = -(-dataset.count // BATCH)
    run_dir = args.data_dir / "runs" / case.replace(" ", "_")
    shutil.rmtree(run_dir, ignore_errors=True)
    backend = ["--backend", "reference"] if args.cpu else ["--graph-api", "--graph"]
    cmd = [sys.executable, "-m", "cudnn_denoise.train", "--data", str(dataset.noisy.parent),
           "--epochs", str(args.epochs), "--out", str(run_dir), "--log-every", str(per_epoch),
           "--checkpoint-every", "0", "--cache", cache, *backend]
    files = (dataset.noisy, dataset.clean)
    marks = []  # (time, disk bytes, cached fraction) at the start and at each epoch's end

    def on_line(now, line):
        if line.startswith("training ") or re.match(r"batch\s+\d+\s+epoch", line):
            marks.append((now, disk_read_bytes(devices), cached_fraction(files)))

    watched = Watched(cmd, args.timeout, on_line)
    text = "\n".join(line for _, line in watched.lines)
    row = {"contender": "ours", "case": case, "command": " ".join(cmd[1:]),
           "cache": next((line.split("data: ", 1)[1] for _, line in watched.lines
                          if line.startswith("data: page cache")), None)}
    if watched.code != 0 or len(marks) < 2:
        return {**row, "error": f"exit {watched.code}: {watched.tail()}"}
    epochs = []
    for (t0, d0, cached), (t1, d1, _) in itertools.pairwise(marks):
        epochs.append(epoch_row(per_epoch, t1 - t0, d1 - d0, dataset, cached,
                                watched.peak_mib(t0, t1)))
    row["epochs"] = epochs
    row["summary"] = re.findall(r"^done: .*$", text, re.MULTILINE)
    return row


def run_torch(case: str, dataset: Dataset, args, tuned: bool, cold: bool, devices) -> dict:
    """The PyTorch worker (this file, --torch-worker) for args.epochs epochs."""
    spec = {"noisy": str(dataset.noisy), "clean": str(dataset.clean), "count": dataset.count,
            "height": dataset.height, "width": dataset.width, "dtype": dataset.dtype.str,
            "epochs": args.epochs, "tuned": tuned, "cold": cold,
            "device": "cpu" if args.cpu else "cuda", "system_drop": not args.cpu}
    marks = {}

    def on_line(now, line):
        if line.startswith("E2E "):
            event = json.loads(line[4:])
            marks[(event["event"], event["epoch"])] = (now, disk_read_bytes(devices), event)

    watched = Watched([sys.executable, __file__, "--torch-worker", json.dumps(spec)], args.timeout,
                      on_line)
    row = {"contender": "torch tuned" if tuned else "torch seed", "case": case}
    epochs = []
    for epoch in range(args.epochs):
        if ("start", epoch) not in marks or ("end", epoch) not in marks:
            return {**row, "error": f"exit {watched.code}: {watched.tail()}"}
        t0, d0, start = marks[("start", epoch)]
        t1, d1, end = marks[("end", epoch)]
        epochs.append(epoch_row(end["steps"], end["seconds"], d1 - d0, dataset,
                                start["cached"], watched.peak_mib(t0, t1)))
        epochs[-1]["loss"] = end["loss"]
    row["epochs"] = epochs
    return row


def epoch_row(steps: int, seconds: float, disk: int, dataset: Dataset, cached: float,
              peak: tuple[float, float]) -> dict:
    consumed = min(steps * BATCH, dataset.count) * 2 * dataset.sample_nbytes
    return {"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
            "data_mb_s": consumed / seconds / MB, "disk_mb_s": disk / seconds / MB,
            "cached_at_start": cached, "rss_mib": peak[0], "tree_pss_mib": peak[1]}


def data_on_gpu_rate(args) -> dict:
    """steps/s of the same options with the data already on the GPU (bench_train.py's worker)."""
    from bench_train import run_variant

    return run_variant("cudnn tf32 graph-api graph", "cudnn", {"math": "tf32", "graph_api": True,
                                                               "graph": True},
                       BATCH, args.size, args.timeout)


# ---- the PyTorch side, in its own process ----

def torch_worker(spec: dict) -> None:
    """One contender: the seed's recipe or the tuned loader; prints E2E {json} per epoch."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    device = torch.device(spec["device"])
    cuda = device.type == "cuda"
    count, shape, dtype = spec["count"], (1, spec["height"], spec["width"]), np.dtype(spec["dtype"])
    files = (spec["noisy"], spec["clean"])
    dataset = (PreadPairs if spec["tuned"] else MemmapPairs)(files, count, shape, dtype)
    loader_options = {"batch_size": BATCH, "shuffle": True, "pin_memory": cuda}
    if spec["tuned"]:
        torch.backends.cudnn.benchmark = True
        loader_options.update(num_workers=8, persistent_workers=True, prefetch_factor=4)
    else:
        loader_options.update(num_workers=2)
    loader = DataLoader(dataset, **loader_options)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 1, 3, padding=1)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.001)
    for epoch in range(spec["epochs"]):
        if spec["cold"]:
            drop_caches(files, spec["system_drop"])
        start = {"event": "start", "epoch": epoch, "cached": cached_fraction(files)}
        print("E2E " + json.dumps(start), flush=True)
        started, steps = time.perf_counter(), 0
        running, total = 0.0, torch.zeros((), device=device)
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            if spec["tuned"]:
                total += loss.detach()  # read once, at the epoch's end
            else:
                running += loss.item()  # the seed's running average, read every step
            steps += 1
        running += total.item()
        seconds = time.perf_counter() - started
        print("E2E " + json.dumps({"event": "end", "epoch": epoch, "steps": steps,
                                   "seconds": seconds, "loss": running / steps}), flush=True)


class MemmapPairs:
    """The seed's Dataset: both files memory-mapped, sample i copied out as float32."""

    def __init__(self, files, count, shape, dtype):
        self.noisy, self.clean = (np.memmap(f, dtype, "r", shape=(count, *shape)) for f in files)

    def __len__(self):
        return len(self.noisy)

    def __getitem__(self, i):
        import torch

        return (torch.from_numpy(np.array(self.noisy[i], np.float32)),
                torch.from_numpy(np.array(self.clean[i], np.float32)))


class PreadPairs:
    """The tuned Dataset: sample i read with os.preadv into a new array, the files opened once
    per worker process; nothing stays mapped, so dropping the cache between epochs works while
    persistent workers live."""

    def __init__(self, files, count, shape, dtype):
        self.files, self.count, self.shape, self.dtype = files, count, shape, dtype
        self.sample_nbytes = int(np.prod(shape)) * dtype.itemsize
        self._fds = None
        self._pid = None

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        import torch

        if self._pid != os.getpid():  # a new worker: its own descriptors
            self._fds, self._pid = [os.open(f, os.O_RDONLY) for f in self.files], os.getpid()
        out = []
        for fd in self._fds:
            values = np.empty(self.shape, self.dtype)
            view, done = memoryview(values).cast("B"), 0
            while done < len(view):
                got = os.preadv(fd, [view[done:]], i * self.sample_nbytes + done)
                if got == 0:
                    raise DataError(f"short read of sample {i}")
                done += got
            out.append(torch.from_numpy(values.astype(np.float32, copy=False)))
        return tuple(out)


# ---- data, report ----

def make_data(args) -> tuple[Dataset, Dataset]:
    """The float32 set and its float16 conversion in --data-dir, made unless already there."""
    f32_dir, f16_dir = args.data_dir / "float32", args.data_dir / "float16"
    maker = [sys.executable, "-m", "cudnn_denoise.make_dataset", "--quiet"]
    for folder, dtype, make in (
            (f32_dir, "float32", ["--samples", str(args.samples), "--size", str(args.size),
                                  "--workers", str(os.cpu_count() or 1)]),
            (f16_dir, "float16", ["--from-dataset", str(f32_dir), "--dtype", "float16"])):
        try:
            existing = open_dir(folder)
            if ((existing.count, existing.height, existing.width, existing.dtype.name)
                    == (args.samples, args.size, args.size, dtype)):
                print(f"reusing {folder}", flush=True)
                continue
        except DataError:
            pass
        shutil.rmtree(folder, ignore_errors=True)
        started = time.perf_counter()
        subprocess.run([*maker, "--out", str(folder), *make], check=True, cwd=HERE.parent)
        print(f"made {folder} in {time.perf_counter() - started:.1f} s", flush=True)
    return open_dir(f32_dir), open_dir(f16_dir)


def fmt(value, spec=".1f") -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict]) -> list[str]:
    lines = [("| case | contender | epoch | steps/s | data MB/s | disk MB/s | cached at start "
              "| RSS MiB | tree PSS MiB |"),
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        if "error" in row or "skipped" in row:
            lines.append(f"| {row['case']} | {row['contender']} | - | - | - | - | - | - | "
                         f"{row.get('error') or row.get('skipped')} |")
            continue
        for i, e in enumerate(row["epochs"], start=1):
            lines.append(f"| {row['case']} | {row['contender']} | {i} | {e['steps_per_s']:.1f} "
                         f"| {e['data_mb_s']:.4g} | {e['disk_mb_s']:.4g} "
                         f"| {e['cached_at_start']:.0%} | {e['rss_mib']:.0f} "
                         f"| {e['tree_pss_mib']:.0f} |")
    return lines


def later_epochs(rows, case, contender, key="steps_per_s") -> float | None:
    """The mean of `key` over epochs 2.. (epoch 1 alone if there is one) of a contender."""
    row = next((r for r in rows if r["case"] == case and r["contender"] == contender
                and "epochs" in r), None)
    if row is None:
        return None
    values = [e[key] for e in row["epochs"][1:]] or [row["epochs"][0][key]]
    return float(np.mean(values))


def goals(rows: list[dict], gpu_rate: float | None, disk_rate: float | None) -> list[str]:
    """Issue 17's goals, each as: measured, target, met."""
    def line(name, value, target, unit=""):
        if value is None:
            return f"- {name}: not measured"
        verdict = "met" if value >= target else "NOT met"
        return f"- {name}: {value:.2f}{unit} (goal >= {target}{unit}): {verdict}"

    warm = [e["steps_per_s"] for r in rows if r["case"] == "warm" and r["contender"] == "ours"
            and "epochs" in r for e in r["epochs"][1:]]
    seed_warm = later_epochs(rows, "warm", "torch seed")
    cold = later_epochs(rows, "cold", "ours", "disk_mb_s")
    cold_data = later_epochs(rows, "cold", "ours", "data_mb_s")
    f16 = later_epochs(rows, "cold float16", "ours")
    seed_cold = later_epochs(rows, "cold", "torch seed")
    out = [line("warm, slowest epoch after the first / data-on-GPU rate",
                min(warm) / gpu_rate if warm and gpu_rate else None, GOALS["warm_of_gpu"]),
           line("warm, ours / seed recipe (epochs after the first)",
                np.mean(warm) / seed_warm if warm and seed_warm else None,
                GOALS["warm_x_seed"], "x"),
           line("cold float32, disk MB/s / O_DIRECT MB/s",
                cold / disk_rate if cold is not None and disk_rate else None,
                GOALS["cold_of_disk"]),
           line("cold float32, data MB/s / O_DIRECT MB/s",
                cold_data / disk_rate if cold_data is not None and disk_rate else None,
                GOALS["cold_of_disk"]),
           line("cold, ours on float16 / seed recipe on float32",
                f16 / seed_cold if f16 and seed_cold else None, GOALS["f16_x_seed"], "x")]
    for row in rows:
        if row["contender"] == "ours" and "epochs" in row:
            rss = [e["rss_mib"] for e in row["epochs"]]
            out.append(f"- RSS, ours, {row['case']}: {' / '.join(f'{v:.0f}' for v in rss)} MiB by "
                       f"epoch (flat: {'yes' if max(rss) <= 1.05 * min(rss) + 64 else 'NO'})")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="folder for the tables and runs (required)")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/cudnn_denoise_e2e"),
                        help="folder for the datasets, on the local disk (not tmpfs); reused")
    parser.add_argument("--samples", type=int, default=800, help="pairs (default 800)")
    parser.add_argument("--size", type=int, default=1024, help="patch side (default 1024)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per contender and case")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 16 pairs of 64 x 64, 2 epochs")
    parser.add_argument("--cpu", action="store_true",
                        help="ours on the reference backend, PyTorch on the CPU, no GPU rate")
    parser.add_argument("--timeout", type=float, default=240,
                        help="seconds per contender at most (default 240)")
    parser.add_argument("--budget", type=float, default=360,
                        help="seconds for the whole run, data included: a contender gets what is "
                             "left of it plus 20 s at most, and none starts with less than 20 s "
                             "left (default 360: the run ends within 6 min 20 s)")
    parser.add_argument("--torch-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_worker:
        torch_worker(json.loads(args.torch_worker))
        return 0
    if args.out is None:
        parser.error("--out DIR is required")
    if args.quick:
        args.samples, args.size, args.epochs = 16, 64, 2
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    f32, f16 = make_data(args)
    files32, files16 = (f32.noisy, f32.clean), (f16.noisy, f16.clean)
    devices = block_devices(f32.noisy)
    fs = filesystem(args.data_dir)
    how = drop_caches(files32 + files16, not args.cpu)
    disk = {"one stream": odirect_rate(f32.noisy, DIRECT_BYTES),
            "4 threads, random samples": odirect_rate(f32.noisy, DIRECT_BYTES, 4,
                                                      f32.sample_nbytes)}
    if disk["one stream"] is None:  # no O_DIRECT here: a cold buffered read stands in
        disk["one stream"] = disk["buffered cold, O_DIRECT refused"] = cold_read_rate(
            f32.noisy, DIRECT_BYTES)
    print(f"data in {args.data_dir} ({fs}, devices {', '.join(devices)}); dropping: {how}; "
          f"O_DIRECT MB/s: {disk}", flush=True)
    args.timeout = min(args.timeout, max(20.0, args.budget - (time.monotonic() - started)))
    gpu = None if args.cpu else data_on_gpu_rate(args)
    if gpu is not None:
        print(f"data on the GPU: {fmt(gpu.get('steps_per_s'))} steps/s {gpu.get('error', '')}",
              flush=True)
    plan = [  # (case, contender, run, the files it reads, cold); the goals' contenders first
        ("warm", "ours", partial(run_ours, "warm", f32, args, "auto", devices), files32, False),
        ("warm", "torch seed", partial(run_torch, "warm", f32, args, False, False, devices),
         files32, False),
        ("cold", "ours", partial(run_ours, "cold", f32, args, "drop", devices), files32, True),
        ("cold", "torch seed", partial(run_torch, "cold", f32, args, False, True, devices),
         files32, True),
        ("cold float16", "ours", partial(run_ours, "cold float16", f16, args, "drop", devices),
         files16, True),
        ("warm", "torch tuned", partial(run_torch, "warm", f32, args, True, False, devices),
         files32, False),
        ("cold", "torch tuned", partial(run_torch, "cold", f32, args, True, True, devices),
         files32, True),
    ]
    rows = []
    for case, contender, run, files, cold in plan:
        left = args.budget - (time.monotonic() - started)
        if left < 20:
            rows.append({"case": case, "contender": contender,
                         "skipped": f"skipped: past the {args.budget:.0f} s budget"})
            continue
        args.timeout = min(args.timeout, left + 20)
        drop_caches(files, not args.cpu) if cold else warm_up(files)
        row = run()
        rows.append(row)
        rates = row.get("error") or " ".join(f"{e['steps_per_s']:.1f}" for e in row["epochs"])
        print(f"{time.monotonic() - started:5.0f} s  {case:13s} {contender:12s} {rates} steps/s",
              flush=True)
    info = machine()
    gpu_rate = None if gpu is None else gpu.get("steps_per_s")
    md = [f"# Training from files, end to end: {info.get('gpu') or 'CPU'}", "",
          (f"{time.strftime('%Y-%m-%d')}; {info['cores']} cores, {info['memory_gib']} GiB; "
           f"{args.samples} pairs of {args.size} x {args.size}, batch {BATCH}, {args.epochs} "
           f"epochs per contender; data in {args.data_dir} ({fs}"
           + (": tmpfs, never cold" if fs == "tmpfs" else "") + f"); dropping: {how}."),
          (f"Disk, O_DIRECT: {fmt(disk['one stream'], '.0f')} MB/s one stream of 16 MiB reads, "
           f"{fmt(disk['4 threads, random samples'], '.0f')} MB/s four threads of whole samples. "
           f"Ours with the data on the GPU (bench_train): {fmt(gpu_rate)} steps/s."), ""]
    md += table(rows)
    md += ["", "Goals:"] + goals(rows, gpu_rate, disk["one stream"])
    md += ["", f"{time.monotonic() - started:.0f} s in all."]
    stem = "e2e_" + re.sub(r"\W+", "_", info.get("gpu") or "cpu")
    (args.out / f"{stem}.md").write_text("\n".join(md) + "\n")
    (args.out / f"{stem}.json").write_text(json.dumps(
        {"machine": info, "disk_odirect_mb_s": disk, "data_on_gpu": gpu, "filesystem": fs,
         "dropping": how, "rows": rows}, indent=1) + "\n")
    print("\n".join(md))
    return 0 if all("epochs" in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
