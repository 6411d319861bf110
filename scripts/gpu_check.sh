#!/usr/bin/env bash
# The one script for the GPU machine (the `device` tool): installs what the image lacks, prints the
# versions, runs the GPU tests and the benchmarks, and writes every log under $OUT.
#   bash scripts/gpu_check.sh [tests] [bench] [train]     (no argument: all stages)
# The image lacks cffi: carry .whl (../shared/tools/device-wheels.sh fills it) with the call.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-logs}
mkdir -p "$OUT"
stages=${*:-tests bench train}
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
        python3 -m pytest -q -rA -p no:cacheprovider -m gpu tests 2>&1 | tee "$OUT/gpu_tests.log" || status=1 ;;
    bench)
        for b in benchmarks/bench_*.py; do
            python3 "$b" --out "$OUT" 2>&1 | tee "$OUT/$(basename "$b" .py).log" || status=1
        done ;;
    train)
        python3 -m cudnn_denoise.train --out "$OUT/train-run" 2>&1 | tee "$OUT/train.log" || status=1 ;;
    *) echo "unknown stage $stage (tests, bench, train)"; status=2 ;;
    esac
done
grep -hE "passed|failed|error" "$OUT/gpu_tests.log" 2>/dev/null | tail -1
exit $status
