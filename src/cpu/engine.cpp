// The multi-threaded CPU engine: float32 storage, a streaming (max-rescaled) softmax over tiles of
// keys, memory O(n + m). The per-pair maths comes from detail/online_softmax.hpp, the same code
// the CUDA kernels run.
//
// Layout of the work, per query row, for each tile of kCpuTile keys:
//   1. log2 scores and their maximum
//   2. p_j = 2^(s_j - max), the tile sum and p . v
//   3. merge (max, sum, p . v) into the row's online_softmax state (the shared merge)
// For d = dv = 1 steps 1 and 2 fuse into one pass against the running maximum (fused_tile_d1),
// without a maximum per pair where the tile's key range bounds its scores (fast_tile_d1), on
// sqrt(a)-scaled centred coordinates where that form's bound holds (scaled_gaussian_log2_score),
// and with one FMA per pair in the dot form where its bound holds (fused_dot_tile_d1).
// For d >= 2, step 1 runs for a group of rows at once (score_rows, a GEMM-like register tile:
// each key block is loaded once for 4 or 8 rows; dot or direct form), and steps 2 and 3 per row.
// Keys and values are packed into blocked and column-major copies so that the inner loops run
// over contiguous keys, whatever d, dv and the caller's leading dimensions are: once per call,
// or at d >= 2 with many keys tile by tile (packs_per_tile), so that memory stays O(n + m).
//
// Vectorisation: the tile loops are plain loops with `omp simd` reductions (-fopenmp-simd, no
// OpenMP runtime), compiled three times by function multiversioning (target_clones): AVX-512,
// AVX2+FMA and baseline x86-64, chosen at load time by the CPU. No -march=native is needed.
#include "src/cpu/engine.hpp"
#include "src/cpu/tiles.hpp"
#include "src/validate/validate.hpp"

#include <attnpool/error.hpp>

#include <attnpool/detail/dims.hpp>
#include <attnpool/detail/fast_math.hpp>
#include <attnpool/detail/online_softmax.hpp>
#include <attnpool/detail/scores.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <span>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

namespace attnpool::detail {
// r[t] = sum_c (a_c - bt[c * stride + t0 + t])^2 for t in [0, len): distances of one point a to
// a tile of column-major points.
ATTNPOOL_MULTIVERSION
void dist_tile(const float* a, const float* bt, std::size_t stride, std::size_t d, std::size_t t0,
               std::size_t len, float* r) {
  {
    const float a0 = a[0];
    const float* b0 = bt + t0;
#pragma omp simd
    for (std::size_t t = 0; t < len; ++t) {
      const float diff = a0 - b0[t];
      r[t] = diff * diff;
    }
  }
  for (std::size_t c = 1; c < d; ++c) {
    const float ac = a[c];
    const float* bc = bt + c * stride + t0;
#pragma omp simd
    for (std::size_t t = 0; t < len; ++t) {
      const float diff = ac - bc[t];
      r[t] = diff * diff + r[t];
    }
  }
}

ATTNPOOL_MULTIVERSION
float dot_tile(const float* p, const float* v, std::size_t len) {
  float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
  for (std::size_t j = 0; j < len; ++j) dot = p[j] * v[j] + dot;
  return dot;
}

namespace {

// The register types of the multi-row tiles: a block of 16 floats per zmm (AVX-512), or half a
// block per ymm (AVX2). GCC lowers a 64-byte vector poorly where registers are 32 bytes (its
// selects and stores went through the stack: 17 % of the AVX-512 rate), so the narrow code
// uses the narrow type.
using wide_vec = float __attribute__((vector_size(64)));
using narrow_vec = float __attribute__((vector_size(32)));

// out[r * cols + c] = sum_j p[r][j] * v[c * ld + j] for R rows and C value columns in one pass:
// each block of p and v is loaded once for its R x C products, whose FMA chains overlap (a pass
// per row and column would wait on the FMA latency, and read a dv = 16 value tile, 64 KiB, from
// L2 for every row). Each product sums in kSumLanes lanes (key j in lane j mod 16, the tail
// zero-padded to a block), then the lanes in order: its bits are the same whatever V, R, C and
// the rows and columns computed beside it. The accumulators are vectors with constant indices
// once the loops unroll, so that GCC keeps them in registers (it keeps plain float arrays on the
// stack).
inline constexpr std::size_t kSumLanes = 16;

template <class V, int R, int C>
__attribute__((always_inline)) inline void dot_block(const float* const* p, const float* v,
                                                     std::size_t ld, std::size_t len,
                                                     std::size_t cols, float* out) {
  constexpr int L = sizeof(V) / sizeof(float), S = static_cast<int>(kSumLanes) / L;
  V acc[R][C][S] = {};
  // One block of 16 keys: p rows pr[r] + j, value columns vc + c * vld + j.
  const auto step = [&](const float* const* pr, const float* vc, std::size_t vld, std::size_t j) {
    ATTNPOOL_HOST_UNROLL(2)
    for (int t = 0; t < S; ++t) {
      V pv[R];
      ATTNPOOL_HOST_UNROLL(4)
      for (int r = 0; r < R; ++r) std::memcpy(&pv[r], pr[r] + j + t * L, sizeof(V));
      ATTNPOOL_HOST_UNROLL(4)
      for (int c = 0; c < C; ++c) {
        V vv;
        std::memcpy(&vv, vc + c * vld + j + t * L, sizeof vv);
        ATTNPOOL_HOST_UNROLL(4)
        for (int r = 0; r < R; ++r) acc[r][c][t] = pv[r] * vv + acc[r][c][t];
      }
    }
  };
  std::size_t j = 0;
  for (; j + kSumLanes <= len; j += kSumLanes) step(p, v, ld, j);
  if (j < len) {  // the tail as a zero-padded block
    float pt[R][kSumLanes] = {}, vt[C][kSumLanes] = {};
    const float* pr[R];
    for (int r = 0; r < R; ++r) {
      std::copy(p[r] + j, p[r] + len, pt[r]);
      pr[r] = pt[r];
    }
    for (int c = 0; c < C; ++c) std::copy(v + c * ld + j, v + c * ld + len, vt[c]);
    step(pr, vt[0], kSumLanes, 0);
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      float lanes[kSumLanes];
      std::memcpy(lanes, acc[r][c], sizeof lanes);
      float sum = 0.0f;
      for (std::size_t l = 0; l < kSumLanes; ++l) sum += lanes[l];
      out[r * cols + c] = sum;
    }
}

template <class V, int R>
__attribute__((always_inline)) inline void dot_rows_block(const float* const* p, const float* v,
                                                          std::size_t ld, std::size_t len,
                                                          std::size_t cols, float* out) {
  std::size_t c = 0;
  for (; c + 4 <= cols; c += 4) dot_block<V, R, 4>(p, v + c * ld, ld, len, cols, out + c);
  for (; c < cols; ++c) dot_block<V, R, 1>(p, v + c * ld, ld, len, cols, out + c);
}

// 4 x 4 products of 16 lanes are 16 of the 32 zmm registers; 2 x 4 of the 16 ymm ones.
ATTNPOOL_V4_ONLY void dot_rows_wide(const float* const* p, std::size_t rows, const float* v,
                                    std::size_t ld, std::size_t len, std::size_t cols, float* out) {
  std::size_t r = 0;
  for (; r + 4 <= rows; r += 4)
    dot_rows_block<wide_vec, 4>(p + r, v, ld, len, cols, out + r * cols);
  for (; r < rows; ++r) dot_rows_block<wide_vec, 1>(p + r, v, ld, len, cols, out + r * cols);
}

ATTNPOOL_BELOW_V4 void dot_rows_narrow(const float* const* p, std::size_t rows, const float* v,
                                       std::size_t ld, std::size_t len, std::size_t cols,
                                       float* out) {
  std::size_t r = 0;
  for (; r + 2 <= rows; r += 2)
    dot_rows_block<narrow_vec, 2>(p + r, v, ld, len, cols, out + r * cols);
  for (; r < rows; ++r) dot_rows_block<narrow_vec, 1>(p + r, v, ld, len, cols, out + r * cols);
}

// out[r][t] = sum_c coef[r][c] * b[c * stride + t0 + t] for R rows (each its own coefficient
// vector) and t < len: the R rows share each load of b, and their sums stay in registers across
// c. Every out[r][t] is coef[r][0] b[0] followed by one FMA per further c in column order, the
// operations of one row at a time.
template <class V, int R>
__attribute__((always_inline)) inline void cols_rows_block(const float* const* coef,
                                                           const float* bt, std::size_t stride,
                                                           std::size_t cols, std::size_t t0,
                                                           std::size_t len, float* const* out) {
  constexpr std::size_t L = sizeof(V) / sizeof(float);
  std::size_t t = 0;
  for (; t + L <= len; t += L) {
    V acc[R];
    V b;
    std::memcpy(&b, bt + t0 + t, sizeof b);
    ATTNPOOL_HOST_UNROLL(8)
    for (int r = 0; r < R; ++r) acc[r] = coef[r][0] * b;
    for (std::size_t c = 1; c < cols; ++c) {
      std::memcpy(&b, bt + c * stride + t0 + t, sizeof b);
      ATTNPOOL_HOST_UNROLL(8)
      for (int r = 0; r < R; ++r) acc[r] = coef[r][c] * b + acc[r];
    }
    ATTNPOOL_HOST_UNROLL(8)
    for (int r = 0; r < R; ++r) std::memcpy(out[r] + t, &acc[r], sizeof b);
  }
  for (; t < len; ++t) {  // the tail, one query at a time, the same operations
    for (int r = 0; r < R; ++r) {
      float a = coef[r][0] * bt[t0 + t];
      for (std::size_t c = 1; c < cols; ++c) a = coef[r][c] * bt[c * stride + t0 + t] + a;
      out[r][t] = a;
    }
  }
}

ATTNPOOL_V4_ONLY void dot_cols_rows_wide(const float* const* coef, std::size_t rows,
                                         const float* bt, std::size_t stride, std::size_t cols,
                                         std::size_t t0, std::size_t len, float* const* out) {
  std::size_t r = 0;
  for (; r + 8 <= rows; r += 8)
    cols_rows_block<wide_vec, 8>(coef + r, bt, stride, cols, t0, len, out + r);
  for (; r < rows; ++r) cols_rows_block<wide_vec, 1>(coef + r, bt, stride, cols, t0, len, out + r);
}

ATTNPOOL_BELOW_V4 void dot_cols_rows_narrow(const float* const* coef, std::size_t rows,
                                            const float* bt, std::size_t stride, std::size_t cols,
                                            std::size_t t0, std::size_t len, float* const* out) {
  std::size_t r = 0;
  for (; r + 4 <= rows; r += 4)
    cols_rows_block<narrow_vec, 4>(coef + r, bt, stride, cols, t0, len, out + r);
  for (; r < rows; ++r)
    cols_rows_block<narrow_vec, 1>(coef + r, bt, stride, cols, t0, len, out + r);
}

}  // namespace

void dot_cols_rows(const float* const* coef, std::size_t rows, const float* bt, std::size_t stride,
                   std::size_t cols, std::size_t t0, std::size_t len, bool wide,
                   float* const* out) {
  if (wide) {
    dot_cols_rows_wide(coef, rows, bt, stride, cols, t0, len, out);
  } else {
    dot_cols_rows_narrow(coef, rows, bt, stride, cols, t0, len, out);
  }
}

void dot_tile_rows(const float* const* p, std::size_t rows, const float* v, std::size_t ld,
                   std::size_t len, std::size_t cols, bool wide, float* out) {
  if (wide) {
    dot_rows_wide(p, rows, v, ld, len, cols, out);
  } else {
    dot_rows_narrow(p, rows, v, ld, len, cols, out);
  }
}

namespace {

// Keys in blocks of kLanes: kb[(j / kLanes) * d * kLanes + c * kLanes + j % kLanes] = k(j, c),
// the tail block zero-padded. A block's d coordinates are d * 64 contiguous bytes, so the
// distance loop streams them in order with its accumulators in registers; column-major packing
// instead puts the d columns m * 4 bytes apart, which for m a multiple of 1024 maps them onto
// the same L1 sets.
inline constexpr std::size_t kLanes = 16;
std::size_t padded_keys(std::size_t m) {
  return (m + kLanes - 1) / kLanes * kLanes;
}

// Rows [j0, j0 + len) of a in blocks at out (row j0 in lane 0), the tail block zero-padded.
void pack_blocks_into(const_view a, std::size_t j0, std::size_t len, float* out) {
  const std::size_t d = a.cols;
  for (std::size_t j = 0; j < padded_keys(len); ++j) {
    float* lane = out + (j / kLanes) * d * kLanes + j % kLanes;
    for (std::size_t c = 0; c < d; ++c) lane[c * kLanes] = j < len ? a(j0 + j, c) : 0.0f;
  }
}

std::vector<float> pack_blocks(const_view a) {
  std::vector<float> out(padded_keys(a.rows) * a.cols);
  pack_blocks_into(a, 0, a.rows, out.data());
  return out;
}

// d > 1: s[j] = log2 score of the query against keys [j0, j0 + len) from blocked keys, in one
// pass; returns max_j s[j]. j0 is a multiple of kLanes; lanes past len score -inf.
// D > 0 is the dimension at compile time: the c loop unrolls inside the vectorised lane loop, so
// each lane's distance stays in a register and the loads are whole 64-byte lines. D == 0 reads
// the run-time d (the fallback: a lane accumulator that GCC keeps in memory). Weighted (D == 0
// only): the anisotropic bandwidth, each squared difference times w[c] = 1 / h_c^2.
template <int D, bool Weighted, class Score>
ATTNPOOL_MULTIVERSION
float score_tile_blocked(const float* q, const float* kb, std::size_t d, std::size_t j0,
                         std::size_t len, Score score, const float* w, float* s) {
  static_assert(!Weighted || D == 0, "the anisotropic distance runs on the generic path only");
  const std::size_t dd = D > 0 ? static_cast<std::size_t>(D) : d;
  float mx = -std::numeric_limits<float>::infinity();
  for (std::size_t b = 0; b * kLanes < len; ++b) {
    const float* kblk = kb + (j0 / kLanes + b) * dd * kLanes;
    float* sb = s + b * kLanes;
    const std::size_t valid = std::min(kLanes, len - b * kLanes);
#pragma omp simd reduction(max : mx)
    for (std::size_t l = 0; l < kLanes; ++l) {
      float acc = 0.0f;
      if constexpr (D > 0) {
        ATTNPOOL_HOST_UNROLL(64)
        for (int c = 0; c < D; ++c) {
          const float diff = q[c] - kblk[c * kLanes + l];
          acc = diff * diff + acc;
        }
      } else if constexpr (Weighted) {
        for (std::size_t c = 0; c < dd; ++c) {
          const float diff = q[c] - kblk[c * kLanes + l];
          acc = (w[c] * diff) * diff + acc;
        }
      } else {
        for (std::size_t c = 0; c < dd; ++c) {
          const float diff = q[c] - kblk[c * kLanes + l];
          acc = diff * diff + acc;
        }
      }
      const float sj = l < valid ? score(acc) : -std::numeric_limits<float>::infinity();
      sb[l] = sj;
      mx = std::max(mx, sj);
    }
  }
  return mx;
}

// The run-time d -> compile-time D switch for the blocked score tile. The Gaussian gets every
// compiled D; the other kernels get d = 2 and 3 (the plotting cases) and the generic path, to
// keep the instantiations (x3 ISA clones each) in check. An anisotropic bandwidth (w != null)
// always takes the generic path.
template <class Score>
float score_tile_d(const float* q, const float* kb, std::size_t d, std::size_t j0,
                   std::size_t len, Score score, const float* w, float* s) {
  if (w != nullptr) return score_tile_blocked<0, true>(q, kb, d, j0, len, score, w, s);
  const auto tile = [&](auto dc) {
    return score_tile_blocked<decltype(dc)::value, false>(q, kb, d, j0, len, score, w, s);
  };
  // Exact dimensions only: the blocked tiles do not zero-pad.
  if constexpr (std::is_same_v<Score, gaussian_log2_score>) {
    return dim_buckets<0, 2, 3, 4, 8, 16, 32, 64>::dispatch_exact(d, tile);
  } else {
    return dim_buckets<0, 2, 3>::dispatch_exact(d, tile);
  }
}

// ---- The dot-product form (Gaussian kernel, compiled d) ---------------------------------------
// With a = log2(e) / (2 h^2) and the keys' mean mu (in double, once per problem), q' = q - mu and
// k' = k - mu rounded once to float:
//   s_j = -a |q' - k'_j|^2 = (2a q') . k'_j - a |k'_j|^2 - a |q'|^2,
// d FMAs per pair from blocked keys, instead of d subtractions and d FMAs.
//
// Accuracy. Unlike the direct form, whose score error is relative to the distance, the expanded
// form cancels: its absolute error does not shrink with the distance. With u = 2^-24 and
// R = |q'| + |k'_j|, to first order in u:
//   2a q'_c rounded:               u 2a |q'||k'|
//   a |k'|^2 (double, rounded):    u a |k'|^2
//   the d-term FMA chain from -a|k'|^2: d u (a |k'|^2 + 2a |q'||k'|)   (Cauchy-Schwarz)
//   subtracting a |q'|^2 (rounded): 2 u a (|q'|^2 + |s_j|) <= 2 u a R^2
//   centring q and k (rounded):    2a |q' - k'| u (|q'| + |k'|) <= 2 u a R^2
// in all |err s_j| <= E = (d + 6) u a (|q'| + Rk)^2, Rk = max_j |k'_j| over the problem's keys.
// A weight 2^(s_j - max) / sum then carries a relative error <= 2 ln2 E, and the pooled output
// sum_j w_j v_j an absolute one <= 2 ln2 E sum_j w_j |v_j|. The tests' bar (and the project's)
// is 1e-5 sum_j w_j |v_j| beside the other float roundings (~log2(m) eps32 <= 1.2e-6), so a row
// takes the dot form only when E <= 2^-19 (2 ln2 E <= 2.6e-6), else the direct form.
// At d = 1 the terms above add up to at most 4 u a R^2 (2|q'||k'| u from qs, u a (2|q'||k'| +
// k'^2) from the one FMA, u a k'^2 from nk, 2 u a R^2 from the centring, and 4|q'||k'| + 2k'^2
// <= 2 R^2), and the a |q'|^2 term is not subtracted at all (fused_dot_tile_d1 sums against the
// reference -a |q'|^2 instead, which cancels in the row's softmax): the common (d + 6) = 7 is
// kept there, conservative by 7/4. The bound also caps the scores: a R^2 <= 2^5 / (d + 6), so at
// d = 1 every |s_j + a |q'|^2| <= 2 a R^2 < 9.2 and 2^(s_j + a |q'|^2) needs no running maximum.
// The choice is made per query row, from that row and its problem's keys alone: a batched
// problem, a chunk of rows or a masked call (valid_length = m) choose exactly as one call does,
// and get the same bits.
inline constexpr double kDotFormMaxError = 0x1p-19;

// d = 1, the scaled direct form, for rows that miss the dot form's bound: k~ = sqrt(a) (k - mu)
// and q~ = sqrt(a) (q - mu), each computed in double and rounded once, score -(q~ - k~)^2: two
// instructions per pair (a subtraction and one FMS with the reference) instead of three. The
// roundings of q~ and k~ (u |q~|, u |k~|) move the difference by at most u (|q~| + |k~|), so the
// score by at most 2 u |q~ - k~| (|q~| + |k~|) <= 2 u a (|q'| + Rk)^2, beside the direct form's
// own errors relative to the score (the rounding of sqrt(a) scales every score alike). A row
// takes it where 2 u a (|q'| + Rk)^2 <= kDotFormMaxError, the dot form's bound with 2 for d + 6.
std::vector<float> tile_ranges(const float* k, std::size_t m);

// The scaled form's log2 score of r2 = (q~ - k~)^2: the scale is in the coordinates already, so
// the compiled loop has no multiply.
struct scaled_gaussian_log2_score {
  static constexpr bool kCompact = false;
  float operator()(float squared_dist) const { return -squared_dist; }
};

// One problem's keys for the dot form: centred, in blocks (pack_blocks' layout), and a |k'_j|^2.
struct dot_keys {
  bool usable = false;     // some row may take the form (it meets the bound at the keys' centre)
  std::vector<double> mu;  // the keys' mean
  std::vector<double> sc;  // per-dimension bandwidths: coordinate c is scaled by sc[c] = 1 / h_c
                           // (and a is that of h = 1); empty: isotropic
  std::vector<float> kb;   // k' in blocks of kLanes, the tail zero-padded; empty where the
                           // caller packs per tile (pack), or where the form is not usable
  std::vector<float> nk;   // a |k'_j|^2, padded like kb
  double a = 0.0;          // log2(e) / (2 h^2)
  double rk = 0.0;         // max_j |k'_j|
  std::vector<float> ks;        // d = 1: k~_j = sqrt(a) (k_j - mu); empty: no row can scale
  std::vector<float> ks_range;  // tile_ranges of ks
  double mu1 = 0.0;             // d = 1: the keys' mean

  // d = 1: q~ for a row that meets the scaled form's bound; false otherwise.
  bool prepare_scaled(float q, float& qt) const {
    if (ks.empty()) return false;
    const double qc = static_cast<double>(q) - mu1, r = std::fabs(qc) + rk;
    if (!(2.0 * 0x1p-24 * a * r * r <= kDotFormMaxError)) return false;
    qt = static_cast<float>(std::sqrt(a) * qc);
    return true;
  }

  // Key j's coordinate c (a row of the problem's keys) as the form uses it, rounded once.
  float coord(const float* kj, std::size_t c) const {
    const double centred = static_cast<double>(kj[c]) - mu[c];
    return static_cast<float>(sc.empty() ? centred : centred * sc[c]);
  }

  // Keys [j0, j0 + len) of the problem's keys k into kbo (kb's layout, key j0 in lane 0) and
  // nko, the tail block zero-padded: what kb and nk hold for them, bit for bit.
  void pack(const_view k, std::size_t j0, std::size_t len, float* kbo, float* nko) const {
    const std::size_t d = k.cols;
    for (std::size_t j = 0; j < padded_keys(len); ++j) {
      float* lane = kbo + (j / kLanes) * d * kLanes + j % kLanes;
      if (j >= len) {
        for (std::size_t c = 0; c < d; ++c) lane[c * kLanes] = 0.0f;
        nko[j] = 0.0f;
        continue;
      }
      double n2 = 0.0;
      for (std::size_t c = 0; c < d; ++c) {
        const float kc = coord(k.row(j0 + j), c);
        lane[c * kLanes] = kc;
        n2 += static_cast<double>(kc) * kc;
      }
      nko[j] = static_cast<float>(a * n2);
    }
  }

  // q' -> qs = 2a q' and cq = a |q'|^2 for a row that meets the bound; false for one that does
  // not (it takes the direct form).
  bool prepare_row(const float* q, std::size_t d, float* qs, float& cq) const {
    if (!usable) return false;
    double nq2 = 0.0;
    for (std::size_t c = 0; c < d; ++c) {
      const double centred = static_cast<double>(q[c]) - mu[c];
      const float qc = static_cast<float>(sc.empty() ? centred : centred * sc[c]);
      qs[c] = qc;
      nq2 += static_cast<double>(qc) * qc;
    }
    const double r = std::sqrt(nq2) + rk;
    if (!(static_cast<double>(d + 6) * 0x1p-24 * a * r * r <= kDotFormMaxError)) return false;
    for (std::size_t c = 0; c < d; ++c) qs[c] = static_cast<float>(2.0 * a * qs[c]);
    cq = static_cast<float>(a * nq2);
    return true;
  }
};

// The dimensions with compiled multi-row tiles (rows_tile): every d of the dot form; the direct
// form's groups have all of them but d = 1.
using row_tile_dims = dim_buckets<64, 1, 2, 3, 4, 8, 16, 32, 64>;

// Whether d has a compiled dot-form tile.
constexpr bool dot_form_dim(std::size_t d) {
  return d <= 64 && static_cast<std::size_t>(row_tile_dims::bucket(d)) == d;
}

// The dot-form keys of key rows [k0, k1) of k; not usable where no row could meet the bound:
// even a query at the centre (|q'| = 0) has E = (d + 6) u a Rk^2 > kDotFormMaxError.
// hc: per-dimension bandwidths (null: isotropic h). The anisotropic score
// -log2(e)/2 sum_c ((q_c - k_c) / h_c)^2 is the isotropic one at h = 1 of the coordinates
// (x_c - mu_c) / h_c, computed in double and rounded once, as the centred ones are: the bound
// and its derivation apply to them unchanged. whole: pack every key into kb and nk now (else
// the caller packs tile by tile with dot_keys::pack).
dot_keys make_dot_keys(const_view k, std::size_t k0, std::size_t k1, double h, const double* hc,
                       bool whole) {
  dot_keys dk;
  const std::size_t d = k.cols, m = k1 - k0;
  if (!dot_form_dim(d) || m == 0) return dk;
  dk.mu.assign(d, 0.0);
  for (std::size_t j = k0; j < k1; ++j)
    for (std::size_t c = 0; c < d; ++c) dk.mu[c] += k(j, c);
  for (double& x : dk.mu) x /= static_cast<double>(m);
  if (hc != nullptr) {
    dk.sc.resize(d);
    for (std::size_t c = 0; c < d; ++c) dk.sc[c] = 1.0 / hc[c];
  }
  dk.a = gaussian_log2_scale(hc != nullptr ? 1.0 : h);
  double rk2 = 0.0;
  for (std::size_t j = k0; j < k1; ++j) {
    double n2 = 0.0;
    for (std::size_t c = 0; c < d; ++c) {
      const auto kc = static_cast<double>(dk.coord(k.row(j), c));
      n2 += kc * kc;
    }
    rk2 = std::max(rk2, n2);
  }
  dk.rk = std::sqrt(rk2);
  if (d == 1 && hc == nullptr && 2.0 * 0x1p-24 * dk.a * rk2 <= kDotFormMaxError) {
    dk.mu1 = dk.mu[0];
    dk.ks.resize(m);
    for (std::size_t j = 0; j < m; ++j)
      dk.ks[j] = static_cast<float>(std::sqrt(dk.a) * (static_cast<double>(k(k0 + j, 0)) - dk.mu1));
    dk.ks_range = tile_ranges(dk.ks.data(), m);
  }
  if (!(static_cast<double>(d + 6) * 0x1p-24 * dk.a * rk2 <= kDotFormMaxError)) return dk;
  dk.usable = true;
  if (whole) {
    dk.kb.resize(padded_keys(m) * d);
    dk.nk.resize(padded_keys(m));
    dk.pack(rows_of(k, k0, k1), 0, m, dk.kb.data(), dk.nk.data());
  }
  return dk;
}

// What a multi-row score tile reads: R rows' coordinates qs[r] (the dot form's prepared 2a q',
// or the direct form's q), and the tile's keys in blocks (key 0 in lane 0); the dot form also
// cq[r] = a |q'|^2 and the tile's a |k'_j|^2, the direct form the score's factor -a.
struct rows_in {
  const float* const* qs;
  const float* kb;
  const float* cq = nullptr;
  const float* nk = nullptr;
  float neg_scale = 0.0f;
};

// NB key blocks of score_rows: the register tile acc[R][NB * S] of S vectors per block, every
// index a constant once the loops unroll, so that GCC keeps it in registers. Direct: the direct
// form's d subtractions and d FMAs per lane, else the dot form's d FMAs.
template <class V, int D, int R, int NB, bool Direct>
__attribute__((always_inline)) inline void rows_step(const rows_in& in, std::size_t b0, float valid,
                                                     float* s, std::size_t stride, V* vmax) {
  constexpr int L = sizeof(V) / sizeof(float), S = static_cast<int>(kLanes) / L;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const float* kblk = in.kb + b0 * D * kLanes;
  V acc[R][NB * S];
  ATTNPOOL_HOST_UNROLL(4)
  for (int t = 0; t < NB * S; ++t) {
    V n = V{};
    if constexpr (!Direct) std::memcpy(&n, in.nk + b0 * kLanes + t * L, sizeof n);
    ATTNPOOL_HOST_UNROLL(8)
    for (int r = 0; r < R; ++r) acc[r][t] = -n;
  }
  ATTNPOOL_HOST_UNROLL(64)
  for (int c = 0; c < D; ++c) {
    ATTNPOOL_HOST_UNROLL(4)
    for (int t = 0; t < NB * S; ++t) {
      V kv;  // block t / S, coordinate c, lanes (t % S) * L ..
      std::memcpy(&kv, kblk + (static_cast<std::size_t>(t / S) * D + c) * kLanes + (t % S) * L,
                  sizeof kv);
      ATTNPOOL_HOST_UNROLL(8)
      for (int r = 0; r < R; ++r) {
        if constexpr (Direct) {
          const V diff = in.qs[r][c] - kv;
          acc[r][t] = diff * diff + acc[r][t];
        } else {
          acc[r][t] = in.qs[r][c] * kv + acc[r][t];
        }
      }
    }
  }
  V lane;
  for (int l = 0; l < L; ++l) lane[l] = static_cast<float>(l);
  ATTNPOOL_HOST_UNROLL(4)
  for (int t = 0; t < NB * S; ++t) {
    const V inside = V{} + (valid - static_cast<float>(t * L));  // blocks are contiguous in s
    ATTNPOOL_HOST_UNROLL(8)
    for (int r = 0; r < R; ++r) {
      V sj;
      if constexpr (Direct) {
        sj = acc[r][t] * in.neg_scale;
      } else {
        sj = acc[r][t] - in.cq[r];
      }
      sj = lane < inside ? sj : V{} + kNegInf;
      std::memcpy(s + r * stride + t * L, &sj, sizeof sj);
      vmax[r] = vmax[r] < sj ? sj : vmax[r];
    }
  }
}

// The scores of R rows against a tile of len keys: s[r * stride + j] and mx[r] = max_j of row
// r; lanes past len score -inf. Each lane's score is one chain over c = 0..D-1 (dot form: FMAs
// from -a|k'_j|^2, then minus cq; direct form: (q_c - k_c)^2 summed by FMAs from 0, then times
// -a, as score_tile_blocked and gaussian_log2_score compute it): the same operations in the same
// order whatever V, R and B are, so a row gets the same bits alone (R = 1) as in a group, on
// either register width. The accumulators are a GEMM micro-kernel's register tile: a key vector
// loaded once serves R rows, and R * B * S independent chains cover the FMA latency (16 for
// AVX-512's 8 rows x 2 blocks, 8 for AVX2's 4 rows x 1 block of two halves; 2 FMA pipes of
// latency 4 need 8).
template <class V, int D, int R, int B, bool Direct>
__attribute__((always_inline)) inline void score_rows(const rows_in& in, std::size_t len, float* s,
                                                      std::size_t stride, float* mx) {
  V vmax[R];
  for (int r = 0; r < R; ++r) vmax[r] = V{} - std::numeric_limits<float>::infinity();
  const std::size_t blocks = (len + kLanes - 1) / kLanes;
  std::size_t b = 0;
  for (; b + B <= blocks; b += B)
    rows_step<V, D, R, B, Direct>(in, b, static_cast<float>(len - b * kLanes), s + b * kLanes,
                                  stride, vmax);
  for (; b < blocks; ++b)  // an odd last block
    rows_step<V, D, R, 1, Direct>(in, b, static_cast<float>(len - b * kLanes), s + b * kLanes,
                                  stride, vmax);
  for (int r = 0; r < R; ++r) {
    float m = -std::numeric_limits<float>::infinity();
    for (std::size_t l = 0; l < sizeof(V) / sizeof(float); ++l) m = std::max(m, vmax[r][l]);
    mx[r] = m;
  }
}

// Rows scored together by the multi-row tiles (rows_tile): at most kDotRows, the group of the
// AVX-512 code. Eight rows with two key blocks a step are 16 zmm accumulators (of 32
// registers); with AVX2's 16 ymm registers four rows and one block (two ymm) a step keep the
// tile in 8 registers.
inline constexpr int kDotRows = 8;

// Whether the code running is the AVX-512 one: the clone in use, or without clones the target
// the engine was compiled for.
bool wide_vectors() {
#if ATTNPOOL_CLONES
  static const bool wide = std::string_view(cpu_engine_clone()) == "x86-64-v4";
  return wide;
#elif defined(__AVX512F__)
  return true;
#else
  return false;
#endif
}

// Whether a call scores with the AVX-512 tiles: where that clone runs, unless
// ATTNPOOL_CPU_DOT_GROUP=4 forces the AVX2 tiles (groups of four rows of narrow vectors, single
// rows too) on any CPU, so that tests on an AVX-512 machine run their code path. Read once per
// call (packed_keys::wide), not per tile.
bool wide_tiles() {
  const char* env = std::getenv("ATTNPOOL_CPU_DOT_GROUP");
  return wide_vectors() && !(env != nullptr && std::string_view(env) == "4");
}

// The rows of a group of rows_tile: kDotRows with the AVX-512 tile, 4 with the AVX2 one.
std::size_t group_rows(bool wide) {
  return wide ? kDotRows : 4;
}

// The compiled tiles: the wide ones run only in the AVX-512 clone, the narrow ones only in the
// others (or under ATTNPOOL_CPU_DOT_GROUP=4, where an AVX-512 CPU runs the AVX2 clone). R rows,
// or one row (R = 1, two key blocks a step: its 2 or 4 FMA chains, all one row has).
template <int D, int R, bool Direct>
ATTNPOOL_V4_ONLY void score_rows_wide(const rows_in& in, std::size_t len, float* s,
                                      std::size_t stride, float* mx) {
  score_rows<wide_vec, D, R, 2, Direct>(in, len, s, stride, mx);
}
template <int D, int R, bool Direct>
ATTNPOOL_BELOW_V4 void score_rows_narrow(const rows_in& in, std::size_t len, float* s,
                                         std::size_t stride, float* mx) {
  score_rows<narrow_vec, D, R, R == 1 ? 2 : 1, Direct>(in, len, s, stride, mx);
}

// rows: 1, or group_rows(wide) (never at d = 1, whose rows take the single-row tiles).
template <int D, bool Direct>
void rows_tile_d(bool wide, int rows, const rows_in& in, std::size_t len, float* s,
                 std::size_t stride, float* mx) {
  if (D == 1 || rows == 1) {
    if (wide) return score_rows_wide<D, 1, Direct>(in, len, s, stride, mx);
    return score_rows_narrow<D, 1, Direct>(in, len, s, stride, mx);
  }
  if constexpr (D > 1) {
    if (wide) return score_rows_wide<D, kDotRows, Direct>(in, len, s, stride, mx);
    score_rows_narrow<D, 4, Direct>(in, len, s, stride, mx);
  }
}

// Whether d has a compiled multi-row direct-form tile (rows_tile's list without d = 1).
constexpr bool direct_rows_dim(std::size_t d) {
  return d != 1 && dot_form_dim(d);
}

// rows (1, or group_rows(wide)) rows against a tile of len keys: score_rows for the run-time d
// (a dot_form_dim; direct: a direct_rows_dim).
template <bool Direct>
void rows_tile(int rows, const rows_in& in, bool wide, std::size_t d, std::size_t len, float* s,
               std::size_t stride, float* mx) {
  row_tile_dims::dispatch_exact(d, [&](auto dc) {
    constexpr int D = decltype(dc)::value;
    if constexpr (!(Direct && D == 1)) rows_tile_d<D, Direct>(wide, rows, in, len, s, stride, mx);
  });
}

// What one pass over a tile returns: the largest log2 score seen, and relative to the reference
// `ref` the pass was given, sum_j 2^(s_j - ref) and sum_j 2^(s_j - ref) v_j.
struct tile_sums {
  float max, sum, dot;
};

// A tile may be exponentiated against a reference up to this far below its true maximum: each
// 2^(s - ref) is then <= 2^16, so sums of 2^16 * m terms stay far from float overflow while the
// running maximum of earlier tiles serves as the reference without a separate max pass.
inline constexpr float kRefSlack = 16.0f;

// Every pass below but fast_tile_d1 subtracts the reference from a score that was rounded to
// float first, never from an unrounded product: with -ffp-contract=fast, `scale * dist2 - ref`
// would become one FMA and the best key would get 2^(rounding error of its score) instead of
// exactly 2^0. For far keys at small bandwidths (|score| ~ 1e13, ulp ~ 1e6) that is inf or 0,
// and the result NaN.
// A stored score, or one that has a second use (the max reduction), is not contracted; the
// HugeScores test checks it.

// d = 1, dv = 1 in a single pass (the notebook's case), against the running maximum `ref`. The
// caller checks max <= ref + kRefSlack and repeats the tile with ref = max when it is not.
// Skip: key `skip` of the tile (the leave-one-out mask) scores -inf through a select, so the
// loop stays vectorised; only the one tile per row that holds the masked key runs this
// instantiation, the others run the unmasked loop unchanged.
// With a compact kernel, keys outside the support score -inf and get exp2_poly(-inf) = 0 (ref
// is the finite running maximum here); a tile with no key inside returns max = -inf, which
// passes the slack check and adds sum = 0.
template <bool Skip, class Score>
ATTNPOOL_MULTIVERSION
tile_sums fused_tile_d1(float q, const float* k, const float* v, std::size_t len, Score score,
                        float ref, std::size_t skip) {
  float mx = -std::numeric_limits<float>::infinity(), sum = 0.0f, dot = 0.0f;
#pragma omp simd reduction(max : mx) reduction(+ : sum, dot)
  for (std::size_t j = 0; j < len; ++j) {
    const float diff = q - k[j];
    float sc = score(diff * diff);
    if constexpr (Skip) sc = j == skip ? -std::numeric_limits<float>::infinity() : sc;
    mx = std::max(mx, sc);
    const float p = exp2_poly(sc - ref);
    sum += p;
    dot = p * v[j] + dot;
  }
  return {mx, sum, dot};
}

template <class Score>
tile_sums fused_tile_d1(float q, const float* k, const float* v, std::size_t len, Score score,
                        float ref, std::size_t skip) {
  return skip < len ? fused_tile_d1<true>(q, k, v, len, score, ref, skip)
                    : fused_tile_d1<false>(q, k, v, len, score, ref, skip);
}

// d = 1, dv = 1 against the running maximum `ref` when the tile cannot exceed ref + kRefSlack
// (tile_score_bound says so): no maximum per pair, and exp2_poly5 (-inf, outside a compact
// kernel's support, still weighs exactly 0).
// Here `score(r2) - ref` may contract into one FMA (the hazard described above): the best key
// then gets 2^(the product's rounding error) instead of 2^0, at most 2^(u |ref|). The caller
// takes this pass only for |ref| <= kFastRefLimit, so that factor stays within 2^(2^-4), and
// the same rounding is in every score anyway: a weight's error stays u |s_j| ln 2, as in
// fused_tile_d1.
inline constexpr float kFastRefLimit = 0x1p20f;

template <bool Skip, class Score>
ATTNPOOL_MULTIVERSION
tile_sums fast_tile_d1(float q, const float* k, const float* v, std::size_t len, Score score,
                       float ref, std::size_t skip) {
  float sum = 0.0f, dot = 0.0f;
#pragma omp simd reduction(+ : sum, dot)
  for (std::size_t j = 0; j < len; ++j) {
    const float diff = q - k[j];
    float p = exp2_poly5(score(diff * diff) - ref);
    if constexpr (Skip) p = j == skip ? 0.0f : p;
    sum += p;
    dot = p * v[j] + dot;
  }
  return {ref, sum, dot};
}

// An upper bound on the log2 scores of a tile whose keys lie in [lo, hi] (tile_ranges): the score
// of the nearest point of the interval, computed with the loop's own float operations, which are
// monotone (every kernel's score is non-increasing in r2). NaN when q is NaN.
template <class Score>
float tile_score_bound(float q, float lo, float hi, Score score) {
  const float diff = q < lo ? q - lo : (q > hi ? q - hi : 0.0f);
  return score(diff * diff);
}

// Per tile of kCpuTile keys of one column k[0, m): its smallest and largest key, for
// tile_score_bound (NaN keys are skipped here; the pass itself still propagates them).
std::vector<float> tile_ranges(const float* k, std::size_t m) {
  std::vector<float> r;
  for (std::size_t j0 = 0; j0 < m; j0 += kCpuTile) {
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    for (std::size_t j = j0; j < std::min(m, j0 + kCpuTile); ++j) {
      lo = k[j] < lo ? k[j] : lo;
      hi = k[j] > hi ? k[j] : hi;
    }
    r.push_back(lo);
    r.push_back(hi);
  }
  return r;
}

template <class Score>
tile_sums fast_tile_d1(float q, const float* k, const float* v, std::size_t len, Score score,
                       float ref, std::size_t skip) {
  return skip < len ? fast_tile_d1<true>(q, k, v, len, score, ref, skip)
                    : fast_tile_d1<false>(q, k, v, len, score, ref, skip);
}

// The dot form at d = 1, dv = 1, one pass with one FMA per pair: t_j = qs k'_j - a k'^2_j =
// s_j + a |q'|^2, summed against the reference -a |q'|^2 (the caller's), so no maximum and no
// subtraction per pair; |t_j| < 9.2 where the bound holds (see kDotFormMaxError).
template <bool Skip>
ATTNPOOL_MULTIVERSION
tile_sums fused_dot_tile_d1(float qs, const float* kb, const float* nk, const float* v,
                            std::size_t len, std::size_t skip) {
  float sum = 0.0f, dot = 0.0f;
#pragma omp simd reduction(+ : sum, dot)
  for (std::size_t j = 0; j < len; ++j) {
    float p = exp2_poly5_unchecked(qs * kb[j] - nk[j]);
    if constexpr (Skip) p = j == skip ? 0.0f : p;
    sum += p;
    dot = p * v[j] + dot;
  }
  return {0.0f, sum, dot};
}

tile_sums fused_dot_tile_d1(float qs, const float* kb, const float* nk, const float* v,
                            std::size_t len, std::size_t skip) {
  return skip < len ? fused_dot_tile_d1<true>(qs, kb, nk, v, len, skip)
                    : fused_dot_tile_d1<false>(qs, kb, nk, v, len, skip);
}

// s[j] = log2 score of the query against keys [j0, j0 + len); returns max_j s[j]. Weighted:
// the anisotropic distance, coordinate c's squared differences times w[c].
template <bool Weighted, class Score>
ATTNPOOL_MULTIVERSION
float score_tile(const float* q, const float* kt, std::size_t m, std::size_t d, std::size_t j0,
                 std::size_t len, Score score, const float* w, float* s) {
  {
    const float qc = q[0];
    const float* k0 = kt + j0;
    const float w0 = Weighted ? w[0] : 1.0f;
#pragma omp simd
    for (std::size_t j = 0; j < len; ++j) {
      const float diff = qc - k0[j];
      if constexpr (Weighted) {
        s[j] = (w0 * diff) * diff;
      } else {
        s[j] = diff * diff;
      }
    }
  }
  for (std::size_t c = 1; c < d; ++c) {
    const float qc = q[c];
    const float* kc = kt + c * m + j0;
    const float wc = Weighted ? w[c] : 1.0f;
#pragma omp simd
    for (std::size_t j = 0; j < len; ++j) {
      const float diff = qc - kc[j];
      if constexpr (Weighted) {
        s[j] = (wc * diff) * diff + s[j];
      } else {
        s[j] = diff * diff + s[j];
      }
    }
  }
  float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
  for (std::size_t j = 0; j < len; ++j) {
    const float sj = score(s[j]);
    s[j] = sj;
    mx = std::max(mx, sj);  // a value: std::max of the reference s[j] is not vectorised
  }
  return mx;
}

// Scores s[j] -> weights p[j] = 2^(s[j] - ref) in place; returns sum_j p[j]. exp2_poly5, as in the
// d = 1 tiles: one FMA fewer than exp2_poly, 2.0e-7 relative error (fast_math.hpp).
ATTNPOOL_MULTIVERSION
float exp_tile(float* s, std::size_t len, float ref) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (std::size_t j = 0; j < len; ++j) {
    s[j] = exp2_poly5(s[j] - ref);
    sum += s[j];
  }
  return sum;
}

// Scores -> {sum_j p_j, sum_j p_j v_j} with p_j = 2^(s[j] - ref), one value column.
ATTNPOOL_MULTIVERSION
tile_sums exp_dot_tile(const float* s, const float* v, std::size_t len, float ref) {
  float sum = 0.0f, dot = 0.0f;
#pragma omp simd reduction(+ : sum, dot)
  for (std::size_t j = 0; j < len; ++j) {
    const float p = exp2_poly5(s[j] - ref);
    sum += p;
    dot = p * v[j] + dot;
  }
  return {ref, sum, dot};
}

// max_j s[j] over a stored score tile, in kLanes partial maxima that GCC keeps in one vector
// (std::max_element, and an omp simd max reduction, compiled to a scalar loop in every clone).
ATTNPOOL_MULTIVERSION
float tile_max(const float* s, std::size_t len) {
  float lanes[kLanes];
  std::fill_n(lanes, kLanes, -std::numeric_limits<float>::infinity());
  std::size_t j = 0;
  for (; j + kLanes <= len; j += kLanes)
    for (std::size_t l = 0; l < kLanes; ++l) lanes[l] = lanes[l] < s[j + l] ? s[j + l] : lanes[l];
  for (; j < len; ++j) lanes[0] = lanes[0] < s[j] ? s[j] : lanes[0];
  float mx = lanes[0];
  for (std::size_t l = 1; l < kLanes; ++l) mx = mx < lanes[l] ? lanes[l] : mx;
  return mx;
}

// The leave-one-out mask on a stored score tile: s[skip] = -inf, and the tile's maximum again
// (the masked key may have been it). Runs on one tile per row, which with few keys per problem
// (a batch of n = m = 100) is the whole row: a third pass over it, hence tile_max.
float mask_one(float* s, std::size_t len, std::size_t skip) {
  s[skip] = -std::numeric_limits<float>::infinity();
  return tile_max(s, len);
}

// How a call measures distance: an isotropic bandwidth h (no weights), or for an anisotropic
// one with d >= 2 the weights w_c = 1 / h_c^2 (rounded once to float) and h = 1 in the score.
// d = 1 anisotropic is just isotropic with h = h_0, and takes the fast paths.
struct distance_setup {
  double h = 1.0;
  std::vector<float> w;        // empty: isotropic
  const double* hc = nullptr;  // the per-dimension bandwidths behind w (params.bandwidths)
  const float* weights() const { return w.empty() ? nullptr : w.data(); }
};

distance_setup make_distance(const pool_params& params) {
  const bandwidth_setup b = bandwidth_setup_of(params);
  distance_setup ds;
  ds.h = b.h;
  ds.hc = b.hc;
  ds.w.resize(b.dims);
  for (std::size_t c = 0; c < b.dims; ++c) ds.w[c] = b.weight(c);
  return ds;
}

// The empty_support::nearest policy: the visible key closest to query i under the engine's own
// distance, the lowest index on a tie. A plain loop: it runs once per empty row.
std::size_t nearest_key(const_view q, const_view k, std::size_t i, const float* w, key_range rm) {
  std::size_t best = rm.limit;
  float best_d = std::numeric_limits<float>::infinity();
  for (std::size_t j = 0; j < rm.limit; ++j) {
    if (j == rm.skip) continue;
    float acc = 0.0f;
    for (std::size_t c = 0; c < q.cols; ++c) {
      const float diff = q(i, c) - k(j, c);
      acc = (w != nullptr ? w[c] * diff : diff) * diff + acc;
    }
    if (best == rm.limit || acc < best_d) {
      best = j;
      best_d = acc;
    }
  }
  return best;
}

// Rows left with no key in a compact kernel's support, for empty_support::error: the workers
// cannot throw, so they lower this to the first such row and the caller throws afterwards.
struct empty_rows {
  std::atomic<std::size_t> first;
  explicit empty_rows(std::size_t none) : first(none) {}
  void note(std::size_t i) {
    std::size_t cur = first.load(std::memory_order_relaxed);
    while (i < cur && !first.compare_exchange_weak(cur, i, std::memory_order_relaxed)) {
    }
  }
  void throw_if_any(const char* fn, const pool_params& params, std::size_t none) const {
    const std::size_t i = first.load();
    if (i != none) throw_empty_row(fn, params, i);
  }
};

// The running state of one query row: the shared online softmax plus the dv accumulators.
struct row_state {
  online_softmax softmax;
  float* acc;

  // Folds in a tile summarised against reference `ref`; `tile_acc` holds its dv dot products.
  void add(float ref, float sum, const float* tile_acc, std::size_t dv) {
    // Against the running maximum itself (the single passes): both factors are exp2_poly(0),
    // exactly 1, so the plain sums give the merge's bits without its two exponentials.
    if (ref == softmax.max && ref != -std::numeric_limits<float>::infinity()) {
      softmax.sum += sum;
      for (std::size_t c = 0; c < dv; ++c) acc[c] += tile_acc[c];
      return;
    }
    const rescale r = softmax.merge(online_softmax{ref, sum});
    for (std::size_t c = 0; c < dv; ++c) acc[c] = acc[c] * r.self + r.other * tile_acc[c];
  }
};

// One problem's keys and values as the row loops read them. At d = 1, and at d >= 2 where the
// packed copies are small, they are packed once per call (kt or kb, vt); at d >= 2 with many
// keys, tile by tile for each chunk of rows from the caller's views k and v (kb and vt null).
struct packed_keys {
  const float* kt;  // d == 1: the keys as one column (key j at kt[j])
  const float* kb;  // d > 1: this problem's keys in blocks (pack_blocks), its key 0 in lane 0
  const float* vt;  // value column c of key j at vt[c * ld + j]
  std::size_t ld;   // column stride of vt
  std::size_t m;    // keys in the problem
  const dot_keys* dot = nullptr;  // Gaussian: the dot-form keys (may be unusable)
  const float* range = nullptr;   // d == 1: tile t's keys lie in [range[2t], range[2t + 1]]
  const_view k{}, v{};            // the problem's keys and values, for packing per tile
  bool wide = false;              // score with the AVX-512 tiles (wide_tiles)
};

// Whether a call at d >= 2 packs its keys and values per tile rather than once: where the
// copies would pass kWholePackBytes, so that the memory of a call stays that of its inputs plus
// a tile per thread (at n = m = 2^20, d = 16 whole-call copies are 72 MiB beside 136 MiB of
// inputs).
// ATTNPOOL_CPU_TILE_PACKING=1 / 0 forces either way (the tests compare the two bit for bit).
inline constexpr std::size_t kWholePackBytes = std::size_t{4} << 20;

bool packs_per_tile(std::size_t m, std::size_t d, std::size_t dv) {
  if (d < 2) return false;
  const char* env = std::getenv("ATTNPOOL_CPU_TILE_PACKING");
  if (env != nullptr && (std::string_view(env) == "0" || std::string_view(env) == "1"))
    return std::string_view(env) == "1";
  return m * (2 * d + dv) * sizeof(float) > kWholePackBytes;
}

// Floats of per-tile packing scratch at d, dv: a tile in each form's blocks, nk, the values.
std::size_t tile_scratch(std::size_t d, std::size_t dv) {
  return kCpuTile * (2 * d + 1 + dv);
}

// One call's packed copies of keys k and values v, and the packed_keys that points into them:
// d = 1 one key column and its tile ranges, d >= 2 the blocks, or nothing where the call packs
// per tile.
struct packed_call {
  std::vector<float> kt, kb, vt, kr;
  packed_keys pk;
  packed_call(const_view k, const_view v, const dot_keys& dk, bool per_tile)
      : kt(k.cols == 1 ? pack_columns(k) : std::vector<float>{}),
        kb(k.cols > 1 && !per_tile ? pack_blocks(k) : std::vector<float>{}),
        vt(per_tile ? std::vector<float>{} : pack_columns(v)),
        kr(k.cols == 1 ? tile_ranges(kt.data(), k.rows) : std::vector<float>{}),
        pk{k.cols == 1 ? kt.data() : nullptr,
           per_tile ? nullptr : kb.data(),
           vt.data(),
           k.rows,
           k.rows,
           &dk,
           kr.data(),
           k,
           v,
           wide_tiles()} {}
  packed_call(const packed_call&) = delete;
  packed_call& operator=(const packed_call&) = delete;
};

// Keys [j0, j0 + len) of a problem as stream_chunk's passes read them, key j0 first.
struct key_tile {
  const float* kb;   // the direct form's blocks
  const float* dkb;  // the dot form's blocks and a |k'_j|^2 (dot_keys' layout)
  const float* nk;
  const float* vt;  // value column c at vt[c * ld]
  std::size_t ld;
};

// The tile at j0: pointers into the call's packed copies, or (pk.kb null) packed into scratch
// (tile_scratch floats) now, only in the forms that some row of the chunk takes.
key_tile tile_at(const packed_keys& pk, std::size_t d, std::size_t dv, std::size_t j0,
                 std::size_t len, bool dot_rows, bool direct_rows, float* scratch) {
  if (pk.kb != nullptr) {
    const bool dot = pk.dot != nullptr && !pk.dot->kb.empty();
    return {pk.kb + j0 * d, dot ? pk.dot->kb.data() + j0 * d : nullptr,
            dot ? pk.dot->nk.data() + j0 : nullptr, pk.vt + j0, pk.ld};
  }
  key_tile t{scratch, scratch + kCpuTile * d, scratch + 2 * kCpuTile * d,
             scratch + (2 * d + 1) * kCpuTile, kCpuTile};
  if (direct_rows) pack_blocks_into(pk.k, j0, len, scratch);
  if (dot_rows) pk.dot->pack(pk.k, j0, len, scratch + kCpuTile * d, scratch + 2 * kCpuTile * d);
  float* vt = scratch + (2 * d + 1) * kCpuTile;
  for (std::size_t j = 0; j < len; ++j)
    for (std::size_t c = 0; c < dv; ++c) vt[c * kCpuTile + j] = pk.v(j0 + j, c);
  return t;
}

// A tile of stored log2 scores s[0, len) with maximum ref: masks the leave-one-out key `skip` of
// the tile if any (ref becomes the maximum of the others); false where the tile then adds nothing
// to its row.
template <class Score>
bool tile_counts(float* s, std::size_t len, float& ref, std::size_t skip) {
  if (skip < len) {
    ref = mask_one(s, len, skip);
    // A one-key tile holding only the masked key adds nothing (and -inf - -inf is NaN).
    if (ref == -std::numeric_limits<float>::infinity()) return false;
  }
  // Likewise a tile with no key in a compact kernel's support. (Only there: for the other
  // kernels a -inf maximum means NaN inputs, which must stay NaN.)
  if constexpr (Score::kCompact) {
    if (ref == -std::numeric_limits<float>::infinity()) return false;
  }
  return true;
}

// Folds a tile of stored log2 scores s[0, len) with maximum ref into the row: the mask
// (tile_counts), then the exponentials and the value sums (value column c of the tile's key j at
// vt[c * ld + j]).
template <class Score>
void fold_scored_tile(row_state& row, float* s, std::size_t len, float ref, std::size_t skip,
                      const float* vt, std::size_t ld, std::size_t dv, float* tile_acc) {
  if (!tile_counts<Score>(s, len, ref, skip)) return;
  if (dv == 1) {
    const tile_sums t = exp_dot_tile(s, vt, len, ref);
    row.add(ref, t.sum, &t.dot, 1);
  } else {
    const float sum = exp_tile(s, len, ref);
    const float* p = s;
    // The narrow tile on every CPU: one row's four columns are eight ymm FMA chains there and four
    // zmm ones in the wide tile, which then wait on the FMA latency (the wide tile was no faster:
    // n = m = 4096, d = 1, dv = 16, one thread on the 2-core EPYC, 18.5 against 17.8 ms).
    dot_tile_rows(&p, 1, vt, ld, len, dv, false, tile_acc);
    row.add(ref, sum, tile_acc, dv);
  }
}

// Streams query row `qi` (d = 1) over the keys rm leaves visible in `pk`: the row's online
// softmax state is returned, its dv accumulators (relative to state.max) are left in
// acc = buf + kCpuTile. buf holds kCpuTile + 2 * dv floats (the per-thread scratch of
// parallel_rows). The same code, key order and tile boundaries for pool(), pool_batched() and
// pool_partial(); d >= 2 streams chunks of rows (stream_chunk).
template <class Score>
online_softmax stream_row(const float* qi, const packed_keys& pk, std::size_t dv, key_range rm,
                          Score score, const float* w, float* buf) {
  float* s = buf;
  row_state row{online_softmax{}, s + kCpuTile};
  float* tile_acc = row.acc + dv;
  std::fill(row.acc, row.acc + dv, 0.0f);
  float qs = 0.0f, cq = 0.0f;
  const bool dot = pk.dot != nullptr && pk.dot->prepare_row(qi, 1, &qs, cq);
  if constexpr (std::is_same_v<Score, gaussian_log2_score>) {
    float qt = 0.0f;
    if (!dot && pk.dot != nullptr && pk.dot->prepare_scaled(qi[0], qt)) {
      packed_keys scaled = pk;
      scaled.kt = pk.dot->ks.data();
      scaled.range = pk.dot->ks_range.data();
      scaled.dot = nullptr;
      return stream_row(&qt, scaled, dv, rm, scaled_gaussian_log2_score{}, w, buf);
    }
  }
  // valid_length shortens the row (no work on masked keys at all); leave_one_out masks one
  // key of one tile. check_mask guaranteed that every row keeps at least one key.
  for (std::size_t j0 = 0; j0 < rm.limit; j0 += kCpuTile) {
    const std::size_t len = std::min(kCpuTile, rm.limit - j0);
    const std::size_t skip = rm.skip - j0;  // wraps to a huge value below j0: no key skipped
    const float* vp = pk.vt + j0;
    if (dv == 1 && dot) {
      const tile_sums t =
          fused_dot_tile_d1(qs, pk.dot->kb.data() + j0, pk.dot->nk.data() + j0, vp, len, skip);
      row.add(-cq, t.sum, &t.dot, 1);
      continue;
    }
    if (dv == 1 && row.softmax.max != -std::numeric_limits<float>::infinity()) {
      float ref = row.softmax.max;
      // No key of the tile can pass ref + kRefSlack: one pass without a maximum.
      const float* r = pk.range + 2 * (j0 / kCpuTile);
      if (ref >= -kFastRefLimit && tile_score_bound(qi[0], r[0], r[1], score) <= ref + kRefSlack) {
        const tile_sums t = fast_tile_d1(qi[0], pk.kt + j0, vp, len, score, ref, skip);
        row.add(ref, t.sum, &t.dot, 1);
        continue;
      }
      // Single pass against the running maximum; repeat the tile against its own maximum when
      // that exceeds the reference by more than the slack (a much closer key turned up).
      tile_sums t = fused_tile_d1(qi[0], pk.kt + j0, vp, len, score, ref, skip);
      if (!(t.max <= ref + kRefSlack)) {
        ref = t.max;
        t = fused_tile_d1(qi[0], pk.kt + j0, vp, len, score, ref, skip);
      }
      row.add(ref, t.sum, &t.dot, 1);
      continue;
    }
    // Two passes: exact tile maximum first (always so for the first tile of a row).
    float ref = 0.0f;
    if (dot) {
      const float* qp = &qs;
      const rows_in in{&qp, pk.dot->kb.data() + j0, &cq, pk.dot->nk.data() + j0};
      rows_tile<false>(1, in, pk.wide, 1, len, s, 0, &ref);
    } else {
      ref = score_tile<false>(qi, pk.kt, pk.m, 1, j0, len, score, w, s);
    }
    fold_scored_tile<Score>(row, s, len, ref, skip, vp, pk.ld, dv, tile_acc);
  }
  return row.softmax;
}

// A chunk of query rows [i0, i1) of one problem at d >= 2, tile by tile, so that a tile's keys
// are fetched from memory (and, with per-tile packing, packed) once for the chunk rather than
// once per row (at m = 2^20, d = 16 the per-row order streamed the 64 MiB of keys from DRAM for
// every row). Rows are scored a group at a time (rows_tile, the key blocks read once for the
// group), the dot form's and the direct form's apart; direct-form rows without a compiled group
// tile (other kernels, anisotropic bandwidths, other d) one at a time (score_tile_d). Each row's
// tiles are then folded one by one in key order, the value sums of a group's rows that see the
// whole tile in one pass (dot_tile_rows). A row's score lanes and value sums are the same
// operations whatever its group (score_rows, dot_tile_rows), so every row gets the bits it gets
// alone: the chunking, the thread count, batching and the packing change no result. keys(i) is
// row i's key_range; done(i, state, acc) receives each finished row (acc: its dv accumulators).
// buf holds chunk_scratch(i1 - i0, d, dv, per_tile) floats.
inline constexpr std::size_t kMaxChunk = 512;

std::size_t chunk_scratch(std::size_t rows, std::size_t d, std::size_t dv, bool per_tile) {
  return kDotRows * kCpuTile + rows * dv + kDotRows * dv + (per_tile ? tile_scratch(d, dv) : 0);
}

template <class Score, class Keys, class Done>
void stream_chunk(const_view q, std::size_t i0, std::size_t i1, const packed_keys& pk,
                  std::size_t dv, Score score, const float* w, Keys keys, Done done, float* buf) {
  const std::size_t d = q.cols, count = i1 - i0;
  const dot_keys* dk = pk.dot != nullptr && pk.dot->usable ? pk.dot : nullptr;
  float qs[kMaxChunk][64];
  float cq[kMaxChunk];
  std::size_t dot_rows[kMaxChunk], direct_rows[kMaxChunk];  // chunk-relative
  std::size_t dots = 0, directs = 0, limit = 0;
  key_range rm[kMaxChunk];
  for (std::size_t r = 0; r < count; ++r) {
    rm[r] = keys(i0 + r);
    limit = std::max(limit, rm[r].limit);
    if (dk != nullptr && dk->prepare_row(q.row(i0 + r), d, qs[dots], cq[dots])) {
      dot_rows[dots++] = r;
    } else {
      direct_rows[directs++] = r;
    }
  }
  float* s = buf;
  float* acc = buf + kDotRows * kCpuTile;  // row r's dv accumulators at acc + r * dv
  float* tile_acc = acc + count * dv;      // kDotRows * dv: a group's value sums
  float* packing = tile_acc + kDotRows * dv;
  std::fill(acc, acc + count * dv, 0.0f);
  row_state state[kMaxChunk];
  for (std::size_t r = 0; r < count; ++r) state[r] = row_state{online_softmax{}, acc + r * dv};
  const std::size_t group = group_rows(pk.wide);
  // The direct form's rows in groups too where its multi-row tile is compiled: the isotropic
  // Gaussian at a direct_rows_dim.
  constexpr bool kGaussian = std::is_same_v<Score, gaussian_log2_score>;
  const bool direct_groups = kGaussian && w == nullptr && direct_rows_dim(d);
  for (std::size_t j0 = 0; j0 < limit; j0 += kCpuTile) {
    const std::size_t len = std::min(kCpuTile, limit - j0);
    const key_tile t = tile_at(pk, d, dv, j0, len, dots > 0, directs > 0, packing);
    // Row r's tile, scored into sr (len keys, maximum mx), folded over the keys r sees.
    const auto fold = [&](std::size_t r, float* sr, float mx) {
      const key_range& kr = rm[r];
      if (j0 >= kr.limit) return;
      const std::size_t len_r = std::min(kCpuTile, kr.limit - j0);
      if (len_r < len) mx = tile_max(sr, len_r);  // a shorter valid_length
      fold_scored_tile<Score>(state[r], sr, len_r, mx, kr.skip - j0, t.vt, t.ld, dv, tile_acc);
    };
    // A group's tiles (row rows[r] in sg + r * kCpuTile) folded like fold's, with dv > 1 the value
    // sums of the rows that see the whole tile in one dot_tile_rows pass.
    const auto fold_group = [&](const std::size_t* rows, std::size_t n_rows, float* sg,
                                const float* mx) {
      const float* p[kDotRows];
      std::size_t joined[kDotRows];
      float ref[kDotRows], sum[kDotRows];
      std::size_t n_joined = 0;
      for (std::size_t r = 0; r < n_rows; ++r) {
        const key_range& kr = rm[rows[r]];
        float* sr = sg + r * kCpuTile;
        if (dv == 1 || j0 + len > kr.limit) {
          fold(rows[r], sr, mx[r]);
          continue;
        }
        ref[n_joined] = mx[r];
        if (!tile_counts<Score>(sr, len, ref[n_joined], kr.skip - j0)) continue;
        sum[n_joined] = exp_tile(sr, len, ref[n_joined]);
        p[n_joined] = sr;
        joined[n_joined++] = rows[r];
      }
      dot_tile_rows(p, n_joined, t.vt, t.ld, len, dv, pk.wide, tile_acc);
      for (std::size_t r = 0; r < n_joined; ++r)
        state[joined[r]].add(ref[r], sum[r], tile_acc + r * dv, dv);
    };
    for (std::size_t g = 0; g < dots; g += group) {
      // A short last group repeats its last row (scored, not folded).
      const float* gq[kDotRows];
      float gc[kDotRows], mx[kDotRows];
      for (std::size_t r = 0; r < group; ++r) {
        const std::size_t src = std::min(g + r, dots - 1);
        gq[r] = qs[src];
        gc[r] = cq[src];
      }
      rows_tile<false>(dots - g == 1 ? 1 : static_cast<int>(group), {gq, t.dkb, gc, t.nk}, pk.wide,
                       d, len, s, kCpuTile, mx);
      fold_group(dot_rows + g, std::min(group, dots - g), s, mx);
    }
    if constexpr (kGaussian) {
      for (std::size_t g = 0; direct_groups && g < directs; g += group) {
        const float* gq[kDotRows];
        float mx[kDotRows];
        for (std::size_t r = 0; r < group; ++r)
          gq[r] = q.row(i0 + direct_rows[std::min(g + r, directs - 1)]);
        rows_in in{gq, t.kb};
        in.neg_scale = score.neg_scale;
        rows_tile<true>(directs - g == 1 ? 1 : static_cast<int>(group), in, pk.wide, d, len, s,
                        kCpuTile, mx);
        fold_group(direct_rows + g, std::min(group, directs - g), s, mx);
      }
    }
    for (std::size_t e = 0; !direct_groups && e < directs; ++e) {
      const std::size_t r = direct_rows[e];
      if (j0 >= rm[r].limit) continue;
      const std::size_t len_r = std::min(kCpuTile, rm[r].limit - j0);
      fold(r, s, score_tile_d(q.row(i0 + r), t.kb, d, 0, len_r, score, w, s));
    }
  }
  for (std::size_t r = 0; r < count; ++r) done(i0 + r, state[r].softmax, acc + r * dv);
}

// Rows a thread takes at a time at d >= 2: kRowChunk, or 32 where the keys come from further
// away: at d >= 32 a tile (128 KiB and more) no longer stays in L1, and keys beyond 1 MiB (half
// the 2 MiB L2 of the 2-core Xeon) come from L3 or DRAM once per chunk. Measured there, one
// thread: m = 2^20, d = 16 (n = 256): 32 rows 503 / 362 ms (direct / dot form) against 8 rows
// 654 / 492; n = m = 16384, d = 16 dot form: 8 rows 126 ms, 32 rows 137.
// Packing per tile costs a tile's packing per chunk, so those chunks are kMaxChunk rows where n
// leaves every worker two of them: n = 512, one thread, 32 / 64 / 128 rows against the
// whole-call packing: m = 65536, d = 64: 199 / 121 / 112 ms against 85; m = 2^20, d = 2:
// 473 / 256 / 235 ms against 247 (the same Xeon). kMaxChunk 512 rather than 128: n = m = 16384,
// d = 64 (packed per tile), one thread on the 2-core EPYC: 405-416 ms against 561-564 ms, the
// packing 7 % of the time instead of 27 %.
std::size_t chunk_rows(std::size_t m, std::size_t d, bool per_tile, std::size_t n,
                       unsigned threads) {
  if (per_tile) {
    const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    const std::size_t workers = std::min(threads == 0 ? hw : threads, hw);
    return std::clamp<std::size_t>(n / (2 * workers), 32, kMaxChunk);
  }
  return d >= 32 || m * d * sizeof(float) > (std::size_t{1} << 20) ? 32 : kRowChunk;
}

// Turns a streamed row into output row i, applying the empty-support policy to a
// compact kernel's empty row. k and v are the row's problem's keys and values (for nearest).
template <class Score>
void finish_row(const online_softmax& sm, const float* acc, const_view q, std::size_t i,
                const_view k, const_view v, key_range rm, const pool_params& params,
                const float* w, mutable_view out, empty_rows& empties) {
  const std::size_t dv = v.cols;
  if (Score::kCompact && sm.empty()) {  // no key in the support: the policy decides
    if (params.empty == empty_support::nearest) {
      const std::size_t j = nearest_key(q, k, i, w, rm);
      for (std::size_t c = 0; c < dv; ++c) out(i, c) = v(j, c);
    } else {
      if (params.empty == empty_support::error) empties.note(i);
      for (std::size_t c = 0; c < dv; ++c) out(i, c) = std::numeric_limits<float>::quiet_NaN();
    }
    return;
  }
  const float inv = sm.inv_sum();
  for (std::size_t c = 0; c < dv; ++c) out(i, c) = acc[c] * inv;
}

// The dot-form keys of key rows [k0, k1) for a call: only the Gaussian kernel takes the form
// (isotropic, or per-dimension bandwidths on scaled coordinates). ATTNPOOL_CPU_DOT_FORM=0 turns
// it off (the direct form everywhere), for benchmarks that compare the two in one run and for
// bisecting a numerical question.
dot_keys dot_keys_for(const pool_params& params, const distance_setup& ds, const_view k,
                      std::size_t k0, std::size_t k1, bool whole) {
  if (params.kernel != kernel::gaussian) return {};
  const char* env = std::getenv("ATTNPOOL_CPU_DOT_FORM");
  if (env != nullptr && std::string_view(env) == "0") return {};
  dot_keys dk = make_dot_keys(k, k0, k1, ds.h, ds.weights() != nullptr ? ds.hc : nullptr, whole);
  return dk;
}

template <class Score>
void cpu_pool_impl(const_view q, const_view k, const_view v, mutable_view out,
                   const pool_params& params, unsigned threads, Score score, const float* w,
                   const dot_keys& dk, bool per_tile) {
  const std::size_t n = q.rows, m = k.rows, d = q.cols, dv = v.cols;
  empty_rows empties(n);
  const packed_call packs(k, v, dk, per_tile);
  const packed_keys& pk = packs.pk;
  const auto keys = [&](std::size_t i) { return mask_rule_of(params).row(i, m); };
  if (d >= 2) {
    const std::size_t chunk = chunk_rows(m, d, per_tile, n, threads);
    parallel_row_chunks(n, chunk, m * (d + dv), threads, chunk_scratch(chunk, d, dv, per_tile),
                        [&](std::size_t i0, std::size_t i1, float* buf) {
                          stream_chunk(
                              q, i0, i1, pk, dv, score, w, keys,
                              [&](std::size_t i, const online_softmax& sm, const float* acc) {
                                finish_row<Score>(sm, acc, q, i, k, v, keys(i), params, w, out,
                                                  empties);
                              },
                              buf);
                        });
    empties.throw_if_any("pool", params, n);
    return;
  }
  // Scratch per thread: one tile of squared distances / weights, the row's accumulator and the
  // tile's.
  parallel_rows(n, m * (d + dv), threads, kCpuTile + 2 * dv, [&](std::size_t i, float* buf) {
    const key_range rm = keys(i);
    const online_softmax sm = stream_row(q.row(i), pk, dv, rm, score, w, buf);
    finish_row<Score>(sm, buf + kCpuTile, q, i, k, v, rm, params, w, out, empties);
  });
  empties.throw_if_any("pool", params, n);
}

// Keys of several problems in blocks, each problem starting on a block boundary: problem b's
// blocks start at block first_block[b].
std::vector<float> pack_blocks_segmented(const_view a, std::span<const std::size_t> offsets,
                                         std::vector<std::size_t>& first_block) {
  const std::size_t problems = offsets.size() - 1;
  first_block.assign(problems + 1, 0);
  for (std::size_t b = 0; b < problems; ++b)
    first_block[b + 1] = first_block[b] + (offsets[b + 1] - offsets[b] + kLanes - 1) / kLanes;
  std::vector<float> out(first_block[problems] * a.cols * kLanes);
  for (std::size_t b = 0; b < problems; ++b)
    pack_blocks_into(a, offsets[b], offsets[b + 1] - offsets[b],
                     out.data() + first_block[b] * a.cols * kLanes);
  return out;
}

// The keys row i (of the batch) sees in its problem, whose rows start at q0 and which has mb
// keys: the one-call rule of mask_rule, on the problem's own rows (valid_lens covers the batch).
key_range batch_row_keys(const pool_params& params, std::size_t i, std::size_t q0, std::size_t mb) {
  const bool by_length = params.mask == mask::valid_length;
  const mask_rule rule{params.mask, by_length ? params.valid_lens.data() + q0 : nullptr};
  return rule.row(i - q0, mb);
}

// The keys row i sees in a shard of m keys whose key 0 is global key key_offset: valid_lens
// counts the shard's own keys (0: none), leave_one_out skips global key i where the shard has it.
key_range shard_row_keys(const pool_params& params, std::size_t i, std::size_t m,
                         std::size_t key_offset) {
  key_range r = mask_rule_of(params).row(i, m);
  if (r.skip != kNoKey)
    r.skip = r.skip >= key_offset && r.skip - key_offset < m ? r.skip - key_offset : kNoKey;
  return r;
}

template <class Score>
void cpu_pool_batched_impl(const_view q, const_view k, const_view v, mutable_view out,
                           std::span<const std::size_t> qoff, std::span<const std::size_t> koff,
                           const pool_params& params, unsigned threads, Score score, const float* w,
                           const std::vector<dot_keys>& dks, bool per_tile) {
  const std::size_t n = q.rows, m = k.rows, d = q.cols, dv = v.cols;
  const std::size_t problems = qoff.size() - 1;
  std::vector<std::size_t> first_block;
  const std::vector<float> kt = d == 1 ? pack_columns(k) : std::vector<float>{};
  const std::vector<float> kb =
      d > 1 && !per_tile ? pack_blocks_segmented(k, koff, first_block) : std::vector<float>{};
  const std::vector<float> vt = per_tile ? std::vector<float>{} : pack_columns(v);
  // d = 1: each problem's tile ranges, problem b's from entry first_range[b].
  std::vector<float> kr;
  std::vector<std::size_t> first_range(problems, 0);
  if (d == 1) {
    for (std::size_t b = 0; b < problems; ++b) {
      first_range[b] = kr.size();
      const std::vector<float> rb = tile_ranges(kt.data() + koff[b], koff[b + 1] - koff[b]);
      kr.insert(kr.end(), rb.begin(), rb.end());
    }
  }
  std::size_t pairs = 0, largest = 0;
  for (std::size_t b = 0; b < problems; ++b) {
    pairs += (qoff[b + 1] - qoff[b]) * (koff[b + 1] - koff[b]);
    largest = std::max(largest, koff[b + 1] - koff[b]);
  }
  // The problem of row i: the last b with qoff[b] <= i (problems without queries are skipped
  // by upper_bound, since their qoff[b] == qoff[b + 1]).
  const auto problem_of = [&](std::size_t i) {
    return static_cast<std::size_t>(std::upper_bound(qoff.begin(), qoff.end(), i) - qoff.begin() -
                                    1);
  };
  const bool wide = wide_tiles();
  const auto problem_keys = [&](std::size_t b) {
    const std::size_t k0 = koff[b], mb = koff[b + 1] - k0;
    return packed_keys{d == 1 ? kt.data() + k0 : nullptr,
                       d > 1 && !per_tile ? kb.data() + first_block[b] * d * kLanes : nullptr,
                       per_tile ? nullptr : vt.data() + k0,
                       m,
                       mb,
                       &dks[b],
                       d == 1 ? kr.data() + first_range[b] : nullptr,
                       rows_of(k, k0, k0 + mb),
                       rows_of(v, k0, k0 + mb),
                       wide};
  };
  empty_rows empties(n);
  const auto finish = [&](std::size_t b, std::size_t i, const online_softmax& sm, const float* acc,
                          key_range rm) {
    const std::size_t k0 = koff[b], mb = koff[b + 1] - k0;
    finish_row<Score>(sm, acc, q, i, rows_of(k, k0, k0 + mb), rows_of(v, k0, k0 + mb), rm, params,
                      w, out, empties);
  };
  if (d >= 2) {
    // A chunk of rows may span problems: each problem's part is streamed on its own keys.
    const std::size_t chunk = chunk_rows(largest, d, per_tile, n, threads);
    parallel_row_chunks(
        n, chunk, pairs / n * (d + dv), threads, chunk_scratch(chunk, d, dv, per_tile),
        [&](std::size_t i0, std::size_t i1, float* buf) {
          for (std::size_t a = i0; a < i1;) {
            const std::size_t b = problem_of(a), e = std::min(i1, qoff[b + 1]);
            const std::size_t mb = koff[b + 1] - koff[b];
            const auto keys = [&](std::size_t i) { return batch_row_keys(params, i, qoff[b], mb); };
            stream_chunk(
                q, a, e, problem_keys(b), dv, score, w, keys,
                [&](std::size_t i, const online_softmax& sm, const float* acc) {
                  finish(b, i, sm, acc, keys(i));
                },
                buf);
            a = e;
          }
        });
  } else {
    parallel_rows(
        n, pairs / n * (d + dv), threads, kCpuTile + 2 * dv, [&](std::size_t i, float* buf) {
          const std::size_t b = problem_of(i);
          const key_range rm = batch_row_keys(params, i, qoff[b], koff[b + 1] - koff[b]);
          const online_softmax sm = stream_row(q.row(i), problem_keys(b), dv, rm, score, w, buf);
          finish(b, i, sm, buf + kCpuTile, rm);
        });
  }
  const std::size_t i = empties.first.load();
  if (i != n) throw_empty_row("pool_batched", params, i, {qoff});
}

template <class Score>
void cpu_pool_partial_impl(const_view q, const_view k, const_view v, const mutable_partials& out,
                           const pool_params& params, std::size_t key_offset, unsigned threads,
                           Score score, const float* w, const dot_keys& dk, bool per_tile) {
  const std::size_t n = q.rows, m = k.rows, d = q.cols, dv = v.cols;
  const packed_call packs(k, v, dk, per_tile);
  const packed_keys& pk = packs.pk;
  const auto keys = [&](std::size_t i) { return shard_row_keys(params, i, m, key_offset); };
  // A row that sees none of the shard's keys gets the merge's identity. Streamed, a lone
  // skipped key would leave a finite reference with sum 0 instead, which a merge onto the
  // largest reference would let swamp the other shards' states.
  const auto sees_none = [](const key_range& rm) {
    return rm.limit == 0 || (rm.limit == 1 && rm.skip == 0);
  };
  const auto store = [&](std::size_t i, const online_softmax& sm, const float* acc) {
    if (sees_none(keys(i))) {
      out.max[i * out.state_step] = -std::numeric_limits<float>::infinity();
      out.sum[i * out.state_step] = 0.0f;
      std::fill_n(out.acc.row(i), dv, 0.0f);
      return;
    }
    out.max[i * out.state_step] = sm.max;
    out.sum[i * out.state_step] = sm.sum;
    std::copy(acc, acc + dv, out.acc.row(i));
  };
  if (d >= 2) {
    const std::size_t chunk = chunk_rows(m, d, per_tile, n, threads);
    parallel_row_chunks(n, chunk, m * (d + dv), threads, chunk_scratch(chunk, d, dv, per_tile),
                        [&](std::size_t i0, std::size_t i1, float* buf) {
                          stream_chunk(q, i0, i1, pk, dv, score, w, keys, store, buf);
                        });
    return;
  }
  parallel_rows(n, m * (d + dv), threads, kCpuTile + 2 * dv, [&](std::size_t i, float* buf) {
    const key_range rm = keys(i);
    if (sees_none(rm)) return store(i, online_softmax{}, buf);
    const online_softmax sm = stream_row(q.row(i), pk, dv, rm, score, w, buf);
    store(i, sm, buf + kCpuTile);
  });
}

}  // namespace

bool cpu_wide_tiles() {
  return wide_tiles();
}

void cpu_pool(const_view q, const_view k, const_view v, mutable_view out,
              const pool_params& params, unsigned threads) {
  if (q.rows == 0) return;
  const distance_setup ds = make_distance(params);
  const bool per_tile = packs_per_tile(k.rows, k.cols, v.cols);
  const dot_keys dk = dot_keys_for(params, ds, k, 0, k.rows, !per_tile);
  with_kernel_score(params.kernel, ds.h, [&](auto score) {
    cpu_pool_impl(q, k, v, out, params, threads, score, ds.weights(), dk, per_tile);
  });
}

}  // namespace attnpool::detail

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(ATTNPOOL_NO_MULTIVERSIONING)
// The clone in use, found from inside one: a probe cloned by ATTNPOOL_MULTIVERSION (so the loader
// resolves it with the very test it applies to the engine's loops) returns its own address, and
// the clone whose code holds that address is the one running. (Function multiversioning with
// target("arch=x86-64-v3") bodies would not do: its resolver tests __builtin_cpu_is, the CPU
// model, and picks "default" on an AVX2 EPYC.)
extern "C" {
ATTNPOOL_MULTIVERSION __attribute__((noinline, used)) std::uintptr_t attnpool_cpu_clone_probe() {
  std::uintptr_t pc;
  asm volatile("lea 0(%%rip), %0" : "=r"(pc));
  return pc;
}
extern const char attnpool_probe_v4[] __asm__("attnpool_cpu_clone_probe.arch_x86_64_v4");
extern const char attnpool_probe_v3[] __asm__("attnpool_cpu_clone_probe.arch_x86_64_v3");
extern const char attnpool_probe_default[] __asm__("attnpool_cpu_clone_probe.default");
}

namespace attnpool::detail {
const char* cpu_engine_clone() {
  const std::uintptr_t pc = attnpool_cpu_clone_probe();
  const std::uintptr_t starts[3] = {reinterpret_cast<std::uintptr_t>(attnpool_probe_v4),
                                    reinterpret_cast<std::uintptr_t>(attnpool_probe_v3),
                                    reinterpret_cast<std::uintptr_t>(attnpool_probe_default)};
  const char* names[3] = {"x86-64-v4", "x86-64-v3", "default"};
  int best = -1;
  for (int c = 0; c < 3; ++c)
    if (starts[c] <= pc && (best < 0 || starts[c] > starts[best])) best = c;
  return best < 0 ? "unknown" : names[best];
}
}  // namespace attnpool::detail
#else
namespace attnpool::detail {
const char* cpu_engine_clone() { return "none"; }
}  // namespace attnpool::detail
#endif

namespace attnpool::detail {

std::size_t cpu_dot_form_rows(const_view q, const_view k, const pool_params& params) {
  const dot_keys dk = dot_keys_for(params, make_distance(params), k, 0, k.rows, false);
  float qs[64];
  float cq = 0.0f;
  std::size_t rows = 0;
  for (std::size_t i = 0; i < q.rows; ++i) rows += dk.prepare_row(q.row(i), q.cols, qs, cq) ? 1 : 0;
  return rows;
}

std::size_t cpu_scaled_form_rows(const_view q, const_view k, const pool_params& params) {
  const dot_keys dk = dot_keys_for(params, make_distance(params), k, 0, k.rows, false);
  float qs[64];
  float cq = 0.0f, qt = 0.0f;
  std::size_t rows = 0;
  for (std::size_t i = 0; i < q.rows; ++i) {
    if (q.cols == 1 && !dk.prepare_row(q.row(i), 1, qs, cq) && dk.prepare_scaled(q(i, 0), qt))
      ++rows;
  }
  return rows;
}

void cpu_pool_batched(const_view q, const_view k, const_view v, mutable_view out,
                      std::span<const std::size_t> query_offsets,
                      std::span<const std::size_t> key_offsets, const pool_params& params,
                      unsigned threads) {
  if (q.rows == 0) return;
  const distance_setup ds = make_distance(params);
  const bool per_tile = packs_per_tile(k.rows, k.cols, v.cols);
  // Each problem its own centre and bound: the same as its separate pool call.
  std::vector<dot_keys> dks(query_offsets.size() - 1);
  for (std::size_t b = 0; b + 1 < query_offsets.size(); ++b)
    dks[b] = dot_keys_for(params, ds, k, key_offsets[b], key_offsets[b + 1], !per_tile);
  with_kernel_score(params.kernel, ds.h, [&](auto score) {
    cpu_pool_batched_impl(q, k, v, out, query_offsets, key_offsets, params, threads, score,
                          ds.weights(), dks, per_tile);
  });
}

void cpu_pool_partial(const_view q, const_view k, const_view v, const mutable_partials& out,
                      const pool_params& params, std::size_t key_offset, unsigned threads) {
  if (q.rows == 0) return;
  const distance_setup ds = make_distance(params);
  const bool per_tile = packs_per_tile(k.rows, k.cols, v.cols);
  const dot_keys dk = dot_keys_for(params, ds, k, 0, k.rows, !per_tile);
  with_kernel_score(params.kernel, ds.h, [&](auto score) {
    cpu_pool_partial_impl(q, k, v, out, params, key_offset, threads, score, ds.weights(), dk,
                          per_tile);
  });
}

namespace {

template <bool Weighted, class Score>
void cpu_weights_impl(const_view q, const_view k, mutable_view w, const pool_params& params,
                      unsigned threads, Score score, const float* dw) {
  const std::size_t n = q.rows, m = k.rows, d = q.cols;
  const std::vector<float> kt = pack_columns(k);
  empty_rows empties(n);
  parallel_rows(n, m * d, threads, 0, [&](std::size_t i, float*) {
    float* row = w.row(i);
    const key_range rm = mask_rule_of(params).row(i, m);
    // Scores straight into the output row, tile by tile, then one exp pass. Masked keys, and
    // keys outside a compact kernel's support, score -inf and so get weight exactly 0.
    float mx = -std::numeric_limits<float>::infinity();
    for (std::size_t j0 = 0; j0 < rm.limit; j0 += kCpuTile) {
      const std::size_t len = std::min(kCpuTile, rm.limit - j0);
      mx = std::max(mx, score_tile<Weighted>(q.row(i), kt.data(), m, d, j0, len, score, dw,
                                             row + j0));
    }
    if (rm.skip < rm.limit) mx = mask_one(row, rm.limit, rm.skip);
    if (Score::kCompact && mx == -std::numeric_limits<float>::infinity()) {  // empty support
      if (params.empty == empty_support::nearest) {
        std::fill(row, row + m, 0.0f);
        row[nearest_key(q, k, i, dw, rm)] = 1.0f;
      } else {
        if (params.empty == empty_support::error) empties.note(i);
        std::fill(row, row + m, std::numeric_limits<float>::quiet_NaN());
      }
      return;
    }
    // Exponentiate tile by tile and add the tile sums in double: the normaliser of a long row
    // then stays within the float rounding of one tile's sum, vectorised or not (sanitizer
    // builds do not vectorise, and a sequential float sum of m terms drifts by ~sqrt(m) eps).
    double sum = 0.0;
    for (std::size_t j0 = 0; j0 < rm.limit; j0 += kCpuTile)
      sum += exp_tile(row + j0, std::min(kCpuTile, rm.limit - j0), mx);
    const auto inv = static_cast<float>(1.0 / sum);
    for (std::size_t j = 0; j < rm.limit; ++j) row[j] *= inv;
    std::fill(row + rm.limit, row + m, 0.0f);
  });
  empties.throw_if_any("attention_weights", params, n);
}

}  // namespace

void cpu_weights(const_view q, const_view k, mutable_view w, const pool_params& params,
                 unsigned threads) {
  if (q.rows == 0) return;
  const distance_setup ds = make_distance(params);
  with_kernel_score(params.kernel, ds.h, [&](auto score) {
    if (ds.weights() != nullptr) {
      cpu_weights_impl<true>(q, k, w, params, threads, score, ds.weights());
    } else {
      cpu_weights_impl<false>(q, k, w, params, threads, score, nullptr);
    }
  });
}

}  // namespace attnpool::detail
