"""Benchmark: denoise's wall-clock rate over cold MRC micrographs, beside the disk's own read rate.

    python benchmarks/bench_denoise.py [--dir /tmp/cudnn_denoise_bench] [--count 24] [--size 4096]
                                       [--long N] [--backend cudnn] [--out benchmarks/results]

Writes --count synthetic float32 (mode 2) MRC micrographs of --size x --size into DIR/micrographs
(reused when they are there already) and a checkpoint of random parameters with data_stats, then:
  disk     the same files read cold, one after another, in 16 MiB reads by one thread
  denoise  `python -m cudnn_denoise.denoise DIR/micrographs --checkpoint ... -o DIR/denoised`, as a
           user runs it, after one untimed run that fills what a user's runs share (cuDNN's
           algorithm choices in the algorithm cache: a first run searches them, ~3 s at 4096^2),
           in a subprocess timed from start to exit (start-up included), cold (the
           inputs dropped from the page cache first) and warm (read once first), without and with
           --preview; each into a fresh output folder. Its own reported rate (from its first
           micrograph to its last) is parsed from the summary line too: wall minus its seconds is
           the start-up (imports, cuDNN, the model).
  session  with --long N: one more cold run over N micrographs (copies of the first --count), the
           rate a user's session of many micrographs approaches (start-up spread over more).
Dropping (bench_e2e.drop_caches) is sync, then posix_fadvise DONTNEED on each input, plus `echo 1 > drop_caches` when
permitted (root; not on the reference backend, the smoke test, which leaves a shared machine's
cache alone). The table (micrographs/s, seconds, ratio to the disk's rate) is printed and
written to --out/denoise_<GPU, or cpu>.md. A CPU smoke test: --size 512 --count 4 --backend reference.

Goals (cudnn, 24 cold 4096^2 micrographs): >= 15 micrographs/s wall clock, >= 10 with --preview.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_e2e import drop_caches
from bench_reader import filesystem, machine  # the benchmarks folder is no package

from cudnn_denoise import checkpoint
from cudnn_denoise.params import init_params

RESULTS = HERE / "results"
BLOCK = 16 * 2**20
DATA_STATS = {"mean": 0.0, "std": 1.0, "min": -5.0, "max": 5.0}
GOALS = {"cold": 15.0, "cold, --preview": 10.0}  # micrographs/s, wall clock, cudnn
SUMMARY = re.compile(r"done: .*?(\d+) micrographs? in ([\d.]+) s \(([\d.]+) micrographs/s\)")


def log(started: float, text: str) -> None:
    print(f"{time.monotonic() - started:6.1f} s  {text}", flush=True)


def write_micrographs(folder: Path, count: int, size: int) -> list[Path]:
    """count float32 MRC files of size x size (counts around 1000: not the model's range);
    files already there with that shape are kept."""
    import mrcfile

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = [folder / f"mic{i:03d}.mrc" for i in range(count)]
    for path in paths:
        if path.exists():
            with mrcfile.mmap(path, mode="r", permissive=True) as mrc:
                if mrc.data is not None and mrc.data.shape == (size, size) and mrc.data.dtype == np.float32:
                    continue
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(rng.normal(1000.0, 40.0, (size, size)).astype(np.float32))
    for extra in set(folder.iterdir()) - set(paths):  # from a run with a larger --count
        extra.unlink()
    return paths


def read_all(paths: list[Path]) -> float:
    """Seconds to read the files start to end, one after another, in BLOCK reads."""
    buffer = bytearray(BLOCK)
    started = time.perf_counter()
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buffer):
                pass
    return time.perf_counter() - started


def run_denoise(args, folder: Path, ckpt: Path, out: Path, preview: bool, count: int) -> dict:
    """One denoise run over the `count` micrographs of `folder` in a subprocess: wall seconds, and
    what its summary line reports."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "cudnn_denoise.denoise", str(folder), "--checkpoint", str(ckpt),
           "-o", str(out), "--backend", args.backend] + (["--preview"] if preview else [])
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    found = SUMMARY.search(proc.stdout)
    row = {"wall_s": wall, "rc": proc.returncode, "count": count}
    if proc.returncode != 0 or found is None or int(found[1]) != count:
        row["error"] = (proc.stdout + proc.stderr)[-2000:]
    else:
        row.update(reported_s=float(found[2]), reported_rate=float(found[3]))
    shutil.rmtree(out, ignore_errors=True)
    return row


def session_run(args, paths: list[Path], ckpt: Path, started: float) -> dict:
    """One cold run over --long micrographs (copies of the --count ones, each its own file): the
    rate a session of many micrographs approaches, start-up spread over more of them."""
    folder = args.dir / "session"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    copies = [folder / f"mic{i:04d}.mrc" for i in range(args.long)]
    for i, copy in enumerate(copies):
        shutil.copyfile(paths[i % len(paths)], copy)
    drop_caches(copies, args.backend == "cudnn")
    row = {"name": f"cold, {args.long} micrographs",
           **run_denoise(args, folder, ckpt, args.dir / "denoised", False, args.long)}
    shutil.rmtree(folder, ignore_errors=True)
    log(started, f"{row['name']}: " + (f"exit {row['rc']}" if "error" in row else
                                       f"{args.long / row['wall_s']:.2f} micrographs/s wall"))
    return row


def table(rows: list[dict], disk_rate: float) -> list[str]:
    header = ("| run | micrographs/s (wall) | seconds (wall) | x disk rate | reported micrographs/s "
              "| start-up s |")
    lines = [header, "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['name']} | failed (exit {row['rc']}; see the log) | {row['wall_s']:.2f} | | | |")
            continue
        rate = row["count"] / row["wall_s"]
        lines.append(f"| {row['name']} | {rate:.2f} | {row['wall_s']:.2f} | {rate / disk_rate:.3g} "
                     f"| {row['reported_rate']:.2f} | {row['wall_s'] - row['reported_s']:.2f} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/cudnn_denoise_bench"),
                        help="folder for the micrographs, checkpoint and outputs, on the local disk "
                             "(not tmpfs); the micrographs are reused (default /tmp/cudnn_denoise_bench)")
    parser.add_argument("--count", type=int, default=24, help="micrographs (default 24)")
    parser.add_argument("--size", type=int, default=4096, help="micrograph side (default 4096)")
    parser.add_argument("--long", type=int, default=0, metavar="N",
                        help="one more cold run over N micrographs (copies of the first), the rate "
                             "of a longer session (default 0: none)")
    parser.add_argument("--backend", choices=("cudnn", "reference"), default="cudnn",
                        help="denoise's --backend (default cudnn; reference: a CPU smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="folder for denoise_<machine>.md (default benchmarks/results)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    folder = args.dir / "micrographs"
    paths = write_micrographs(folder, args.count, args.size)
    ckpt = checkpoint.save(args.dir / "checkpoint", init_params(0), step=1, extra={"data_stats": DATA_STATS})
    nbytes = sum(p.stat().st_size for p in paths)
    log(started, f"{args.count} micrographs of {args.size}^2 ({nbytes / 1e9:.2f} GB) in {folder} "
                 f"({filesystem(folder)}); checkpoint {ckpt}")
    system = args.backend == "cudnn"  # the CPU smoke test leaves a shared machine's cache alone
    how = drop_caches(paths, system)
    disk_s = read_all(paths)
    disk_rate = args.count / disk_s
    log(started, f"disk, cold ({how}): {disk_s:.2f} s, {disk_rate:.2f} micrographs/s, "
                 f"{nbytes / disk_s / 1e6:.0f} MB/s")
    warm_up = run_denoise(args, folder, ckpt, args.dir / "denoised", True, args.count)  # fills the algorithm cache
    log(started, f"warm-up run (untimed): {warm_up['wall_s']:.2f} s, exit {warm_up['rc']}")
    rows = []
    for name, preview, cold in [("cold", False, True), ("warm", False, False),
                                ("cold, --preview", True, True), ("warm, --preview", True, False)]:
        if cold:
            drop_caches(paths, system)
        else:
            read_all(paths)
        row = {"name": name, **run_denoise(args, folder, ckpt, args.dir / "denoised", preview, args.count)}
        rows.append(row)
        log(started, f"{name}: " + (f"exit {row['rc']}\n{row['error']}" if "error" in row else
                                    f"{row['count'] / row['wall_s']:.2f} micrographs/s wall, "
                                    f"{row['reported_rate']:.2f} reported"))
    if args.long:
        rows.append(session_run(args, paths, ckpt, started))
    info = machine()
    md = [f"# denoise: {args.count} micrographs of {args.size} x {args.size}, {info.get('gpu') or 'CPU'}", "",
          (f"{time.strftime('%Y-%m-%d')}; backend {args.backend}; {info['cores']} cores, "
           f"{info['memory_gib']} GiB; float32 MRC in {folder} ({filesystem(folder)}); cold: {how}."),
          (f"Disk, cold, one thread: {disk_s:.2f} s, {disk_rate:.2f} micrographs/s "
           f"({nbytes / disk_s / 1e6:.0f} MB/s). Wall clock: the subprocess from start to exit; "
           "reported: denoise's own summary, from its first micrograph."), ""]
    md += table(rows, disk_rate)
    if args.backend == "cudnn":
        md += ["", "Goals (micrographs/s, wall clock):"]
        for row in rows:
            if row["name"] in GOALS and "error" not in row:
                rate, goal = args.count / row["wall_s"], GOALS[row["name"]]
                md.append(f"- {row['name']}: {rate:.2f} (goal >= {goal:.0f}): "
                          + ("met" if rate >= goal else "NOT met"))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("denoise_" + re.sub(r"\W+", "_", info.get("gpu") or "cpu") + ".md")
    path.write_text("\n".join(md) + "\n")
    print("\n".join(md))
    log(started, f"written to {path}")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
