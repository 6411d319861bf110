#!/usr/bin/env bash
# The one script for the GPU machine (the `device` tool): installs what the image lacks, prints the
# versions, runs the GPU tests and the benchmarks, and writes every log under $OUT.
#   bash scripts/gpu_check.sh [tests] [train] [bench] [reader] [seed] [probe]   (no argument: all)
#     tests   the GPU-marked tests ($TEST_ARGS)    bench   benchmarks/bench_train.py ($BENCH_ARGS)
#     train   the README's main command            reader  benchmarks/bench_reader.py
#     seed    the seed's configuration (1024x1024, batch 4) on 2,000 synthetic pairs read from disk
#             ($SEED_ARGS: e.g. "--graph-api --graph")
#     probe   benchmarks/probe: every cuDNN algorithm and graph-API engine per op, timed (~2.5 min)
#     fortran benchmarks/fortran_parity.py: the Fortran program against Python, same init, data and
#             algorithms, 256^2 and 1024^2, fp32/tf32, fused or not (~3 min; $PARITY_ARGS: --quick)
# The image lacks cffi: carry .whl (../shared/tools/device-wheels.sh fills it) with the call. The
# image lacks gfortran: the fortran stage runs .device/fortran/denoise_train, which
# scripts/device_fortran.sh builds here; carry .device too.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-logs}
mkdir -p "$OUT"
stages=${*:-tests train bench reader seed probe fortran}
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
status=0
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c "import cudnn_denoise.bindings as b, cupy, torch, sys; print(sys.version.split()[0], 'cupy', cupy.__version__, 'torch', torch.__version__); print(b.versions())"
} 2>&1 | tee "$OUT/env.txt"

for stage in $stages; do
    case $stage in
    tests)
        eval "test_args=(${TEST_ARGS:-tests})"  # e.g. TEST_ARGS="tests/test_model_gpu.py -k bf16"
        python3 -m pytest -q -rA -p no:cacheprovider -m gpu "${test_args[@]}" 2>&1 | tee "$OUT/gpu_tests.log" || status=1 ;;
    bench)
        eval "bench_args=(${BENCH_ARGS:-})"  # shell words: quotes keep variant names with spaces whole
        python3 benchmarks/bench_train.py --out "$OUT" "${bench_args[@]}" 2>&1 | tee "$OUT/bench_train.log" || status=1 ;;
    reader)
        python3 benchmarks/bench_reader.py --out "$OUT" --tmp-dir /tmp 2>&1 | tee "$OUT/bench_reader.log" || status=1 ;;
    train)
        python3 -m cudnn_denoise.train --out /tmp/train-run 2>&1 | tee "$OUT/train.log" || status=1 ;;
    seed)
        python3 -m cudnn_denoise.make_dataset --out /tmp/seed-data --samples 2000 --size 1024 --workers 16 2>&1 | tail -2
        python3 -m cudnn_denoise.train --data /tmp/seed-data --out /tmp/seed-run ${SEED_ARGS:-} 2>&1 \
            | tee "$OUT/seed_train.log" || status=1 ;;
    probe)
        bash benchmarks/probe/run.sh > "$OUT/cudnn_probe.log" 2>&1 || status=1
        grep "^BEST\|^legacy" "$OUT/cudnn_probe.log" ;;
    fortran)
        eval "parity_args=(${PARITY_ARGS:-})"
        python3 benchmarks/fortran_parity.py --bin .device/fortran/denoise_train --out "$OUT" \
            "${parity_args[@]}" 2>&1 | tee "$OUT/fortran_parity.log" || status=1 ;;
    *) echo "unknown stage $stage (tests train bench reader seed probe fortran)"; status=2 ;;
    esac
done
grep -hE "passed|failed|error" "$OUT/gpu_tests.log" 2>/dev/null | tail -1
exit $status
