#!/usr/bin/env bash
# The GPU check of issue 3, for a machine with an H100 or H200. Finishes in under 8 minutes:
#   1. configure + build (Release, sm_90) the GPU tests and bench_cuda      (<= 300 s)
#   2. nvidia-smi: GPU name and driver                                     (  few s)
#   3. the GPU tests: ctest -L test_cuda                                    (<= 120 s)
#   4. compute-sanitizer memcheck and racecheck on a small test filter     (<= 2 x 60 s)
#   5. bench_cuda on a short filtered set                                   (<= 90 s)
#   6. bench/peers/peers.py, if it exists, with what time is left           (<= 60 s)
# Every log goes under $OUT when set (else ./device-check-out): 8 files at most.
#
# Usage (repository root):        scripts/device-check.sh
# GoogleTest and Google Benchmark must be findable by CMake. Where the GPU machine has neither,
# stage this machine's copies first and carry .deps with the working tree:
#                                 scripts/device-check.sh --stage-deps
# (copies /usr/{include,lib/x86_64-linux-gnu} gtest/gmock/benchmark into ./.deps; keep .deps
# out of git, e.g. with `echo /.deps/ >> .git/info/exclude`).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)

if [[ "${1:-}" == "--stage-deps" ]]; then
  lib=/usr/lib/x86_64-linux-gnu
  mkdir -p .deps/include .deps/lib/x86_64-linux-gnu/cmake
  cp -a /usr/include/gtest /usr/include/gmock /usr/include/benchmark .deps/include/
  cp -a "$lib"/libgtest*.a "$lib"/libgmock*.a "$lib"/libbenchmark* .deps/lib/x86_64-linux-gnu/
  cp -a "$lib"/cmake/GTest "$lib"/cmake/benchmark .deps/lib/x86_64-linux-gnu/cmake/
  du -sh .deps
  exit 0
fi

out=${OUT:-$root/device-check-out}
mkdir -p "$out"
build=$root/build-device
summary=$out/00-summary.txt
: >"$summary"
start=$(date +%s)
note() { echo "[$(($(date +%s) - start))s] $*" | tee -a "$summary"; }
status=0
# Every step's timeout is its own cap or what is left of the 470 s budget, whichever is less,
# so the whole check ends inside 8 minutes even when a step hangs.
cap() {
  local left=$((470 - ($(date +%s) - start)))
  ((left < 5)) && left=5
  echo $(($1 < left ? $1 : left))
}

# ---- 1. GPU --------------------------------------------------------------------------------------
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
  nvidia-smi || true
} >"$out/01-gpu.txt" 2>&1
note "GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo unknown)"

# ---- 2. build ------------------------------------------------------------------------------------
prefix=()
if [[ -d $root/.deps ]]; then
  prefix=(-DCMAKE_PREFIX_PATH="$root/.deps")
  export LD_LIBRARY_PATH="$root/.deps/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
configure() {
  cmake -S "$root" -B "$build" "${gen[@]}" "${prefix[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DATTNPOOL_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DATTNPOOL_BUILD_EXAMPLES=OFF "$@"
}
{
  # The renderer needs stb and a font that a GPU image may lack: try with it, then without.
  configure -DATTNPOOL_RENDER=ON || { rm -rf "$build"; configure -DATTNPOOL_RENDER=OFF; }
  targets=(test_cuda_fused test_cuda_unfused test_cuda_api bench_cuda)
  [[ -f $root/bench/peers/peers.py ]] && targets+=(attnpool_peer)
  timeout "$(cap 300)" cmake --build "$build" -j16 --target "${targets[@]}"
} >"$out/02-build.log" 2>&1 || {
  note "BUILD FAILED (see 02-build.log)"
  tail -40 "$out/02-build.log"
  exit 1
}
note "build ok"

# ---- 3. GPU tests --------------------------------------------------------------------------------
# -j8: each case is its own process (gtest_discover_tests), and process start + CUDA context
# creation dominate the small cases.
if timeout "$(cap 150)" ctest --test-dir "$build" -L test_cuda -j8 --output-on-failure --timeout 120 \
  >"$out/03-tests.log" 2>&1; then
  note "GPU tests: $(grep -E 'tests passed|tests failed' "$out/03-tests.log" | tail -1)"
else
  status=1
  note "GPU tests FAILED: $(grep -E 'tests passed|tests failed' "$out/03-tests.log" | tail -1)"
fi
note "ctest lines mentioning Skipped: $(grep -c Skipped "$out/03-tests.log" || true)"

# ---- 4. compute-sanitizer ------------------------------------------------------------------------
tdir=$build/tests/cuda
# Small cases that still cover partial tiles, split-K + merge, the generic path, pads and the
# unfused row softmax (CUB block reductions, in-place row updates).
fused_filter='sizes/*n129_m129_d3_*:dims/*n129_m300_d5_dv3_*:dims/*n129_m300_d65_dv1_*:split_k/*n7_m4097_d3_dv2_*_s16_*:fused_leading_dimensions.*'
unfused_filter='unfused_weights.*:cases/unfused_vs_reference.pool_matches_reference/4'
for tool in memcheck racecheck; do
  log=$out/04-$tool.log
  [[ $tool == racecheck ]] && log=$out/05-$tool.log
  if command -v compute-sanitizer >/dev/null; then
    ok=1
    timeout "$(cap 60)" compute-sanitizer --tool "$tool" --error-exitcode 9 \
      "$tdir/test_cuda_fused" --gtest_filter="$fused_filter" >"$log" 2>&1 || ok=0
    timeout "$(cap 45)" compute-sanitizer --tool "$tool" --error-exitcode 9 \
      "$tdir/test_cuda_unfused" --gtest_filter="$unfused_filter" >>"$log" 2>&1 || ok=0
    if ((ok)); then note "$tool: clean ($(grep -h 'ERROR SUMMARY' "$log" | tr '\n' ' '))"; else
      status=1
      note "$tool: FAILED or timed out ($(grep -h 'ERROR SUMMARY' "$log" | tr '\n' ' '))"
    fi
  else
    echo "compute-sanitizer not found" >"$log"
    note "$tool: compute-sanitizer not found"
  fi
done

# ---- 5. benchmarks -------------------------------------------------------------------------------
# The headline (n = m = 2^20, d = dv = 1), fused vs unfused at 16384, n = m = 2^22 on the fused
# path (memory O(n + m)), and the skinny shapes.
bench_filter='^(fused|unfused)/n:16384/m:16384/d:(1|16)/dv:1$|^fused/n:1048576/m:1048576/d:1/dv:(1|16)$|^fused/n:4194304/m:4194304/d:1/dv:1$|^skinny'
min_time=0.05s
"$build/bench/cuda/bench_cuda" --help 2>&1 | grep -q 'benchmark_min_time=<float>s\|<integer>x' ||
  min_time=0.05
if timeout "$(cap 120)" "$build/bench/cuda/bench_cuda" --benchmark_filter="$bench_filter" \
  --benchmark_min_time=$min_time --benchmark_counters_tabular=true >"$out/06-bench.log" 2>&1; then
  note "bench_cuda ok"
else
  status=1
  note "bench_cuda FAILED or timed out"
fi
grep -E "bound|fused/n:1048576/m:1048576/d:1/dv:1 " "$out/06-bench.log" | tee -a "$summary" || true

# ---- 6. peers ------------------------------------------------------------------------------------
if [[ -f $root/bench/peers/peers.py ]]; then
  left=$((470 - ($(date +%s) - start)))
  if ((left > 40)); then
    budget=$((left - 10))
    # peers.py writes several files; only its log and results.csv (appended) come back, to
    # stay within 8 files under $out.
    peers_out=$build/peers-out
    if PYTHONUNBUFFERED=1 timeout "$budget" python3 "$root/bench/peers/peers.py" \
      --out "$peers_out" --attnpool-bin "$build/bench/attnpool_peer" \
      --time-budget $((budget - 15)) >"$out/07-peers.log" 2>&1; then
      note "peers.py ok (budget ${budget}s)"
    else
      note "peers.py failed or hit its ${budget}s budget (see 07-peers.log)"
    fi
    if [[ -f $peers_out/results.csv ]]; then
      { echo "---- results.csv"; cat "$peers_out/results.csv"; } >>"$out/07-peers.log"
    fi
  else
    note "peers.py skipped: no time left"
  fi
fi

note "total $(($(date +%s) - start))s, status $status"
exit $status
