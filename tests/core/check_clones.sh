#!/usr/bin/env bash
# Every ISA clone of the CPU engine's hot loops is vectorised: the AVX-512 clone uses zmm
# registers, the AVX2 clone packed ymm FMAs, the baseline clone packed SSE (xmm "ps") arithmetic
# (all but the blocked d > 1 tiles, which GCC 12 leaves scalar on baseline x86-64: listed, not
# required, so the day they vectorise shows). The multi-row tiles are compiled per width: the
# wide (64-byte vector) ones for AVX-512 only, the narrow (32-byte) ones for AVX2 and baseline.
# A clone that GCC left scalar (as the AVX2 one once was) fails here, whatever CPU runs the test.
# Usage: check_clones.sh OBJDUMP ENGINE_OBJECT
set -euo pipefail
objdump=$1 obj=$2
asm=$("$objdump" -d --no-show-raw-insn "$obj")
fail=0
# count FUNCTION SUFFIX REGEX: packed instructions matching REGEX in the clone of FUNCTION whose
# symbol ends in SUFFIX (.arch_x86_64_v4, .default; empty for a function that is not cloned)
count() {
  awk -v f="$1" -v c="$2>:" '$2 ~ /^</ { p = index($2, f) && index($2, c) } /^$/ { p = 0 } p' \
    <<<"$asm" | grep -cE "$3" || true
}
# Itanium-mangled fragments: fused_tile_d1, fast_tile_d1, fused_dot_tile_d1, exp_dot_tile,
# exp_tile, dot_tile, score_tile<false>, score_tile_blocked<16, false>.
funcs=(13fused_tile_d1 12fast_tile_d1 17fused_dot_tile_d1 12exp_dot_tile 8exp_tile 8dot_tileE
       10score_tileILb0 18score_tile_blockedILi16ELb0)
baseline_optional=" 18score_tile_blockedILi16ELb0 "
for f in "${funcs[@]}"; do
  v4=$(count "$f" .arch_x86_64_v4 'ps[[:space:]].*%zmm')
  v3=$(count "$f" .arch_x86_64_v3 'vfmadd[0-9]+ps[[:space:]].*%ymm')
  v0=$(count "$f" .default '^[[:space:]]*[0-9a-f]+:[[:space:]]+(mul|add|sub|max|min)ps[[:space:]]')
  echo "$f: x86-64-v4 $v4 zmm ops, x86-64-v3 $v3 ymm FMAs, default $v0 SSE packed ops"
  if [[ $v3 -eq 0 || $v4 -eq 0 ]]; then fail=1; fi
  if [[ $v0 -eq 0 && $baseline_optional != *" $f "* ]]; then fail=1; fi
done
# The multi-row tiles at d = 16 (dot form: Lb0, direct form: Lb1): the wide ones (8 rows) are
# compiled for AVX-512 alone (no clone suffix), the narrow ones (4 rows) for AVX2 and baseline.
for form in Lb0E Lb1E; do
  wide=$(count 15score_rows_wideILi16ELi8E$form '' 'ps[[:space:]].*%zmm')
  narrow=$(count 17score_rows_narrowILi16ELi4E$form .arch_x86_64_v3 'vfmadd[0-9]+ps[[:space:]].*%ymm')
  echo "score_rows_wide<16, 8, ${form:2:1}>: $wide zmm ops; score_rows_narrow<16, 4, ${form:2:1}>: x86-64-v3 $narrow ymm FMAs"
  if [[ $wide -eq 0 || $narrow -eq 0 ]]; then fail=1; fi
done
if [[ $fail -ne 0 ]]; then
  echo "FAIL: a clone above has no packed arithmetic (scalar code); see -fopt-info-vec-missed" >&2
  exit 1
fi
echo "every clone vectorised"
