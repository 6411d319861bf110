"""Benchmark: PairReader throughput in GB/s beside a raw sequential read of the same files.

    python benchmarks/bench_reader.py [--data DIR | --samples N --size PX] [--batch-size 4]
                                      [--workers 4] [--prefetch 4] [--repeats 3]

Cold rows start with both files written back and dropped from the page cache (fsync, then
posix_fadvise DONTNEED on the whole file), so they read the disk. Warm rows run after a raw pass
that caches the files (skipped when the files do not fit in half the available memory); the
reader then keeps them cached (drop_cache=False). Raw is one thread reading noisy.bin, then
clean.bin, in 16 MiB preadv calls into one buffer: what `dd bs=16M` does. Where a GPU is usable,
rows "-> GPU" include the asynchronous copy to device memory, finished (synchronised) before the
clock stops. Each row is the median of --repeats runs. The table goes to stdout and, as markdown
and JSON with the machine's description, to benchmarks/results/reader_<machine>.{md,json}.

Goals: reader cold >= 90% of raw cold; warm into GPU memory >= 10 GB/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cudnn_denoise.data.cache import cached_bytes, drop_cached
from cudnn_denoise.data.format import Dataset, open_dir
from cudnn_denoise.data.reader import PairReader
from cudnn_denoise.data.synthetic import write_dataset
from cudnn_denoise.bindings.device import gpu_status

RAW_BLOCK = 16 * 2**20
RESULTS = Path(__file__).resolve().parent / "results"


def evict(dataset: Dataset) -> None:
    """Write both files back and drop them from the page cache: the next read goes to disk."""
    for path in (dataset.noisy, dataset.clean):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages cannot be dropped
            drop_cached(fd)
        finally:
            os.close(fd)


def raw_read(dataset: Dataset) -> int:
    """Read both files start to end, one after the other, in 16 MiB blocks; return bytes read."""
    buffer = memoryview(bytearray(RAW_BLOCK))
    total = 0
    for path in (dataset.noisy, dataset.clean):
        fd = os.open(path, os.O_RDONLY)
        try:
            offset = 0
            while got := os.preadv(fd, [buffer], offset):
                offset += got
        finally:
            os.close(fd)
        total += offset
    return total


def reader_read(dataset: Dataset, args, *, shuffle: bool, device: bool, drop_cache: bool) -> int:
    """One epoch through PairReader, consumed as a training loop would; return bytes delivered."""
    total = 0
    with PairReader(dataset, args.batch_size, shuffle=shuffle, seed=0, drop_last=False,
                    device=device, workers=args.workers, prefetch=args.prefetch,
                    drop_cache=drop_cache) as reader:
        stream = None
        if device:
            import cupy

            stream = cupy.cuda.Stream(non_blocking=True)
        for batch in reader.epoch(0):
            batch.wait(stream)
            total += batch.x.nbytes + batch.y.nbytes
        if stream is not None:
            stream.synchronize()  # the clock stops when the last batch is on the GPU
    return total


def machine() -> dict:
    """What ran this: enough to tell two result files apart."""
    cpu = ""
    try:
        cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()).group(1)
    except (OSError, AttributeError):
        pass
    gpu_ok, gpu = gpu_status()
    info = {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
                                1),
            "kernel": platform.release(), "python": platform.python_version(),
            "numpy": np.__version__, "gpu": gpu if gpu_ok else None}
    if gpu_ok:
        import cupy

        info["cupy"] = cupy.__version__
    return info


def filesystem(path: Path) -> str:
    """The type of the filesystem holding `path`, from the longest matching /proc/mounts entry."""
    best, kind = "", "unknown"
    for line in Path("/proc/mounts").read_text().splitlines():
        _, point, fs_type, *_ = line.split()
        if str(path.resolve()).startswith(point) and len(point) > len(best):
            best, kind = point, fs_type
    return kind


def cached_after_evict(dataset: Dataset) -> float:
    """Fraction of the files still cached after evict(): near 0 where cold runs read the disk."""
    evict(dataset)
    return (cached_bytes(dataset.noisy) + cached_bytes(dataset.clean)) / dataset.nbytes


def available_bytes() -> int:
    match = re.search(r"MemAvailable:\s*(\d+) kB", Path("/proc/meminfo").read_text())
    return int(match.group(1)) * 1024 if match else 0


def measure(dataset: Dataset, args) -> list[dict]:
    """Every row of the table, cold rows first; repeats interleave the cases, so that drift in a
    shared machine's disk speed hits each case alike."""
    targets = [False, True] if gpu_status()[0] else [False]

    def reader_cases(cold: bool) -> list:
        return [(f"reader {'shuffled' if shuffle else 'sequential'}"
                 f"{' -> GPU' if device else ' -> host'}, {'cold' if cold else 'warm'}",
                 lambda s=shuffle, d=device: reader_read(dataset, args, shuffle=s, device=d,
                                                         drop_cache=cold))
                for device in targets for shuffle in (False, True)]

    rows = run_cases([("raw sequential read, cold", lambda: raw_read(dataset)),
                      *reader_cases(True)],
                     prepare=lambda: evict(dataset), repeats=args.repeats, cold=True)
    if dataset.nbytes > available_bytes() // 2:
        print(f"  warm rows skipped: {dataset.nbytes / 2**30:.1f} GiB of files do not fit in half "
              "the available memory", file=sys.stderr)
        return rows
    raw_read(dataset)  # fill the page cache
    rows += run_cases([("raw sequential read, warm", lambda: raw_read(dataset)),
                       *reader_cases(False)],
                      prepare=lambda: None, repeats=args.repeats, cold=False)
    evict(dataset)
    return rows


def run_cases(cases: list, prepare, repeats: int, cold: bool) -> list[dict]:
    """Run each (name, run) `repeats` times, round-robin, `prepare()` before each; `run` returns
    the bytes it read. A row holds the median seconds and the GB/s at that median."""
    seconds: dict[str, list[float]] = {name: [] for name, _ in cases}
    nbytes: dict[str, int] = {}
    for _ in range(repeats):
        for name, run in cases:
            prepare()
            start = time.perf_counter()
            nbytes[name] = run()
            seconds[name].append(time.perf_counter() - start)
    rows = []
    for name, _ in cases:
        median = statistics.median(seconds[name])
        rows.append({"case": name, "cold": cold, "bytes": nbytes[name], "seconds": median,
                     "gb_per_s": nbytes[name] / median / 1e9,
                     "runs_s": [round(s, 4) for s in seconds[name]]})
        print(f"  {name}: {rows[-1]['gb_per_s']:.2f} GB/s", file=sys.stderr)
    return rows


def table(rows: list[dict]) -> str:
    raw_cold = next(r["gb_per_s"] for r in rows if r["case"] == "raw sequential read, cold")
    lines = ["| case | GB/s | vs raw cold | median s | runs (s) |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        ratio = f"{r['gb_per_s'] / raw_cold:.0%}" if r["cold"] else ""
        lines.append(f"| {r['case']} | {r['gb_per_s']:.2f} | {ratio} | {r['seconds']:.3f} | "
                     f"{', '.join(map(str, r['runs_s']))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", metavar="DIR",
                        help="dataset directory (default: make a synthetic one in a temp dir)")
    parser.add_argument("--samples", type=int, default=256,
                        help="samples of the temp dataset (default 256)")
    parser.add_argument("--size", type=int, default=1024,
                        help="patch size of the temp dataset (default 1024)")
    parser.add_argument("--batch-size", type=int, default=4, help="default 4 (the seed's)")
    parser.add_argument("--workers", type=int, default=4, help="reader threads (default 4)")
    parser.add_argument("--prefetch", type=int, default=4, help="batches in flight (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row; median (default 3)")
    parser.add_argument("--tmp-dir", type=Path,
                        help="where to make the temp dataset (default: the system's temp dir)")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help=f"folder for the result files (default {RESULTS})")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_reader_", dir=args.tmp_dir) as tmp:
        if args.data:
            dataset = open_dir(args.data)
        else:
            print(f"making {args.samples} samples of {args.size}x{args.size} in {tmp}",
                  file=sys.stderr)
            dataset = write_dataset(tmp, args.samples, args.size, seed=0)
        fs_type = filesystem(dataset.noisy)
        still_cached = cached_after_evict(dataset)
        rows = measure(dataset, args)

    info = machine()
    setup = {"dataset": str(args.data or "synthetic temp"), "filesystem": fs_type,
             "cached_after_evict": still_cached, "samples": dataset.count,
             "height": dataset.height, "width": dataset.width,
             "file_bytes": dataset.nbytes, "batch_size": args.batch_size,
             "workers": args.workers, "prefetch": args.prefetch, "repeats": args.repeats}
    text = table(rows)
    heading = (f"# PairReader throughput: {info['gpu'] or 'no GPU'}, {info['cpu']} "
               f"x{info['cores']}\n\n"
               f"{dataset.count} pairs of {dataset.height}x{dataset.width} "
               f"({dataset.nbytes / 2**30:.2f} GiB in both files), batch {args.batch_size}, "
               f"{args.workers} workers, {args.prefetch} batches in flight, median of "
               f"{args.repeats}, files on {fs_type}. Cold: fsync + posix_fadvise DONTNEED on both "
               f"files before each run ({still_cached:.1%} stayed cached). Warm: files cached, "
               "reader with drop_cache=False.\n\n")
    print(heading + text)
    args.out.mkdir(parents=True, exist_ok=True)
    tag = re.sub(r"[^a-z0-9]+", "-", (info["gpu"] or "cpu").lower()).strip("-")
    (args.out / f"reader_{tag}.md").write_text(heading + text + "\n\nMachine: "
                                               + json.dumps(info) + "\n")
    (args.out / f"reader_{tag}.json").write_text(
        json.dumps({"machine": info, "setup": setup, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
