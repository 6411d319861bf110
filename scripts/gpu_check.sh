#!/usr/bin/env bash
# The one script for the GPU machine (the `device` tool): installs what the image lacks, prints the
# versions, runs the GPU tests and the benchmarks, and writes every log under $OUT.
#   bash scripts/gpu_check.sh [tests] [train] [bench] [reader] [seed] [probe] [fortran] [multi]
#     [micrographs] [e2e] [denoise]
#     (no argument: all but multi, micrographs, e2e and denoise)
#     tests   the GPU-marked tests ($TEST_ARGS)    bench   benchmarks/bench_train.py ($BENCH_ARGS)
#     train   the README's main command            reader  benchmarks/bench_reader.py
#     seed    the seed's configuration (1024x1024, batch 4) on 2,000 synthetic pairs read from disk
#             ($SEED_ARGS: e.g. "--graph-api --graph")
#     probe   benchmarks/probe: every cuDNN algorithm and graph-API engine per op, timed (~2.5 min)
#     fortran benchmarks/fortran_parity.py: the Fortran program against Python, same init, data and
#             algorithms, 256^2 and 1024^2, fp32/tf32, fused or not, float16 data, --graph; then
#             SIGINT + --resume each way round and --val-data; then --graph-api (own engines,
#             Python's, with --graph, with --precision bf16) (~8 min; $PARITY_ARGS: --quick,
#             --graph-api-only for the graph-API rows alone, or "--work /tmp/fortran_parity" to
#             read from the local disk instead of /dev/shm)
#     multi   several GPUs: tests/distributed/test_multi_gpu.py (parity, failures; skipped on one
#             GPU), then benchmarks/bench_ddp.py, ours against PyTorch DDP ($BENCH_DDP_ARGS)
#     micrographs  (only when named) the README's micrograph commands as written
#             (scripts/readme_micrographs.sh: 2 generated 4096 x 4096 MRC micrographs and one
#             held out; needs the mrcfile wheel in .whl)
#     e2e     (only when named) benchmarks/bench_e2e.py: training from files, ours against
#             PyTorch, warm, cold and cold float16, 800 pairs on the local disk (under 6.5 min;
#             $E2E_ARGS, e.g. "--epochs 2 --budget 300")
#     denoise (only when named) benchmarks/bench_denoise.py: python -m cudnn_denoise.denoise on 24
#             cold and warm 4096 x 4096 MRC micrographs on the local disk, with and without
#             --preview, beside the disk's read rate (~1 min; needs the mrcfile wheel in .whl;
#             $DENOISE_ARGS, e.g. "--long 120" for a longer cold session too)
# The image lacks cffi: carry .whl (the cffi and pycparser wheels for
# Python 3.12, from pip download) with the call. The
# image lacks gfortran: the fortran stage runs .device/fortran/denoise_train, which
# scripts/device_fortran.sh builds here; carry .device too. For the MPI tests and multi, add the
# mpich and mpi4py wheels to .whl (device-wheels.sh mpich==5.0.2 mpi4py==4.1.2): the image has no
# MPI launcher or library of its own.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-logs}
mkdir -p "$OUT"
stages=${*:-tests train bench reader seed probe fortran}
export PYTHONUNBUFFERED=1
# Never NVLink multicast (NVLS): on shared hosts it can take the GPUs out of service.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
if compgen -G ".whl/mpich-*.whl" >/dev/null; then
    # --prefix, not --target: --target keeps the wheel's bin/ (mpirun) but drops its lib/ (libmpi)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --ignore-installed \
        --prefix /tmp/mpich .whl/mpich-*.whl || exit 1
    export CUDNN_DENOISE_MPIRUN=/tmp/mpich/bin/mpirun MPI4PY_LIBMPI=/tmp/mpich/lib/libmpi.so.12
fi
status=0
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c "import cudnn_denoise.bindings as b, cupy, torch, sys; print(sys.version.split()[0], 'cupy', cupy.__version__, 'torch', torch.__version__); print(b.versions())"
    if [ -n "${CUDNN_DENOISE_MPIRUN:-}" ]; then
        "$CUDNN_DENOISE_MPIRUN" -n 1 python3 -c \
            "from mpi4py import MPI; print('mpi4py', MPI.Get_library_version().splitlines()[0])"
    fi
} 2>&1 | tee "$OUT/env.txt"

for stage in $stages; do
    case $stage in
    tests)
        eval "test_args=(${TEST_ARGS:-tests})"  # e.g. TEST_ARGS="tests/network/test_model_gpu.py -k bf16"
        python3 -m pytest -q -rA -p no:cacheprovider -m gpu "${test_args[@]}" 2>&1 | tee "$OUT/gpu_tests.log" || status=1 ;;
    bench)
        eval "bench_args=(${BENCH_ARGS:-})"  # shell words: quotes keep variant names with spaces whole
        python3 benchmarks/bench_train.py --out "$OUT" "${bench_args[@]}" 2>&1 | tee "$OUT/bench_train.log" || status=1 ;;
    reader)
        python3 benchmarks/bench_reader.py --out "$OUT" --tmp-dir /tmp 2>&1 | tee "$OUT/bench_reader.log" || status=1 ;;
    train)
        python3 -m cudnn_denoise.train --out /tmp/train-run --overwrite 2>&1 \
            | tee "$OUT/train.log" || status=1 ;;
    seed)
        python3 -m cudnn_denoise.make_dataset --out /tmp/seed-data --samples 2000 --size 1024 --workers 16 2>&1 | tail -2
        python3 -m cudnn_denoise.train --data /tmp/seed-data --out /tmp/seed-run --overwrite \
            ${SEED_ARGS:-} 2>&1 | tee "$OUT/seed_train.log" || status=1 ;;
    probe)
        bash benchmarks/probe/run.sh > "$OUT/cudnn_probe.log" 2>&1 || status=1
        grep "^BEST\|^legacy" "$OUT/cudnn_probe.log" ;;
    fortran)
        eval "parity_args=(${PARITY_ARGS:-})"
        python3 benchmarks/fortran_parity.py --bin .device/fortran/denoise_train --out "$OUT" \
            "${parity_args[@]}" 2>&1 | tee "$OUT/fortran_parity.log" || status=1 ;;
    multi)
        python3 -m pytest -q -rA -p no:cacheprovider -m gpu tests/distributed/test_multi_gpu.py 2>&1 \
            | tee "$OUT/multi_tests.log" || status=1
        eval "ddp_args=(${BENCH_DDP_ARGS:-})"  # e.g. "--quick", "--gpus 1,2", "--rehearse --samples 64"
        python3 benchmarks/bench_ddp.py --out "$OUT" "${ddp_args[@]}" 2>&1 | tee "$OUT/bench_ddp.log" \
            || status=1 ;;
    micrographs)
        rm -rf /tmp/readme-mics
        bash scripts/readme_micrographs.sh /tmp/readme-mics 2>&1 | tee "$OUT/micrographs.log" &&
        cp /tmp/readme-mics/denoised/*.png /tmp/readme-mics/denoised/run.log \
            /tmp/readme-mics/runs/mics/loss.png "$OUT/" || status=1 ;;
    e2e)
        eval "e2e_args=(${E2E_ARGS:-})"
        python3 benchmarks/bench_e2e.py --out "$OUT" "${e2e_args[@]}" 2>&1 \
            | tee "$OUT/bench_e2e.log" || status=1 ;;
    denoise)
        eval "denoise_args=(${DENOISE_ARGS:-})"
        python3 benchmarks/bench_denoise.py --out "$OUT" "${denoise_args[@]}" 2>&1 \
            | tee "$OUT/bench_denoise.log" || status=1 ;;
    *) echo "unknown stage $stage (tests train bench reader seed probe fortran multi micrographs e2e denoise)"
       status=2 ;;
    esac
done
grep -hE "passed|failed|error" "$OUT/gpu_tests.log" 2>/dev/null | tail -1
grep -hE "^(\S+ ranks x|raise|kill|stop): " "$OUT/multi_tests.log" 2>/dev/null
grep -hE "passed|failed|error" "$OUT/multi_tests.log" 2>/dev/null | tail -1
sed -n '/^summary:/,$p' "$OUT/bench_ddp.log" 2>/dev/null
exit $status
