#!/usr/bin/env bash
# The main job (README): installs what is missing, builds attnpool (Release), and reproduces the
# notebook's figures with attnpool-demo into ./out/notebook (or the directory given as $1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
out=${1:-out/notebook}
if command -v nvcc >/dev/null || [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH="$PATH:/usr/local/cuda/bin"
fi
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DATTNPOOL_BUILD_TESTS=OFF \
  -DATTNPOOL_BUILD_BENCHMARKS=OFF -DCMAKE_CUDA_ARCHITECTURES=${ATTNPOOL_CUDA_ARCH:-90} >/dev/null
cmake --build build/release -j"$(nproc)" --target attnpool-demo
mkdir -p "$out"
./build/release/examples/notebook_demo/attnpool-demo --out "$out" "${@:2}"
