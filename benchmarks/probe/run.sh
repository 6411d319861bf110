#!/usr/bin/env bash
# Build benchmarks/probe/cudnn_probe.c against the cuDNN and CUDA runtime of the Python environment
# (pip wheels) and run it: bash benchmarks/probe/run.sh [legacy,graph] > probe.log
set -euo pipefail
site=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
cudnn=$site/nvidia/cudnn
cuda=$site/nvidia/cu13
[ -d "$cuda" ] || cuda=$site/nvidia/cuda_runtime  # the CUDA 12 wheels' layout
build=${TMPDIR:-/tmp}/cudnn_probe
# crt/ and nv/ headers: the crt and cccl wheels here, the CUDA toolkit on the GPU machine
toolkit=$(dirname "$(dirname "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")")/include
gcc -O2 -std=c11 -Wall -Wno-deprecated-declarations -o "$build" "$(dirname "$0")/cudnn_probe.c" \
    -I"$cudnn/include" -I"$cuda/include" -I"$toolkit" -L"$cudnn/lib" -L"$cuda/lib" -l:libcudnn.so.9 \
    -l:"$(basename "$(ls "$cuda"/lib/libcudart.so.* | head -1)")" -Wl,-rpath,"$cudnn/lib:$cuda/lib"
exec "$build" "$@"
