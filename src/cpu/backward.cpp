// The backward pass of pool() on the CPU engine.
//
// CPU engine, FlashAttention style (the two-loop form of Triton's fused-attention backward):
//   0. forward: cpu_pool_lse gives out and, per row, lse2_i = log2 sum_j 2^s_j; then
//      D_i = dout_i . out_i. Memory O(n).
//   1. rows (queries), parallel: recompute the scores of row i tile by tile; the weight is one
//      exp2, P_ij = 2^(s_ij - lse2_i); dS_ij = P_ij (dout_i . v_j - D_i); dq_i and the row's
//      share of dh are sums along the row.
//   2. columns (keys), parallel: the same recomputation with queries and keys swapped, so that
//      dk_j and dv_j are sums along a key's column. No atomics and no per-thread copies of dk and
//      dv: every output element is one thread's sum in a fixed order, so the result does not
//      depend on the thread count.
// The n x m matrix is never stored. Each phase costs about one forward pass plus the d + dv
// multiply-adds of the gradient sums per pair.
//
// Scores are stored (rounded to float) before the log-sum-exp is subtracted, as in the forward
// engine: an unrounded `scale * r - lse2` (an FMA) would not match the lse2 that the forward
// computed from rounded scores, which matters for scores of -1e13 (src/cpu/engine.cpp).
#include <attnpool/detail/fast_math.hpp>
#include <attnpool/detail/scores.hpp>
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>

#include "src/cpu/engine.hpp"
#include "src/cpu/tiles.hpp"
#include "src/validate/validate.hpp"

#include <cmath>
#include <cstdint>
#include <limits>

namespace attnpool {
namespace {

using detail::kCpuTile;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// s[t] = score(r[t]), stored (see the file comment).
ATTNPOOL_MULTIVERSION
void score_tile(const float* r, std::size_t len, detail::gaussian_log2_score score, float* s) {
#pragma omp simd
  for (std::size_t t = 0; t < len; ++t) s[t] = score(r[t]);
}

// out[t] = sum_c coef_c * bt[c * stride + t0 + t]: dp = dout_i . v_j along a tile.
ATTNPOOL_MULTIVERSION
void dot_cols(const float* coef, const float* bt, std::size_t stride, std::size_t cols,
              std::size_t t0, std::size_t len, float* out) {
  {
    const float c0 = coef[0];
    const float* b0 = bt + t0;
#pragma omp simd
    for (std::size_t t = 0; t < len; ++t) out[t] = c0 * b0[t];
  }
  for (std::size_t c = 1; c < cols; ++c) {
    const float cc = coef[c];
    const float* bc = bt + c * stride + t0;
#pragma omp simd
    for (std::size_t t = 0; t < len; ++t) out[t] = cc * bc[t] + out[t];
  }
}

// Phase 1: p = 2^(s - lse2), ds[t] = p (dp[t] - dsum) in place of dp; returns sum_t ds[t] r[t].
// A masked key has s = -inf, so p = 0 and ds = 0.
ATTNPOOL_MULTIVERSION
float ds_row_tile(const float* s, const float* r, float* dp, std::size_t len, float lse2,
                  float dsum) {
  float dh = 0.0f;
#pragma omp simd reduction(+ : dh)
  for (std::size_t t = 0; t < len; ++t) {
    const float p = detail::exp2_poly(s[t] - lse2);
    const float ds = p * (dp[t] - dsum);
    dp[t] = ds;
    dh = ds * r[t] + dh;
  }
  return dh;
}

// Phase 2: per query t of the tile, p[t] = 2^(s[t] - lse2[t]) and dp[t] -> p[t] (dp[t] - D[t]).
ATTNPOOL_MULTIVERSION
void ds_col_tile(const float* s, const float* lse2, const float* dsum, float* p, float* dp,
                 std::size_t len) {
#pragma omp simd
  for (std::size_t t = 0; t < len; ++t) {
    const float pt = detail::exp2_poly(s[t] - lse2[t]);
    p[t] = pt;
    dp[t] = pt * (dp[t] - dsum[t]);
  }
}

// sum_t w[t] (a - bt[t0 + t]) for one coordinate column: the dq / dk sums.
ATTNPOOL_MULTIVERSION
float weighted_diff_sum(const float* w, float a, const float* b, std::size_t len) {
  float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
  for (std::size_t t = 0; t < len; ++t) acc = w[t] * (a - b[t]) + acc;
  return acc;
}

// valid_length in phase 2: query t of the tile sees key j iff j < lens[t]. A select, so the loop
// stays vectorised.
ATTNPOOL_MULTIVERSION
void mask_by_length(float* s, const std::int64_t* lens, std::int64_t j, std::size_t len) {
#pragma omp simd
  for (std::size_t t = 0; t < len; ++t) s[t] = j < lens[t] ? s[t] : kNegInf;
}

}  // namespace

void detail::cpu_backward(const_view q, const_view k, const_view v, const_view dout,
                          const pool_gradients& g, const pool_params& params, unsigned threads) {
  const std::size_t n = q.rows, m = k.rows, d = q.cols, dv = v.cols;
  const detail::gaussian_log2_score score{
      static_cast<float>(-detail::gaussian_log2_scale(params.bandwidth))};
  const double inv_h2 = 1.0 / (params.bandwidth * params.bandwidth);

  // 0. Forward with the row log-sum-exps, and D_i.
  std::vector<float> out(n * dv), lse2(n), dsum(n);
  detail::cpu_pool_lse(q, k, v, mutable_view{out.data(), n, dv}, params, threads, lse2.data());
  for (std::size_t i = 0; i < n; ++i) {
    double acc = 0.0;
    for (std::size_t c = 0; c < dv; ++c)
      acc += static_cast<double>(dout(i, c)) * static_cast<double>(out[i * dv + c]);
    dsum[i] = static_cast<float>(acc);
  }

  const detail::mask_rule rule = detail::mask_rule_of(params);

  // 1. Rows: dq and the per-row share of dh.
  const bool want_dq = g.queries.data != nullptr, want_dh = g.bandwidth != nullptr;
  if (want_dq || want_dh) {
    const std::vector<float> kt = detail::pack_columns(k), vt = detail::pack_columns(v);
    std::vector<double> dh_row(n, 0.0);
    // Scratch: distances, scores, dp/ds, the dq accumulator and the row's dout.
    detail::parallel_rows(n, m * (2 * d + dv), threads, 3 * kCpuTile + d + dv,
                  [&](std::size_t i, float* buf) {
      float *r = buf, *s = r + kCpuTile, *ds = s + kCpuTile, *acc = ds + kCpuTile;
      float* di = acc + d;
      for (std::size_t c = 0; c < dv; ++c) di[c] = dout(i, c);
      std::fill(acc, acc + d, 0.0f);
      float dh = 0.0f;
      const detail::key_range rm = rule.row(i, m);
      for (std::size_t j0 = 0; j0 < rm.limit; j0 += kCpuTile) {
        const std::size_t len = std::min(kCpuTile, rm.limit - j0);
        detail::dist_tile(q.row(i), kt.data(), m, d, j0, len, r);
        score_tile(r, len, score, s);
        if (rm.skips_in(j0, len)) s[rm.skip - j0] = kNegInf;
        dot_cols(di, vt.data(), m, dv, j0, len, ds);
        dh += ds_row_tile(s, r, ds, len, lse2[i], dsum[i]);
        if (want_dq)
          for (std::size_t c = 0; c < d; ++c)
            acc[c] += weighted_diff_sum(ds, q(i, c), kt.data() + c * m + j0, len);
      }
      if (want_dq)
        for (std::size_t c = 0; c < d; ++c)
          g.queries(i, c) = static_cast<float>(-inv_h2 * static_cast<double>(acc[c]));
      dh_row[i] = dh;
    });
    if (want_dh) {
      double dh = 0.0;
      for (double x : dh_row) dh += x;
      *g.bandwidth = dh * inv_h2 / params.bandwidth;
    }
  }

  // 2. Columns: dk and dv.
  const bool want_dk = g.keys.data != nullptr, want_dv = g.values.data != nullptr;
  if (!want_dk && !want_dv) return;
  const std::vector<float> qt = detail::pack_columns(q), dt = detail::pack_columns(dout);
  // mask_rule::sees read by key, as two selects over a tile of queries: the leave-one-out
  // query, and j < valid_lens[i] on signed copies of the counts (a compare that vectorises).
  std::vector<std::int64_t> lens;
  if (rule.by_length()) lens.assign(params.valid_lens.begin(), params.valid_lens.end());
  // Scratch: distances, scores, weights, dp/ds, the dk and dv accumulators, the key's values.
  detail::parallel_rows(m, n * (2 * d + 2 * dv), threads, 4 * kCpuTile + d + 2 * dv,
                [&](std::size_t j, float* buf) {
    float *r = buf, *s = r + kCpuTile, *p = s + kCpuTile, *ds = p + kCpuTile;
    float *dk = ds + kCpuTile, *dvv = dk + d, *vj = dvv + dv;
    for (std::size_t c = 0; c < dv; ++c) vj[c] = v(j, c);
    std::fill(dk, dk + d + dv, 0.0f);
    const std::size_t skip = rule.skipped_query(j);
    for (std::size_t i0 = 0; i0 < n; i0 += kCpuTile) {
      const std::size_t len = std::min(kCpuTile, n - i0);
      detail::dist_tile(k.row(j), qt.data(), n, d, i0, len, r);
      score_tile(r, len, score, s);
      if (skip - i0 < len) s[skip - i0] = kNegInf;
      if (!lens.empty()) mask_by_length(s, lens.data() + i0, static_cast<std::int64_t>(j), len);
      dot_cols(vj, dt.data(), n, dv, i0, len, ds);
      ds_col_tile(s, lse2.data() + i0, dsum.data() + i0, p, ds, len);
      if (want_dv)
        for (std::size_t c = 0; c < dv; ++c) dvv[c] += detail::dot_tile(p, dt.data() + c * n + i0, len);
      if (want_dk)
        for (std::size_t c = 0; c < d; ++c)
          dk[c] -= weighted_diff_sum(ds, k(j, c), qt.data() + c * n + i0, len);  // sum ds (q - k)
    }
    if (want_dk)
      for (std::size_t c = 0; c < d; ++c)
        g.keys(j, c) = static_cast<float>(inv_h2 * static_cast<double>(dk[c]));
    if (want_dv)
      for (std::size_t c = 0; c < dv; ++c) g.values(j, c) = dvv[c];
  });
}

}  // namespace attnpool
