"""The Fortran program against Python on the GPU: same init, data and algorithms; losses, parameters
and steps/s of each, in one run (docs/fortran.md, "Running the Fortran program").

    python benchmarks/fortran_parity.py --bin fortran/build/denoise_train --out DIR [--quick]

For each of 4 x 1 x 256 x 256 and 4 x 1 x 1024 x 1024, strict FP32 and TF32, unfused and fused
forward (and TF32 unfused from the same set stored as float16, which both readers widen on the GPU,
and TF32 unfused with --graph, the step captured into a CUDA graph and replayed): `python -m cudnn_denoise.train --backend cudnn --deterministic --no-shuffle` from an initial
checkpoint, then `denoise_train` on the same data and checkpoint with the algorithm table that
train wrote (its --out/algorithms.txt), then cudnn_denoise.compare on the two runs. Every step's
loss is compared (the first 50, resp. 20, are the issue's parity runs; the rest make the speed
window) and every final parameter. steps/s is each program's own clock between its first and last
log line, where both have read every loss so far (the first steps, which load kernels, lie before
the window). A last run per shape lets denoise_train choose its algorithms with cuDNN's heuristics
(--max-steps 0) and checks that it picks what Python picked. The Fortran program loads the
libraries Python loads (LD_LIBRARY_PATH at their folders; its "library:" lines say which it got).
Then, at 1024 x 1024 in strict FP32, runs for days: each program stopped by SIGINT part way
(exit 130, a checkpoint written) and resumed by the other and by itself (`--resume`) must end with
exactly the parameters of the uninterrupted Python run; and --val-data, on a held-out set of 10 pairs
(batches of 4, 4 and 2), must print train's validation lines: the start line with the noisy input's
baseline PSNR, each log line's val loss, PSNR and gain over the baseline, and the final line.
Then, at each shape in TF32, `train --graph-api` (the NHWC step of fused operation graphs;
non-deterministic engines allowed) against `denoise_train --graph-api`, once with the engines
Fortran chooses (heuristics; Python times them), once with the engine table Python wrote
(`--engines`), once both with --graph (the graph-API step captured into a CUDA graph and replayed)
and once both with --precision bf16, each on the engine table of its own Python run: the losses and each parameter tensor are compared in 2-norm
(|a - b| / |a| over the vector), within GRAPH_API_TOLERANCE on Python's engines (bf16: within
the spread of two Python runs, if larger; on others the
rounding differs and grows with the steps: those rows give speed), and the table says which rows are
bit for bit (with the same engines they can be, unless an engine is non-deterministic).
Writes fortran_parity_<GPU>.md and .json into --out (fortran_parity_<GPU>_disk.* when --work is not
in memory, tmpfs) and prints the table last; exits 1 when a
comparison of the legacy step is over 1e-6 relative, a graph-API row
over its tolerance, or a resumed run differs, else 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cudnn_denoise import checkpoint, compare, fortran, params
from cudnn_denoise.port import algorithm_table, checksum, engine_table
from cudnn_denoise.training import run_folder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_reader import filesystem  # the benchmarks folder is no package

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {256: {"samples": 200, "parity": 50, "steps": 600, "log_every": 100},
          1024: {"samples": 80, "parity": 20, "steps": 200, "log_every": 40}}
QUICK = {256: {"samples": 40, "parity": 10, "steps": 40, "log_every": 10},
         1024: {"samples": 8, "parity": 4, "steps": 8, "log_every": 4}}
BATCH = 4
FLOOR = 1e-6  # the floor for a relative difference
GRAPH_API_TOLERANCE = 1e-5  # relative, 2-norm over the tensor: engines may differ
RESUME_STEPS = 120  # at 1024 x 1024 (~20 ms a step): long enough to be stopped part way


def run(command: list, log: Path, env=None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run command, its output into log (and returned); a failure ends the benchmark naming it."""
    started = time.monotonic()
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env, timeout=timeout)
    log.write_text(f"$ {' '.join(map(str, command))}\n{result.stdout}{result.stderr}")
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}) after {time.monotonic() - started:.0f} s: "
                         f"{' '.join(map(str, command))}\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result


def library_env(binary: Path) -> dict:
    """The environment for denoise_train: the folders of the libraries this Python loads first."""
    folders = [str(f) for f in fortran.library_folders()]
    folders.append(str(binary.resolve().parent))  # libgfortran carried beside the binary
    old = os.environ.get("LD_LIBRARY_PATH")
    return {**os.environ, "LD_LIBRARY_PATH": ":".join([*folders, *([old] if old else [])])}


def window_rate(entries: list[dict], clock: str) -> float:
    """Steps per second between the first and the last log line (clock: "time" or "elapsed")."""
    first, last = entries[0], entries[-1]
    return (last["step"] - first["step"]) / (last[clock] - first[clock])


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / run_folder.METRICS).read_text().splitlines()]


def one_config(work: Path, binary: Path, env: dict, data: Path, init: Path, size: int, spec: dict,
               math_mode: str, fused: bool, dtype: str = "float32", graph: bool = False) -> dict:
    name = (f"{size}_{math_mode}{'_fused' if fused else ''}{'' if dtype == 'float32' else '_' + dtype}"
            f"{'_graph' if graph else ''}")
    epochs = math.ceil(spec["steps"] / (spec["samples"] // BATCH))
    common = ["--data", data, "--init", init, "--math", math_mode, "--deterministic", "--max-steps",
              spec["steps"], "--epochs", epochs, "--log-every", spec["log_every"], "--batch-size", BATCH]
    common += ["--fused"] if fused else []
    common += ["--graph"] if graph else []
    python_out, fortran_out = work / f"python_{name}", work / f"fortran_{name}"
    (fortran_out / "params.bin").unlink(missing_ok=True)  # an older program's, which compare would read first
    run([sys.executable, "-m", "cudnn_denoise.train", "--backend", "cudnn", "--no-shuffle", "--out", python_out,
         "--overwrite", *common], work / f"python_{name}.log")  # --work outlives a run: replace
    printed = run([binary, "--out", fortran_out, "--overwrite", "--algorithms",
                   python_out / algorithm_table.FILE_NAME, *common],
                  work / f"fortran_{name}.log", env=env).stdout
    result = compare.compare_runs(python_out, fortran_out)
    parity_steps = set(range(1, spec["parity"] + 1))
    losses_py, losses_f = compare.read_losses(python_out), compare.read_losses(fortran_out)
    parity_same = all(losses_py[s] == losses_f[s] for s in parity_steps)
    overall = result.params[-1]
    ours = [checksum.format_checksum(n, v) for n, v in params.views(compare.read_params(python_out)).items()]
    return {
        "config": name, "size": size, "math": math_mode, "fused": fused, "dtype": dtype, "graph": graph,
        "steps": spec["steps"],
        "parity_steps": spec["parity"], "parity_losses_identical": parity_same,
        "losses": vars(result.losses), "params": vars(overall),
        "per_tensor": [vars(d) for d in result.params[:-1]],
        "identical": result.identical(), "worst_relative": result.worst_relative(),
        "python_steps_per_s": window_rate(metrics(python_out), "time"),
        "fortran_steps_per_s": window_rate(metrics(fortran_out), "elapsed"),
        "fortran_libraries": [line[len("library: "):] for line in printed.splitlines()
                              if line.startswith("library: ")],
        "checksum_lines_match": printed.splitlines()[-len(ours):] == ours,
    }


def norm_relative(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = np.linalg.norm(a)
    return float(np.linalg.norm(a - b) / scale) if scale > 0 else float(np.linalg.norm(b))


def run_differences(a: Path, b: Path) -> tuple[bool, float, dict[str, float]]:
    """(same steps, losses' 2-norm relative, each parameter tensor's) of run b against run a."""
    losses_a, losses_b = compare.read_losses(a), compare.read_losses(b)
    steps = sorted(losses_a)
    loss_rel = norm_relative([losses_a[s] for s in steps], [losses_b.get(s, math.nan) for s in steps])
    ours, theirs = params.views(compare.read_params(a)), params.views(compare.read_params(b))
    return steps == sorted(losses_b), loss_rel, {k: norm_relative(ours[k], theirs[k]) for k in ours}


def graph_api_config(work: Path, binary: Path, env: dict, data: Path, init: Path, size: int, spec: dict,
                     engines: bool, graph: bool = False, precision: str = "fp32") -> dict:
    """train --graph-api against denoise_train --graph-api, TF32, non-deterministic allowed; with
    engines, the Fortran run takes the engine table Python wrote (--engines), else its own choice;
    with graph, both capture the step into a CUDA graph, and with precision bf16 both run BF16
    (each a Python run of its own). BF16 rounds every activation: Python runs twice (the second on
    the first's engines, from its algorithm cache), and the Fortran run is held to the larger of
    GRAPH_API_TOLERANCE and the two Python runs' spread."""
    name = f"{size}_tf32_graph_api{'_graph' if graph else ''}{'' if precision == 'fp32' else '_' + precision}"
    epochs = math.ceil(spec["steps"] / (spec["samples"] // BATCH))
    common = ["--data", data, "--init", init, "--math", "tf32", "--graph-api", "--max-steps", spec["steps"],
              "--epochs", epochs, "--log-every", spec["log_every"], "--batch-size", BATCH]
    common += ["--graph"] if graph else []
    common += ["--precision", precision] if precision != "fp32" else []
    python_out = work / f"python_{name}"
    fortran_out = work / f"fortran_{name}{'_engines' if engines else ''}"
    (fortran_out / "params.bin").unlink(missing_ok=True)
    train = [sys.executable, "-m", "cudnn_denoise.train", "--backend", "cudnn", "--no-shuffle", "--overwrite", *common]
    if not engines or graph or precision != "fp32":  # the first row of each Python run runs it
        run([*train, "--out", python_out], work / f"python_{name}.log")
    spread = 0.0
    if precision != "fp32":
        again = work / f"python_{name}_again"
        run([*train, "--out", again], work / f"{again.name}.log")
        _, loss_rel, per_tensor = run_differences(python_out, again)
        spread = max([loss_rel, *per_tensor.values()])
    table = ["--engines", python_out / engine_table.FILE_NAME] if engines else []
    printed = run([binary, "--out", fortran_out, "--overwrite", *table, *common],
                  work / f"{fortran_out.name}.log", env=env).stdout
    same_steps, loss_rel, per_tensor = run_differences(python_out, fortran_out)
    worst = max([loss_rel, *per_tensor.values()])
    tolerance = max(GRAPH_API_TOLERANCE, spread)
    return {"config": name + ("_engines" if engines else ""), "size": size, "steps": spec["steps"],
            "engines": ("Python's engine table" if engines else "own heuristic choice") + (", --graph" if graph else "")
            + (f", --precision {precision}" if precision != "fp32" else ""),
            "same_steps": same_steps,
            "losses_relative": loss_rel, "params_relative": per_tensor,
            "identical": same_steps and worst == 0.0, "worst_relative": worst,
            "python_spread": spread, "tolerance": tolerance,
            # other engines round otherwise, and over hundreds of steps that grows past any
            # fixed bound: only the run on Python's engines is held to the tolerance
            "within_tolerance": same_steps and (worst <= tolerance or not engines),
            "python_steps_per_s": window_rate(metrics(python_out), "time"),
            "fortran_steps_per_s": window_rate(metrics(fortran_out), "elapsed"),
            "fortran_engines": [line for line in printed.splitlines() if line.startswith("graph API engine: ")]}


def graph_api_table(rows: list[dict]) -> list[str]:
    lines = ["", (f"| shape | --graph-api, tf32: Fortran's engines | bit for bit | steps | losses: 2-norm relative | "
                  f"params: worst 2-norm relative | tolerance (bf16: two Python runs' spread, at least "
                  f"{GRAPH_API_TOLERANCE:g}) | Python steps/s | Fortran steps/s |"),
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {BATCH}x1x{r['size']}x{r['size']} | {r['engines']} | {'yes' if r['identical'] else 'no'} | "
                     f"{r['steps']} | {r['losses_relative']:.2g} | {max(r['params_relative'].values()):.2g}"
                     f"{'' if r['within_tolerance'] else ' OVER'} | {r['tolerance']:.2g} | "
                     f"{r['python_steps_per_s']:.1f} | {r['fortran_steps_per_s']:.1f} |")
    return lines


def own_choice(work: Path, binary: Path, env: dict, data: Path, init: Path, size: int, math_mode: str) -> bool:
    """denoise_train's heuristics (--deterministic) choose the algorithms Python chose."""
    out = work / f"fortran_choice_{size}_{math_mode}"
    run([binary, "--data", data, "--init", init, "--out", out, "--overwrite", "--math", math_mode, "--deterministic",
         "--max-steps", 0, "--batch-size", BATCH], work / f"fortran_choice_{size}_{math_mode}.log", env=env)
    ours = algorithm_table.read(work / f"python_{size}_{math_mode}" / algorithm_table.FILE_NAME)[1]
    theirs = algorithm_table.read(out / algorithm_table.FILE_NAME)[1]
    return [r.numbers() for r in theirs] == [r.numbers() for r in ours]


def interrupt(command: list, out: Path, log: Path, env, after: int) -> int:
    """Start command, send SIGINT once out/losses.tsv holds `after` steps; it must exit 130 having
    written its checkpoint. Returns the checkpoint's step."""
    with open(log, "w") as output:
        process = subprocess.Popen([str(c) for c in command], stdout=output, stderr=subprocess.STDOUT, env=env)
        losses = out / "losses.tsv"
        while process.poll() is None and (not losses.exists() or len(losses.read_text().splitlines()) < after):
            time.sleep(0.02)
        if process.poll() is not None:
            raise SystemExit(f"ended ({process.returncode}) before it could be interrupted: {command}; see {log}")
        process.send_signal(signal.SIGINT)
        status = process.wait(timeout=300)
    if status != 130:
        raise SystemExit(f"SIGINT: exit {status}, not 130: {command}; see {log}")
    return checkpoint.load(out).step


def resumed(work: Path, binary: Path, env: dict, data: Path, init: Path, size: int, spec: dict) -> list[dict]:
    """SIGINT, then --resume, every way round: the final parameters against an uninterrupted run."""
    epochs = math.ceil(RESUME_STEPS / (spec["samples"] // BATCH))
    common = ["--data", data, "--math", "fp32", "--deterministic", "--max-steps", RESUME_STEPS, "--epochs", epochs,
              "--log-every", 5, "--batch-size", BATCH]
    table_file = work / f"python_{size}_fp32" / algorithm_table.FILE_NAME
    python = [sys.executable, "-m", "cudnn_denoise.train", "--backend", "cudnn", "--no-shuffle", *common]
    fortran_cmd = [binary, "--algorithms", table_file, *common]
    starts = {"python": lambda out: python + ["--init", init, "--out", out, "--overwrite"],
              "fortran": lambda out: fortran_cmd + ["--init", init, "--out", out, "--overwrite"]}
    resumes = {"python": lambda out: python + ["--out", out, "--resume"],
               "fortran": lambda out: fortran_cmd + ["--out", out, "--resume"]}
    run(starts["python"](work / "resume_none"), work / "resume_none.log")
    uninterrupted = compare.read_params(work / "resume_none")
    rows = []
    for first in ("fortran", "python"):
        for second in ("python", "fortran"):
            out = work / f"resume_{first}_{second}"
            step = interrupt(starts[first](out), out, work / f"{out.name}_first.log", env, RESUME_STEPS // 3)
            run(resumes[second](out), work / f"{out.name}_second.log", env=env)
            final = checkpoint.load(out)
            rows.append({"stopped": first, "resumed": second, "stopped_at": step, "final_step": final.step,
                         "identical": final.step == RESUME_STEPS and bool((final.params == uninterrupted).all())})
    return rows


VAL_PAIRS = 10  # held out: batches of BATCH, BATCH and 2, so the partial batch's model is compared too


def validation(work: Path, binary: Path, env: dict, data: Path, init: Path, size: int) -> bool:
    """--val-data on a held-out set of VAL_PAIRS (not a multiple of BATCH): denoise_train's
    validation lines are train's, whole: the start line with the noisy input's baseline PSNR, each
    log line's part from "val loss" on (loss, PSNR, the gain over the baseline) and the final line."""
    from cudnn_denoise.data.synthetic import write_dataset

    held_out = work / f"val_{size}"
    if not (held_out / "dataset.json").exists():
        write_dataset(held_out, VAL_PAIRS, size, seed=2, workers=os.cpu_count() or 1)
    common = ["--data", data, "--val-data", held_out, "--init", init, "--math", "fp32", "--deterministic",
              "--max-steps", 8, "--log-every", 4, "--batch-size", BATCH, "--overwrite"]
    python_out, fortran_out = work / "validation_python", work / "validation_fortran"
    lines = []
    for out, command in ((python_out, [sys.executable, "-m", "cudnn_denoise.train", "--backend", "cudnn",
                                       "--no-shuffle"]),
                         (fortran_out, [binary, "--algorithms", python_out / algorithm_table.FILE_NAME])):
        printed = run([*command, "--out", out, *common], work / f"{out.name}.log", env=env).stdout
        lines.append(validation_lines(printed))
    return len(lines[0]) == 4 and lines[0] == lines[1]  # the start, 2 log lines, the final one


def validation_lines(printed: str) -> list[str]:
    """The lines that say the validation: "validation: ..." whole (the start line and the final
    one), and each log line from "val loss" on (its start, the rate and ETA, is each program's)."""
    found = []
    for line in printed.splitlines():
        if line.startswith("validation: "):
            found.append(line)
        elif "  val loss " in line:
            found.append(line[line.index("val loss "):])
    return found


def table(rows: list[dict], choices: dict) -> list[str]:
    lines = ["| shape | math | forward | steps | losses: identical, worst ULP, relative | "
             "params: identical, worst ULP, relative | Python steps/s | Fortran steps/s | Fortran / Python |",
             "| --- | --- | --- | ---: | --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        lo, pa = r["losses"], r["params"]
        lines.append(
            f"| {BATCH}x1x{r['size']}x{r['size']}{'' if r['dtype'] == 'float32' else ' ' + r['dtype']} | {r['math']} | {'fused' if r['fused'] else 'unfused'}{', --graph' if r['graph'] else ''} | "
            f"{r['steps']} | {lo['identical']}/{lo['count']}, {lo['worst_ulp']}, {lo['worst_relative']:.2g} | "
            f"{pa['identical']}/{pa['count']}, {pa['worst_ulp']}, {pa['worst_relative']:.2g} | "
            f"{r['python_steps_per_s']:.1f} | {r['fortran_steps_per_s']:.1f} | "
            f"{r['fortran_steps_per_s'] / r['python_steps_per_s']:.3f} |")
    lines.append("")
    lines.append(f"- the checksum lines denoise_train printed are Python's for its own final parameters: "
                 f"{'in every run' if all(r['checksum_lines_match'] for r in rows) else 'NOT in every run'}")
    lines += [f"- denoise_train's own heuristic choice (--deterministic) at {k}: "
              f"{'the algorithms Python chose' if v else 'OTHER algorithms than Python'}" for k, v in choices.items()]
    return lines


def resume_table(rows: list[dict], val_same: bool) -> list[str]:
    lines = ["", "| stopped by SIGINT | resumed by | checkpoint at step | final step | parameters = uninterrupted run |",
             "| --- | --- | ---: | ---: | --- |"]
    lines += [f"| {r['stopped']} | {r['resumed']} | {r['stopped_at']} | {r['final_step']} | "
              f"{'identical' if r['identical'] else 'DIFFERENT'} |" for r in rows]
    lines += ["", (f"- --val-data ({VAL_PAIRS} held-out pairs, batches of {BATCH} and a partial one): "
                   f"denoise_train's validation lines (start with the baseline, val loss and PSNR, final) "
                   f"are train's: {'yes' if val_same else 'NO'}")]
    return lines


def legacy_configs(args, env: dict, data: Path, init: Path, size: int, spec: dict, choices: dict,
                   started: float) -> list[dict]:
    """The legacy step's rows at one shape: fp32 and tf32, unfused and fused (and the heuristics'
    choice of each math into choices), tf32 from float16 data, tf32 with --graph."""
    from cudnn_denoise.data.format import open_dir
    from cudnn_denoise.data.recast import recast_dataset

    rows = []
    for math_mode in ("fp32", "tf32"):
        for fused in (False, True):
            row = one_config(args.work, args.bin, env, data, init, size, spec, math_mode, fused)
            rows.append(row)
            print(f"{row['config']}: identical {row['identical']}, worst relative {row['worst_relative']:.3g}, "
                  f"python {row['python_steps_per_s']:.1f} fortran {row['fortran_steps_per_s']:.1f} steps/s "
                  f"({time.monotonic() - started:.0f} s)", flush=True)
        choices[f"{size} {math_mode}"] = own_choice(args.work, args.bin, env, data, init, size, math_mode)
    half = args.work / f"data_{size}_float16"  # widened on the GPU by each reader
    if not (half / "dataset.json").exists():
        recast_dataset(open_dir(data), half, "float16")
    rows.append(one_config(args.work, args.bin, env, half, init, size, spec, "tf32", False, "float16"))
    rows.append(one_config(args.work, args.bin, env, data, init, size, spec, "tf32", False, graph=True))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", type=Path, required=True, help="the denoise_train binary (make -C fortran)")
    p.add_argument("--out", type=Path, required=True, help="folder for the table, JSON and logs")
    p.add_argument("--work", type=Path, default=Path("/dev/shm/fortran_parity"),
                   help="data and runs (default in memory: both programs read their batches from RAM)")
    p.add_argument("--quick", action="store_true", help="a few steps of small sets: a smoke test")
    p.add_argument("--graph-api-only", action="store_true",
                   help="only the graph-API rows (the legacy step's rows, resuming and --val-data left out)")
    args = p.parse_args(argv)
    import cupy

    from cudnn_denoise.data.synthetic import write_dataset

    gpu = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    env = library_env(args.bin)
    init = checkpoint.save(args.work / "init", params.init_params(0), step=0)
    shapes = QUICK if args.quick else SHAPES
    rows, choices, resumes, val_same, graph_api_rows = [], {}, [], False, []
    started = time.monotonic()
    for size, spec in shapes.items():
        data = args.work / f"data_{size}"
        if not (data / "dataset.json").exists():
            write_dataset(data, spec["samples"], size, seed=1, workers=os.cpu_count() or 1)
        if not args.graph_api_only:
            rows += legacy_configs(args, env, data, init, size, spec, choices, started)
        for engines in (False, True):
            graph_api_rows.append(graph_api_config(args.work, args.bin, env, data, init, size, spec, engines))
        graph_api_rows.append(graph_api_config(args.work, args.bin, env, data, init, size, spec, True, graph=True))
        graph_api_rows.append(graph_api_config(args.work, args.bin, env, data, init, size, spec, True,
                                               precision="bf16"))
        if size == 1024 and not args.graph_api_only:  # steps long enough to stop one part way
            resumes = resumed(args.work, args.bin, env, data, init, size, spec)
            val_same = validation(args.work, args.bin, env, data, init, size)
    from cudnn_denoise.bindings import versions

    kind = filesystem(args.work)
    lines = [f"# denoise_train (Fortran) against train (Python), {gpu}, {time.strftime('%Y-%m-%d')}", "",
             f"cuDNN {versions()['cudnn']}, cuBLAS {versions()['cublas']}; data and runs in {args.work} "
             f"({kind}{': in memory' if kind == 'tmpfs' else ''}); Fortran loaded: "
             + ", ".join(sorted({lib for r in rows for lib in r["fortran_libraries"]})), ""]
    if not args.graph_api_only:
        lines += table(rows, choices) + resume_table(resumes, val_same)
    lines += graph_api_table(graph_api_rows)
    stem = "fortran_parity_" + gpu.replace(" ", "_") + ("" if kind == "tmpfs" else "_disk")  # one table each
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (args.out / f"{stem}.json").write_text(json.dumps({"gpu": gpu, "rows": rows, "choices": choices,
                                                                  "resumed": resumes, "validation_same": val_same,
                                                                  "graph_api": graph_api_rows}, indent=1))
    print("\n".join(lines))
    legacy_ok = args.graph_api_only or (max(r["worst_relative"] for r in rows) <= FLOOR
                                        and all(r["identical"] for r in resumes) and val_same)
    graph_api_ok = all(r["within_tolerance"] for r in graph_api_rows)
    return 0 if legacy_ok and graph_api_ok else 1


if __name__ == "__main__":
    sys.exit(main())
