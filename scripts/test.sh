#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, builds everything with warnings
# as errors (the CUDA target too where nvcc exists, for one architecture: sm_90), runs every
# test, then runs the host tests again under AddressSanitizer + UBSan, then fuzzes the readers.
# GPU tests skip with "no CUDA device" where there is no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc)

if command -v nvcc >/dev/null || [[ -x /usr/local/cuda/bin/nvcc ]]; then
  cuda=ON
  export PATH="$PATH:/usr/local/cuda/bin"
else
  cuda=OFF
fi
echo "attnpool: CUDA backends: $cuda"

cmake -S . -B build/test -DCMAKE_BUILD_TYPE=Release -DATTNPOOL_WERROR=ON \
  -DATTNPOOL_CUDA=$cuda -DCMAKE_CUDA_ARCHITECTURES=${ATTNPOOL_CUDA_ARCH:-90}
cmake --build build/test -j"$jobs"
ctest --test-dir build/test --output-on-failure -j"$jobs" --timeout 900

# The Python package: pip install . into a venv, then pytest (bitwise against the C++ results).
ATTNPOOL_CPP_RESULTS="$PWD/build/test/tests/python/attnpool-cpp-results" bash scripts/test-python.sh

# Host code under ASan/UBSan (CUDA off: the sanitizers do not see device code anyway; MPI off:
# OpenMPI's own start-up leaks and uninstrumented transports would drown the report).
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTNPOOL_CUDA=OFF -DATTNPOOL_MPI=OFF \
  -DATTNPOOL_SANITIZE=ON -DATTNPOOL_WERROR=ON -DATTNPOOL_BUILD_BENCHMARKS=OFF
cmake --build build/asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build/asan --output-on-failure -j"$jobs" --timeout 900 -LE install

# Coverage-guided fuzzing of the CLI's readers under ASan + UBSan, 20 s a target (clang only).
bash scripts/fuzz.sh 20
echo "attnpool: all tests passed"
