#!/usr/bin/env bash
# Coverage-guided fuzzing of the tool's readers (tests/fuzz): builds the libFuzzer targets with
# clang under ASan + UBSan in build/fuzz, then runs each for SECONDS (default 20) from its seed
# corpus and prints the executions it reached. A crash, sanitizer report, failed check, leak or
# input slower than 10 s fails the script; the input is saved as build/fuzz/artifacts/<target>-*.
#
#   scripts/fuzz.sh [SECONDS]        e.g. scripts/fuzz.sh 600 for a longer run
#
# New inputs that reach new coverage accumulate in build/fuzz/corpus/<target>/ (never in the
# seed corpus) and seed the next run. Skipped, with a message, where clang or libFuzzer is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS]  (a positive integer, got '$seconds')" >&2; exit 2; }

cxx=${ATTNPOOL_FUZZ_CXX:-clang++}
if ! command -v "$cxx" >/dev/null; then
  echo "attnpool: fuzzing skipped: $cxx not found (scripts/install-deps.sh installs clang)"
  exit 0
fi
if ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' |
    "$cxx" -x c++ -fsanitize=fuzzer -o /dev/null - 2>/dev/null; then
  echo "attnpool: fuzzing skipped: $cxx cannot link libFuzzer (Debian: the libclang-rt-N-dev of clang N)"
  exit 0
fi

targets=(csv npy number)
cmake -S . -B build/fuzz -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DATTNPOOL_FUZZ=ON -DATTNPOOL_CUDA=OFF -DATTNPOOL_MPI=OFF -DATTNPOOL_RENDER=OFF \
  -DATTNPOOL_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build/fuzz -j"$(nproc)" --target "${targets[@]/#/fuzz_}"

mkdir -p build/fuzz/artifacts
for t in "${targets[@]}"; do
  mkdir -p "build/fuzz/corpus/$t"
  log="build/fuzz/fuzz_$t.log"
  # -timeout: an input slower than 10 s is a hang. -rss_limit_mb: the readers hold the input and
  # its values; 2 GiB is far beyond what an input of libFuzzer's lengths may need.
  if ! ASAN_OPTIONS=detect_leaks=1 "build/fuzz/tests/fuzz/fuzz_$t" -max_total_time="$seconds" \
      -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="build/fuzz/artifacts/$t-" \
      "build/fuzz/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "attnpool: fuzz_$t FAILED (log $log, input in build/fuzz/artifacts/)" >&2
    exit 1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
  echo "attnpool: fuzz_$t: ${execs:-?} executions in ${seconds} s, ${cov:-cov: ?}, no failure"
done
