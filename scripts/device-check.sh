#!/usr/bin/env bash
# The GPU check, for a machine with an H100 or H200. Finishes in under 8 minutes:
#   1. nvidia-smi: GPU name and driver                                     (  few s)
#   2. binaries: the ones staged here in .prebuilt (see below), else configure + build
#      (Release, sm_90) the GPU tests and benchmarks there                 (<= 300 s)
#   3. the GPU tests, every test_cuda_* binary, in parallel                 (<= 150 s)
#      and again the d = 1 ones with ATTNPOOL_CUDA_D1_EXPANDED=1 (the expanded d = 1 score,
#      off by default until this passes)                                    (<= 120 s)
#      and the masked ones with ATTNPOOL_CUDA_FUSED_MASKS=1 (masks on the Gaussian fast
#      path, off by default until this passes)                              (<= 120 s)
#      and the d >= 16 ones with ATTNPOOL_CUDA_TENSOR_CORES=1 (3xTF32 scores on the tensor
#      cores, off by default until this passes; test_cuda_tensor_cores sets it
#      itself and runs with the others)                                     (<= 120 s)
#      and the skinny fused ones with ATTNPOOL_CUDA_DECODE=1 (the key-parallel decode
#      kernel for n <= 64, off by default until this passes; test_cuda_decode
#      sets it itself and runs with the others)                             (<= 60 s)
#      and the backward suites with ATTNPOOL_CUDA_TILED_BACKWARD=1 (shared-memory tiles,
#      split walks, fixed-order merges; off by default until this passes)  (<= 120 s)
#  3b. the Python tests under the device's python3, PyTorch and CuPy: the CUDA-array and torch
#      ones with ATTNPOOL_PYTHON_CUDA_ARRAYS=1, then the rest (needs .prebuilt/python)  (<= 160 s)
#   4. compute-sanitizer memcheck and racecheck on small test filters, the
#      d = 1 ones with the expanded score and masked ones on the fast path  (<= 2 x 60 s)
#   5. bench_cuda (and the bench_cuda_* suites) on short filtered sets, the
#      n = m = 2^20 d = 1 headline again with the expanded score, the masked
#      vs unmasked ratios with masks on the fast path, d = 16 / 64 again on
#      the tensor cores, n = 1 / 64 against 2^20 keys with the decode kernel
#      off and on, and the SM clock
#      sampled meanwhile, bench_cuda_learn again with the tiled backward, and Nsight Compute's stall reasons for one launch of the d = 1
#      headline kernel, default and expanded                                (<= 150 + 90 s)
#   6. bench/peers/peers.py with what time is left                          (<= 60 s)
# Every log goes under $OUT when set (else ./device-check-out): 8 files at most.
#
# Usage (repository root):        scripts/device-check.sh
# GoogleTest and Google Benchmark must be findable by CMake / the loader. Where the GPU machine
# has neither, stage this machine's copies first and carry .deps with the working tree:
#                                 scripts/device-check.sh --stage-deps
# (copies /usr/{include,lib/x86_64-linux-gnu} gtest/gmock/benchmark into ./.deps). Building the
# ~70 kernel instantiations there costs 1-2 minutes of a short device lease, so the binaries can
# be built here instead (shared libattnpool, sm_90) and carried as .prebuilt, packed into
# .pb/prebuilt.tar.xz (about 14 MB; unpacked, the sm_90 library alone is 61 MB, near the device
# tool's 64 MiB limit on what travels), which this script unpacks where .prebuilt is absent:
#                                 DEVICE_PYTHON=python3.12 scripts/device-check.sh --stage-prebuilt
# (DEVICE_PYTHON, optional: an interpreter of the device's Python version with nanobind, for the
# extension that step 3b tests). Keep .deps, .pb, .prebuilt (and .whl, the KeOps wheels of
# bench/peers/README.md) out of git, e.g. `echo /.deps/ >> .git/info/exclude`, and carry
# .deps, .pb and .whl.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
gpu_tests=(test_cuda_fused test_cuda_unfused test_cuda_api test_cuda_kernels test_cuda_learn
  test_cuda_bandwidth test_cuda_batched test_cuda_nccl test_cuda_fused_masks test_cuda_tensor_cores test_cuda_decode)
benches=(bench_cuda bench_fused_tuning bench_cuda_learn bench_cuda_cv bench_cuda_batched)

if [[ "${1:-}" == "--stage-deps" ]]; then
  lib=/usr/lib/x86_64-linux-gnu
  mkdir -p .deps/include .deps/lib/x86_64-linux-gnu/cmake
  cp -a /usr/include/gtest /usr/include/gmock /usr/include/benchmark .deps/include/
  cp -a "$lib"/libgtest*.a "$lib"/libgmock*.a "$lib"/libbenchmark* .deps/lib/x86_64-linux-gnu/
  cp -a "$lib"/cmake/GTest "$lib"/cmake/benchmark .deps/lib/x86_64-linux-gnu/cmake/
  du -sh .deps
  exit 0
fi

if [[ "${1:-}" == "--stage-prebuilt" ]]; then
  pb=$root/build-prebuilt
  cmake -S "$root" -B "$pb" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DATTNPOOL_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DATTNPOOL_BUILD_EXAMPLES=OFF -DATTNPOOL_RENDER=OFF >/dev/null
  targets=(attnpool_peer)
  for t in "${gpu_tests[@]}" "${benches[@]}"; do
    grep -q "^$t:" <(cmake --build "$pb" --target help | sed 's/^\.\.\. //;s/ .*//;s/$/:/') &&
      targets+=("$t")
  done
  cmake --build "$pb" -j2 --target "${targets[@]}"
  rm -rf .prebuilt && mkdir -p .prebuilt/bin .prebuilt/lib
  # The Python extension too, for the device's python3 (3.12 on the H200 image), when
  # DEVICE_PYTHON names an interpreter of that version with nanobind installed: step 3b runs
  # the Python tests on the GPU with it.
  if [[ -n ${DEVICE_PYTHON:-} ]]; then
    cmake -S "$root" -B "$pb" -DATTNPOOL_PYTHON=ON -DPython_EXECUTABLE="$DEVICE_PYTHON" \
      -Dnanobind_DIR="$("$DEVICE_PYTHON" -m nanobind --cmake_dir)" >/dev/null
    cmake --build "$pb" -j2 --target _core
    mkdir -p .prebuilt/python
    find "$pb" -name '_core*.so' -not -path '*/CMakeFiles/*' -exec cp {} .prebuilt/python/ \;
  fi
  find "$pb" -name 'libattnpool*.so*' -not -path '*/CMakeFiles/*' -exec cp -a {} .prebuilt/lib/ \;
  for t in "${targets[@]}"; do
    f=$(find "$pb" -type f -name "$t" -perm -u+x | head -1)
    [[ -n $f ]] && cp "$f" .prebuilt/bin/
  done
  # The commit the binaries were built from, "+dirty" when the tree differed from it.
  { git rev-parse HEAD | tr -d '\n'; git diff --quiet HEAD || printf '+dirty'; echo; } >.prebuilt/commit
  mkdir -p .pb && tar cf - .prebuilt | xz -T0 -6 >.pb/prebuilt.tar.xz
  du -sh .prebuilt .pb/prebuilt.tar.xz && ls .prebuilt/bin
  exit 0
fi

out=${OUT:-$root/device-check-out}
mkdir -p "$out"
build=$root/build-device
scratch=$(mktemp -d)  # per-binary logs and the peers' files; $out gets the digests
summary=$out/00-summary.txt
: >"$summary"
start=$(date +%s)
note() { echo "[$(($(date +%s) - start))s] $*" | tee -a "$summary"; }
status=0
# Every step's timeout is its own cap or what is left of the budget (470 s, or
# $DEVICE_CHECK_BUDGET), whichever is less, so the whole check ends inside 8 minutes even when
# a step hangs.
budget_s=${DEVICE_CHECK_BUDGET:-470}
cap() {
  local left=$((budget_s - ($(date +%s) - start)))
  ((left < 5)) && left=5
  echo $(($1 < left ? $1 : left))
}

# ---- 1. GPU --------------------------------------------------------------------------------------
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
  nvidia-smi || true
  nvcc --version || true
} >"$out/01-gpu.txt" 2>&1
note "GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo unknown)"

# ---- 2. binaries ---------------------------------------------------------------------------------
if [[ -d $root/.deps ]]; then
  export LD_LIBRARY_PATH="$root/.deps/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# cuBLAS and NCCL: the toolkit's, else the ones inside Python's nvidia-* wheels.
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib \
  $(python3 -c 'import nvidia, os; b = list(nvidia.__path__)[0]; print(" ".join(os.path.join(b, p, "lib") for p in ("cublas", "nccl", "cu13")))' 2>/dev/null); do
  [[ -d $d ]] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
done
bindir=""
if [[ ! -d $root/.prebuilt && -f $root/.pb/prebuilt.tar.xz ]]; then
  # Python's tarfile: the image need not have xz.
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
    "$root/.pb/prebuilt.tar.xz" "$root" || note "could not unpack .pb/prebuilt.tar.xz"
fi
if [[ -d $root/.prebuilt/bin ]]; then
  export LD_LIBRARY_PATH="$root/.prebuilt/lib:$LD_LIBRARY_PATH"
  missing=$(for f in "$root"/.prebuilt/bin/*; do ldd "$f" | grep 'not found' || true; done | sort -u)
  if [[ -z $missing ]]; then
    bindir=$root/.prebuilt/bin
    built=$(cat "$root/.prebuilt/commit" 2>/dev/null || echo '?')
    note "binaries: prebuilt at $built ($(ls "$bindir" | tr '\n' ' '))"
    head=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo '?')
    [[ $built == "$head" || $head == '?' ]] ||
      note "WARNING: the prebuilt binaries ($built) are not the tree's HEAD ($head)"
  else
    note "prebuilt binaries lack libraries here, building instead: $(echo "$missing" | tr '\n' ' ')"
  fi
fi
if [[ -z $bindir ]]; then
  prefix=()
  [[ -d $root/.deps ]] && prefix=(-DCMAKE_PREFIX_PATH="$root/.deps")
  gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  {
    cmake -S "$root" -B "$build" "${gen[@]}" "${prefix[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DATTNPOOL_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DATTNPOOL_BUILD_EXAMPLES=OFF \
      -DATTNPOOL_RENDER=OFF
    targets=(attnpool_peer)
    for t in "${gpu_tests[@]}" "${benches[@]}"; do
      cmake --build "$build" --target help | grep -qw "$t" && targets+=("$t")
    done
    timeout "$(cap 300)" cmake --build "$build" -j16 --target "${targets[@]}"
  } >"$out/02-build.log" 2>&1 || {
    note "BUILD FAILED (see 02-build.log)"
    tail -40 "$out/02-build.log"
    exit 1
  }
  bindir=$build/bin
  mkdir -p "$bindir"
  find "$build" -type f -perm -u+x \( -name 'test_cuda_*' -o -name 'bench_cuda*' -o -name attnpool_peer \) \
    -not -path "$bindir/*" -exec cp {} "$bindir/" \;
  note "build ok"
fi

# ---- 3. GPU tests --------------------------------------------------------------------------------
# One process per binary (not one per case through ctest: context creation would dominate), the
# binaries side by side. A binary that is absent (a suite not built yet) is reported, not run.
tlog=$out/03-tests.log
: >"$tlog"
pids=()
for t in "${gpu_tests[@]}"; do
  if [[ -x $bindir/$t ]]; then
    timeout "$(cap 150)" "$bindir/$t" --gtest_brief=1 >"$scratch/$t.log" 2>&1 &
    pids+=("$!:$t")
  else
    echo "$t: not built" >>"$tlog"
    note "$t: NOT BUILT (not run)"
  fi
done
for pt in "${pids[@]}"; do
  pid=${pt%%:*} t=${pt#*:}
  rc=0
  wait "$pid" || rc=$?
  {
    echo "==== $t (exit $rc)"
    cat "$scratch/$t.log"
  } >>"$tlog"
  line="$(grep -E '^\[  PASSED  \]|^\[  FAILED  \] [0-9]+ test|^\[  SKIPPED \] [0-9]+ test' "$scratch/$t.log" | tr '\n' ' ')"
  if ((rc == 0)); then note "$t: ok $line"; else
    status=1
    note "$t: FAILED (exit $rc) $line"
    grep -E '^\[  FAILED  \] ' "$scratch/$t.log" | head -20 | tee -a "$summary" || true
  fi
done

# ---- 3b. Python on the GPU ----------------------------------------------------------------------
# The package with the prebuilt extension (.prebuilt/python), under the device's python3 and its
# PyTorch and CuPy: the CUDA-array and torch tests with the device path on
# (ATTNPOOL_PYTHON_CUDA_ARRAYS=1), then the rest of the Python suite with the defaults.
if [[ -d $root/.prebuilt/python ]] && ! [[ " ${SKIP:-} " == *" python "* ]]; then
  pyroot=$scratch/py
  mkdir -p "$pyroot"
  cp -r "$root/python/attnpool" "$pyroot/"
  cp "$root"/.prebuilt/python/_core*.so "$pyroot/attnpool/"
  {
    echo "==== pytest (python3 $(python3 -c 'import sys; print(sys.version.split()[0])'))"
    ATTNPOOL_PYTHON_CUDA_ARRAYS=1 PYTHONPATH=$pyroot timeout "$(cap 100)" \
      python3 -m pytest -q -p no:cacheprovider -rs \
      "$root/tests/python/test_cuda_arrays.py" "$root/tests/python/test_torch.py" 2>&1 ||
      echo "pytest exit $?"
    PYTHONPATH=$pyroot timeout "$(cap 60)" python3 -m pytest -q -p no:cacheprovider \
      "$root/tests/python" --ignore="$root/tests/python/test_cuda_arrays.py" \
      --ignore="$root/tests/python/test_torch.py" 2>&1 | tail -15 || true
    # The op against eager PyTorch and torch.compile, forward and forward + backward.
    echo "==== bench/python/torch_op.py (ATTNPOOL_PYTHON_CUDA_ARRAYS=1)"
    ATTNPOOL_PYTHON_CUDA_ARRAYS=1 PYTHONPATH=$pyroot PYTHONUNBUFFERED=1 timeout "$(cap 60)" \
      python3 "$root/bench/python/torch_op.py" 2>&1 || echo "torch_op.py exit $?"
  } >"$scratch/python.log" 2>&1
  grep -q 'pytest exit' "$scratch/python.log" && status=1
  sed -n '/==== bench\/python\/torch_op.py/,$p' "$scratch/python.log" >>"$summary"
  cat "$scratch/python.log" >>"$tlog"
  note "python: $(grep -E '^[0-9]+ (passed|failed)|passed|failed' "$scratch/python.log" | grep -E ' in [0-9.]+s' | tr '\n' ' ')"
  grep -E '^(FAILED|ERROR) ' "$scratch/python.log" | head -20 | tee -a "$summary" || true
fi

# rerun_suites VAR=VALUE LABEL KEY BINARY:FILTER...: the given suites again, side by side, with
# the environment switch VAR=VALUE set (a new GPU path), logged as "BINARY (LABEL)".
rerun_suites() {
  local env=$1 label=$2 key=$3
  shift 3
  local pids=() tf t filter pt pid rc line
  for tf in "$@"; do
    t=${tf%%:*} filter=${tf#*:}
    [[ -x $bindir/$t ]] || continue
    env "$env" timeout "$(cap 120)" "$bindir/$t" --gtest_brief=1 --gtest_filter="$filter" \
      >"$scratch/$t.$key.log" 2>&1 &
    pids+=("$!:$t")
  done
  for pt in "${pids[@]}"; do
    pid=${pt%%:*} t=${pt#*:}
    rc=0
    wait "$pid" || rc=$?
    {
      echo "==== $t, $env (exit $rc)"
      cat "$scratch/$t.$key.log"
    } >>"$tlog"
    line="$(grep -E '^\[  PASSED  \]|^\[  FAILED  \] [0-9]+ test' "$scratch/$t.$key.log" | tr '\n' ' ')"
    if ((rc == 0)); then note "$t ($label): ok $line"; else
      status=1
      note "$t ($label): FAILED (exit $rc) $line"
      grep -E '^\[  FAILED  \] ' "$scratch/$t.$key.log" | head -20 | tee -a "$summary" || true
    fi
  done
}

# The expanded d = 1 score (kernels/fused, ATTNPOOL_CUDA_D1_EXPANDED=1): the suites with d = dv = 1
# Gaussian forwards run again with it on. $SKIP "expanded" leaves this and its sanitizer and
# benchmark runs out.
if ! [[ " ${SKIP:-} " == *" expanded "* ]]; then
  rerun_suites ATTNPOOL_CUDA_D1_EXPANDED=1 "expanded d = 1" expanded \
    "test_cuda_fused:*" "test_cuda_api:*" "test_cuda_batched:*"
fi

# Masks on the Gaussian fast path (ATTNPOOL_CUDA_FUSED_MASKS=1): the masked suites again, side by
# side. $SKIP "masks" leaves this and its sanitizer and benchmark runs out.
if ! [[ " ${SKIP:-} " == *" masks "* ]]; then
  rerun_suites ATTNPOOL_CUDA_FUSED_MASKS=1 "masks on the fast path" masks \
    "test_cuda_fused_masks:*" "test_cuda_learn:CudaMaskedForward.*"
fi

# The tensor-core forward (ATTNPOOL_CUDA_TENSOR_CORES=1): the fused suites with d >= 9 and the
# batched ones again (test_cuda_tensor_cores ran above: it sets the switch itself). $SKIP "tc"
# leaves this and its sanitizer and benchmark runs out.
if ! [[ " ${SKIP:-} " == *" tc "* ]]; then
  rerun_suites ATTNPOOL_CUDA_TENSOR_CORES=1 "tensor cores" tc \
    "test_cuda_fused:*_d9_*:*_d16_*:*_d17_*:*_d32_*:*_d33_*:*_d64_*" "test_cuda_batched:*"
fi

# The decode kernel (ATTNPOOL_CUDA_DECODE=1): test_cuda_fused's cases with n = 1, 7, 64 again
# (test_cuda_decode ran above: it sets the switch itself). $SKIP "decode" leaves this and its
# sanitizer and benchmark runs out.
if ! [[ " ${SKIP:-} " == *" decode "* ]]; then
  rerun_suites ATTNPOOL_CUDA_DECODE=1 "decode" decode "test_cuda_fused:*/n1_m*:*/n7_m*:*/n64_m*"
fi

# The tiled backward (ATTNPOOL_CUDA_TILED_BACKWARD=1): the backward and training suites and the
# device API's again. $SKIP "tiledbw" leaves this and its sanitizer and benchmark runs out.
if ! [[ " ${SKIP:-} " == *" tiledbw "* ]]; then
  rerun_suites ATTNPOOL_CUDA_TILED_BACKWARD=1 "tiled backward" tiledbw \
    "test_cuda_learn:CudaBackward.*:CudaTrain.*" "test_cuda_api:*" "test_cuda_bandwidth:*"
fi

# ---- 4. compute-sanitizer ------------------------------------------------------------------------
# Small cases that still cover partial tiles, split-K + merge, the generic path, pads, the
# unfused row softmax (CUB block reductions, in-place row updates) and the other kernels; plus
# $SANITIZE_EXTRA ("binary:filter binary:filter ...") for newer suites.
fused_filter='sizes/*n129_m129_d3_*:dims/*n129_m300_d5_dv3_*:dims/*n129_m300_d65_dv1_*:split_k/*n7_m4097_d3_dv2_*_s16_*:split_k/*n129_m4097_d1_dv1_*_s33_*:fused_leading_dimensions.*'
unfused_filter='unfused_weights.*:cases/unfused_vs_reference.pool_matches_reference/4'
san_runs=("test_cuda_fused:$fused_filter" "test_cuda_unfused:$unfused_filter"
  "test_cuda_kernels:cuda_kernels.empty_support_nan_rows:cuda_kernels.anisotropic_bandwidth")
# "expanded+binary:filter" runs with ATTNPOOL_CUDA_D1_EXPANDED=1: full and partial tiles, a
# partial chunk, split-K with 16 and 33 splits, sorted keys (a centre per tile), and a
# bandwidth where the direct form takes over.
expanded_filter='sizes/*n129_m129_d1_*:dims/*n129_m300_d1_dv1_*:split_k/*n129_m4097_d1_dv1_*_s33_*:bandwidths/*d1_dv1_h0_001*:expanded/*n7_m20000_*:fused_sorted_keys.*'
[[ " ${SKIP:-} " == *" expanded "* ]] || san_runs+=("expanded+test_cuda_fused:$expanded_filter")
# "masks+binary:filter" runs with ATTNPOOL_CUDA_FUSED_MASKS=1: both masks with one and two rows
# per thread, a partial tile, valid_lens on chunk and tile edges, split-K with 16 splits.
masks_filter='dims/*/loo0_n300_m300_d1_dv1_*:dims/*/vl0_n300_m300_d3_dv2_*:lens/*/vl3_n129_m300_d1_*:split_k/*_n129_m129_d3_dv2_s16_*'
[[ " ${SKIP:-} " == *" masks "* ]] || san_runs+=("masks+test_cuda_fused_masks:$masks_filter")
# The tensor-core kernel (the binary sets ATTNPOOL_CUDA_TENSOR_CORES=1): a partial tile and rows,
# every D, value windows 3 and 8, a fallback block, split-K with 3 splits.
tc_filter='shapes/*n129_m1000_d16_dv3_*:shapes/*n129_m1000_d32_dv8_*:shapes/*n129_m1000_d64_dv1_*:fallback/*n129_m4097_d16_dv1_h1_000000_*:split_k/*n7_m4097_d64_dv3_*_s3_*'
[[ " ${SKIP:-} " == *" tc "* ]] || san_runs+=("test_cuda_tensor_cores:$tc_filter")
# The decode kernel (the binary sets ATTNPOOL_CUDA_DECODE=1): one and 8 rows a block, a partial
# row group, two value windows, no split-K and 33 splits.
decode_filter='sizes/*n1_m4097_*:sizes/*n7_m129_*:shapes/*n64_m4097_d8_dv9_*:split_k/*n7_m4097_d3_dv3_*_s1_*:split_k/*n64_m4097_d3_dv3_*_s33_*'
[[ " ${SKIP:-} " == *" decode "* ]] || san_runs+=("test_cuda_decode:$decode_filter")
# "tiledbw+binary:filter" runs with ATTNPOOL_CUDA_TILED_BACKWARD=1: both masks, n = m up to 4097,
# so that each phase splits its walk into ranges and merges them.
[[ " ${SKIP:-} " == *" tiledbw "* ]] ||
  san_runs+=("tiledbw+test_cuda_learn:CudaBackward.MatchesTheReferenceWithMasks")
set -f  # the filters' * are gtest's, not the shell's
for extra in ${SANITIZE_EXTRA:-}; do san_runs+=("$extra"); done
set +f
for tool in memcheck racecheck; do
  log=$out/04-$tool.log
  [[ $tool == racecheck ]] && log=$out/05-$tool.log
  : >"$log"
  if command -v compute-sanitizer >/dev/null; then
    ok=1
    for run in "${san_runs[@]}"; do
      expanded=0 masks=0 tiledbw=0
      [[ $run == expanded+* ]] && expanded=1 run=${run#expanded+}
      [[ $run == masks+* ]] && masks=1 run=${run#masks+}
      [[ $run == tiledbw+* ]] && tiledbw=1 run=${run#tiledbw+}
      bin=${run%%:*} filter=${run#*:}
      [[ -x $bindir/$bin ]] || continue
      echo "==== $bin --gtest_filter=$filter (ATTNPOOL_CUDA_D1_EXPANDED=$expanded" \
        "ATTNPOOL_CUDA_FUSED_MASKS=$masks ATTNPOOL_CUDA_TILED_BACKWARD=$tiledbw)" >>"$log"
      ATTNPOOL_CUDA_D1_EXPANDED=$expanded ATTNPOOL_CUDA_FUSED_MASKS=$masks \
        ATTNPOOL_CUDA_TILED_BACKWARD=$tiledbw timeout "$(cap "${SAN_CAP:-60}")" \
        compute-sanitizer --tool "$tool" --error-exitcode 9 \
        "$bindir/$bin" --gtest_brief=1 --gtest_filter="$filter" >"$scratch/san.log" 2>&1 || ok=0
      cat "$scratch/san.log" >>"$log"
      # A filter that selects nothing would be "clean" without checking anything.
      grep -qE '^\[  PASSED  \] [1-9]' "$scratch/san.log" || {
        ok=0
        echo "no test ran under this filter" >>"$log"
      }
    done
    if ((ok)); then note "$tool: clean ($(grep -hE 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | sort | uniq -c | tr '\n' ' '))"; else
      status=1
      note "$tool: FAILED or timed out ($(grep -hE 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | sort | uniq -c | tr '\n' ' '))"
    fi
  else
    echo "compute-sanitizer not found" >"$log"
    note "$tool: compute-sanitizer not found"
  fi
done

# ---- 5. benchmarks -------------------------------------------------------------------------------
# The headline (n = m = 2^20, d = dv = 1), fused vs unfused at 16384, n = m = 2^22 on the fused
# path (memory O(n + m)), and the skinny shapes; then each bench_cuda_* suite whole (each keeps
# its own cases few and short).
# (Manual-time benchmarks carry a /manual_time suffix: no $ anchors.)
bench_filter=${BENCH_FILTER:-'^(fused|unfused)/n:16384/m:16384/d:(1|16)/dv:1/|^fused/n:1048576/m:1048576/d:1/dv:(1|16)/|^fused/n:4194304/m:4194304/d:1/dv:1/|^skinny|^fused_wide/'}
blog=$out/06-bench.log
: >"$blog"
# $BENCH_FILTERS narrows the other suites of a short run: "bench_fused_tuning=regex;...".
declare -A suite_filter=()
IFS=';' read -ra pairs <<<"${BENCH_FILTERS:-}"
for kv in "${pairs[@]}"; do [[ $kv == *=* ]] && suite_filter[${kv%%=*}]=${kv#*=}; done
# The SM clock under load, sampled every 0.5 s while the benchmarks run: the bound the bench
# prints is at the maximum clock; the percentage at the measured clock is computed below.
clocks=$scratch/clocks.csv
nvidia-smi --query-gpu=clocks.sm,clocks.max.sm --format=csv,noheader,nounits -lms 500 \
  >"$clocks" 2>/dev/null &
clock_pid=$!
runs=()
for b in "${benches[@]}"; do
  runs+=("$b")
  # The headline again with the expanded d = 1 score, right after the default run.
  [[ $b == bench_cuda ]] && ! [[ " ${SKIP:-} " == *" expanded "* ]] && runs+=("expanded+$b")
  # The masked / unmasked ratios (vs_unmasked): on the generic-score path at 2^16 only (about
  # 20x the unmasked time), then on the fast path at every size.
  [[ $b == bench_cuda ]] && ! [[ " ${SKIP:-} " == *" masks "* ]] &&
    runs+=("masksoff+$b" "masks+$b")
  # d = 16 / 64 on the tensor cores: the wide bandwidths (the path's own) and h = 0.5 (every
  # block falls back: the cost of the bound's pre-pass).
  [[ $b == bench_cuda ]] && ! [[ " ${SKIP:-} " == *" tc "* ]] && runs+=("tc+$b")
  # The backward / forward ratios again with the tiled backward kernels.
  [[ $b == bench_cuda_learn ]] && ! [[ " ${SKIP:-} " == *" tiledbw "* ]] && runs+=("tiledbw+$b")
  # n = 1 and 64 against 2^20 keys, d = dv = 1: the default kernel, then the decode kernel.
  [[ $b == bench_cuda ]] && ! [[ " ${SKIP:-} " == *" decode "* ]] &&
    runs+=("decodeoff+$b" "decode+$b")
done
for run in "${runs[@]}"; do
  expanded=0 masks=0 tc=0 decode=0 tiledbw=0 label=""
  b=${run#*+}
  filter=${suite_filter[$b]:-.}
  [[ $b == bench_cuda ]] && filter=$bench_filter
  case $run in
    expanded+*)
      expanded=1 label=" (expanded d = 1)"
      filter=${EXPANDED_BENCH_FILTER:-'^fused/n:1048576/m:1048576/d:1/dv:1/'}
      ;;
    masksoff+*) label=" (masks, generic path)" filter='^masked/.*/n:65536/m:65536/d:1/' ;;
    masks+*) masks=1 label=" (masks on the fast path)" filter='^masked/' ;;
    tc+*)
      tc=1 label=" (tensor cores)"
      filter='^fused_wide/|^fused/n:16384/m:16384/d:(16|64)/dv:1/'
      ;;
    decodeoff+*) label=" (decode off)" filter='^skinny_fused/n:(1|64)/m:1048576/d:1/dv:1/' ;;
    decode+*) decode=1 label=" (decode on)" filter='^skinny_fused/n:(1|64)/m:1048576/d:1/dv:1/' ;;
    tiledbw+*) tiledbw=1 label=" (tiled backward)" ;;
  esac
  [[ -x $bindir/$b ]] || continue
  echo "==== $b --benchmark_filter=$filter (ATTNPOOL_CUDA_D1_EXPANDED=$expanded" \
    "ATTNPOOL_CUDA_FUSED_MASKS=$masks ATTNPOOL_CUDA_TENSOR_CORES=$tc" \
    "ATTNPOOL_CUDA_DECODE=$decode ATTNPOOL_CUDA_TILED_BACKWARD=$tiledbw)" >>"$blog"
  if ATTNPOOL_CUDA_D1_EXPANDED=$expanded ATTNPOOL_CUDA_FUSED_MASKS=$masks \
    ATTNPOOL_CUDA_TENSOR_CORES=$tc ATTNPOOL_CUDA_DECODE=$decode \
    ATTNPOOL_CUDA_TILED_BACKWARD=$tiledbw timeout "$(cap 120)" "$bindir/$b" \
    --benchmark_filter="$filter" --benchmark_min_time=0.05 \
    --benchmark_counters_tabular=true >>"$blog" 2>&1; then
    note "$b ok$label"
  else
    status=1
    note "$b FAILED or timed out$label"
  fi
done
kill "$clock_pid" 2>/dev/null || true
grep -E "bound|/n:1048576/m:1048576/d:1/dv:1 |^masked/|^fused_wide/|^skinny_fused/n:(1|64)/m:1048576/d:1/dv:1/|^==== bench_cuda " "$blog" | tee -a "$summary" || true
# Median sampled SM clock (MHz) and the maximum: the exp2 bound scales with the clock.
if [[ -s $clocks ]]; then
  med=$(cut -d, -f1 "$clocks" | sort -n | awk '{c[NR] = $1} END {print c[int((NR + 1) / 2)]}')
  max=$(tail -1 "$clocks" | cut -d, -f2 | tr -d ' ')
  note "SM clock under load: median $med MHz of max $max MHz over $(wc -l <"$clocks") samples;" \
    "% of the exp2 bound at that clock = the bench's exp2_% x $max / $med"
fi

# Nsight Compute on one launch of the d = dv = 1 headline kernel, default and expanded: where the
# warps stall (the distance to the MUFU bound is latency, occupancy or the clock, not issue
# slots). Its report goes into 08-sass.txt with the machine code. $SKIP "ncu" leaves it out.
ncu_bin=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1 || true)
ncu_log=$scratch/ncu.txt
: >"$ncu_log"
if ! skip ncu && [[ -n $ncu_bin && -x $bindir/bench_cuda ]]; then
  for x in 0 1; do
    kernel=fused_pool_kernel
    ((x)) && kernel=fused_pool_expanded_kernel
    echo "==== ncu, $kernel (ATTNPOOL_CUDA_D1_EXPANDED=$x), n = m = 2^20, d = dv = 1" >>"$ncu_log"
    ATTNPOOL_CUDA_D1_EXPANDED=$x timeout "$(cap 45)" "$ncu_bin" --clock-control none \
      --kernel-name "regex:^${kernel}" --launch-skip 2 --launch-count 1 \
      --section LaunchStats --section Occupancy --section SchedulerStats \
      --section WarpStateStats --section ComputeWorkloadAnalysis --section SpeedOfLight \
      "$bindir/bench_cuda" --benchmark_filter='^fused/n:1048576/m:1048576/d:1/dv:1/' \
      --benchmark_min_time=0.01 >>"$ncu_log" 2>&1 || echo "ncu exit $?" >>"$ncu_log"
  done
  note "ncu: $(grep -cE 'Warp Cycles Per Issued Instruction' "$ncu_log") kernel reports"
fi

# statsmodels' leave-one-out bandwidth selection on this machine's CPU, n = 1000: the learning benchmarks compare
# it with bench_cuda_cv's select_bandwidth at the same n.
# $SKIP (words: statsmodels peers sass) leaves steps out of a short run.
skip() { [[ " ${SKIP:-} " == *" $1 "* ]]; }
if ! skip statsmodels && python3 -c 'import statsmodels' 2>/dev/null; then
  echo "==== statsmodels_cv.py --n 1000 (this machine's CPU)" >>"$blog"
  timeout "$(cap 40)" python3 "$root/bench/peers/statsmodels_cv.py" --n 1000 >>"$blog" 2>&1 || true
  note "$(grep 'KernelReg(cv_ls)' "$blog" | tail -1)"
fi

# ---- 6. peers ----------------------------------------------------------------------------------
# $PEERS_ARGS narrows a short run, e.g. "--shapes 16384x16384x1x1 --no-probe".
left=$((budget_s - ($(date +%s) - start)))
if ! skip peers && ((left > 40)) && [[ -x $bindir/attnpool_peer ]]; then
  budget=$((left - 10))
  # KeOps travels as wheels (bench/peers/README.md); without them its rows say "unavailable".
  if compgen -G "$root/.whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$root"/.whl/*.whl >/dev/null 2>&1 &&
      export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  # peers.py writes several files; only its log and results.csv (appended) come back, to
  # stay within 8 files under $out.
  peers_out=$scratch/peers
  if PYTHONUNBUFFERED=1 timeout "$budget" python3 "$root/bench/peers/peers.py" \
    --out "$peers_out" --attnpool-bin "$bindir/attnpool_peer" \
    --time-budget $((budget - 15)) ${PEERS_ARGS:-} >"$out/07-peers.log" 2>&1; then
    note "peers.py ok (budget ${budget}s)"
  else
    note "peers.py failed or hit its ${budget}s budget (see 07-peers.log)"
  fi
  if [[ -f $peers_out/results.md ]]; then
    { echo "---- results.md"; cat "$peers_out/results.md"; } | tee -a "$summary" >>"$out/07-peers.log"
  fi
  # The CSV too, for bench/plot/plot_scaling (cut it out of the log after the marker).
  if [[ -f $peers_out/results.csv ]]; then
    { echo "---- results.csv"; cat "$peers_out/results.csv"; } >>"$out/07-peers.log"
  fi
else
  note "peers.py skipped: no time left or no attnpool_peer"
fi

# ---- 7. machine code ----------------------------------------------------------------------------
# Registers / spills of every kernel, and the SASS of the headline kernel (d = dv = 1), read with
# the GPU machine's cuobjdump (the development machine's toolkit lacks it).
if ! skip sass && command -v cuobjdump >/dev/null; then
  obj=$root/.prebuilt/lib/libattnpool.so
  [[ -f $obj && $bindir == "$root/.prebuilt/bin" ]] || obj=$bindir/bench_cuda
  {
    timeout "$(cap 20)" cuobjdump -res-usage "$obj" 2>&1 | grep -E 'Function|REG' || true
    echo "==== SASS of fused_pool_kernel<1, 1>"
    timeout "$(cap 20)" cuobjdump -sass "$obj" 2>/dev/null |
      awk '/Function : .*fused_pool_kernelILi1ELi1E/ {p = 1} p && /Function : / && !/ILi1ELi1E/ {p = 0} p' || true
  } >"$out/08-sass.txt"
  note "cuobjdump: $(grep -c MUFU.EX2 "$out/08-sass.txt" || true) MUFU.EX2 in the d = dv = 1 kernel"
fi
[[ -s $ncu_log ]] && cat "$ncu_log" >>"$out/08-sass.txt"

note "total $(($(date +%s) - start))s, status $status"
exit $status
