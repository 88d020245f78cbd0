#!/usr/bin/env bash
# Every ISA clone of the CPU engine's hot loops is vectorised: the AVX-512 clone uses zmm
# registers, the AVX2 clone packed ymm FMAs, the baseline clone packed SSE (xmm "ps") arithmetic
# (all but the blocked d > 1 tiles, which GCC 12 leaves scalar on baseline x86-64: listed, not
# required, so the day they vectorise shows).
# A clone that GCC left scalar (as the AVX2 one once was) fails here, whatever CPU runs the test.
# Usage: check_clones.sh OBJDUMP ENGINE_OBJECT
set -euo pipefail
objdump=$1 obj=$2
asm=$("$objdump" -d --no-show-raw-insn "$obj")
fail=0
# count FUNCTION CLONE REGEX: packed instructions matching REGEX in that clone of FUNCTION
count() {
  awk -v f="$1" -v c=".$2>:" '$2 ~ /^</ { p = index($2, f) && index($2, c) } /^$/ { p = 0 } p' \
    <<<"$asm" | grep -cE "$3" || true
}
# Itanium-mangled fragments: fused_tile_d1, fast_tile_d1, fused_dot_tile_d1, exp_dot_tile,
# exp_tile, dot_tile, score_tile<false>, score_tile_blocked<16, false>, and the dot form's
# multi-row tiles dot_score_rows<16, R, B> (R = 8, B = 2 runs on AVX-512, R = 4, B = 1 on AVX2).
funcs=(13fused_tile_d1 12fast_tile_d1 17fused_dot_tile_d1 12exp_dot_tile 8exp_tile 8dot_tileE
       10score_tileILb0 18score_tile_blockedILi16ELb0 14dot_score_rowsILi16ELi8ELi2E
       14dot_score_rowsILi16ELi4ELi1E)
baseline_optional=" 18score_tile_blockedILi16ELb0 14dot_score_rowsILi16ELi8ELi2E 14dot_score_rowsILi16ELi4ELi1E "
for f in "${funcs[@]}"; do
  v4=$(count "$f" arch_x86_64_v4 'ps[[:space:]].*%zmm')
  v3=$(count "$f" arch_x86_64_v3 'vfmadd[0-9]+ps[[:space:]].*%ymm')
  v0=$(count "$f" default '^[[:space:]]*[0-9a-f]+:[[:space:]]+(mul|add|sub|max|min)ps[[:space:]]')
  echo "$f: x86-64-v4 $v4 zmm ops, x86-64-v3 $v3 ymm FMAs, default $v0 SSE packed ops"
  if [[ $v4 -eq 0 || $v3 -eq 0 ]]; then fail=1; fi
  if [[ $v0 -eq 0 && $baseline_optional != *" $f "* ]]; then fail=1; fi
done
if [[ $fail -ne 0 ]]; then
  echo "FAIL: a clone above has no packed arithmetic (scalar code); see -fopt-info-vec-missed" >&2
  exit 1
fi
echo "every clone vectorised"
