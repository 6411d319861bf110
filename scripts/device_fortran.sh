#!/usr/bin/env bash
# Build denoise_train on this (CPU) machine for the GPU machine, whose glibc is newer, into
# .device/fortran/ with the gfortran runtime beside it (the binary's run path has $ORIGIN).
# --disable-new-dtags writes that run path as DT_RPATH, which the loader also applies to the
# libraries' own dependencies: libgfortran's libquadmath is then found beside it too (a DT_RUNPATH
# serves only the binary's direct dependencies, and libgfortran has none of its own).
# Carry .device with the device call; gpu_check.sh's fortran stage runs it from there.
#   bash scripts/device_fortran.sh            (PYTHON: an environment with cudnn_denoise[cuda13])
set -euo pipefail
cd "$(dirname "$0")/.."
exclude=$(git rev-parse --git-path info/exclude)  # a worktree's .git is a file
mkdir -p "$(dirname "$exclude")"
grep -qx '/.device/' "$exclude" 2>/dev/null || echo '/.device/' >> "$exclude"
build=$PWD/.device/fortran-build
make -s -C fortran BUILD="$build" PYTHON="${PYTHON:-python}" LDFLAGS=-Wl,--disable-new-dtags
mkdir -p .device/fortran
cp "$build/denoise_train" .device/fortran/
for lib in libgfortran.so.5 libquadmath.so.0; do
    cp -L "$(gfortran -print-file-name=$lib)" .device/fortran/
done
rm -rf "$build"
ls -l .device/fortran
