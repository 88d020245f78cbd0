// The multi-threaded CPU engine: float32 storage, a streaming (max-rescaled) softmax over tiles of
// keys, memory O(n + m). The per-pair maths comes from detail/online_softmax.hpp, the same code
// the CUDA kernels run.
//
// Layout of the work, per query row, for each tile of kCpuTile keys:
//   1. log2 scores and their maximum
//   2. p_j = 2^(s_j - max), the tile sum and p . v
//   3. merge (max, sum, p . v) into the row's online_softmax state (the shared merge)
// For d = dv = 1 steps 1 and 2 fuse into one pass against the running maximum (fused_tile_d1).
// Keys and values are packed once into column-major copies so that the inner loops run over
// contiguous keys, whatever d, dv and the caller's leading dimensions are.
//
// Vectorisation: the tile loops are plain loops with `omp simd` reductions (-fopenmp-simd, no
// OpenMP runtime), compiled three times by function multiversioning (target_clones): AVX-512,
// AVX2+FMA and baseline x86-64, chosen at load time by the CPU. No -march=native is needed.
#include "backends.hpp"

#include <attnpool/detail/online_softmax.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(ATTNPOOL_NO_MULTIVERSIONING)
#define ATTNPOOL_MULTIVERSION \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ATTNPOOL_MULTIVERSION
#endif

namespace attnpool::detail {
namespace {

// 1024 keys: the score tile (4 KiB) plus the d + dv packed key/value columns it reads stay in L1
// for d + dv <= 8; measured on the 2-core AMD EPYC (Zen 4) CI machine, 512 and 2048 were within
// 3% of it at d = 1, 256 lost 8% to the per-tile merge.
inline constexpr std::size_t kCpuTile = 1024;
// Rows handed to a thread at a time: small enough to balance two threads on n = 129, large
// enough that the shared counter is touched rarely.
inline constexpr std::size_t kRowChunk = 8;
// Below this many pairs a call runs on the calling thread: starting threads costs ~50 us.
inline constexpr std::size_t kMinPairsPerThread = std::size_t{1} << 16;

// Column-major copy of a row-major view: out[c * rows + j] = a(j, c).
std::vector<float> pack_columns(const_view a) {
  std::vector<float> out(a.rows * a.cols);
  for (std::size_t j = 0; j < a.rows; ++j)
    for (std::size_t c = 0; c < a.cols; ++c) out[c * a.rows + j] = a(j, c);
  return out;
}

// Keys in blocks of kLanes: kb[(j / kLanes) * d * kLanes + c * kLanes + j % kLanes] = k(j, c),
// the tail block zero-padded. A block's d coordinates are d * 64 contiguous bytes, so the
// distance loop streams them in order with its accumulators in registers; column-major packing
// instead puts the d columns m * 4 bytes apart, which for m a multiple of 1024 maps them onto
// the same L1 sets.
inline constexpr std::size_t kLanes = 16;
std::vector<float> pack_blocks(const_view a) {
  const std::size_t blocks = (a.rows + kLanes - 1) / kLanes;
  std::vector<float> out(blocks * a.cols * kLanes, 0.0f);
  for (std::size_t j = 0; j < a.rows; ++j)
    for (std::size_t c = 0; c < a.cols; ++c)
      out[(j / kLanes) * a.cols * kLanes + c * kLanes + j % kLanes] = a(j, c);
  return out;
}

// d > 1: s[j] = log2 score of the query against keys [j0, j0 + len) from blocked keys, in one
// pass; returns max_j s[j]. j0 is a multiple of kLanes; lanes past len score -inf.
// D > 0 is the dimension at compile time: the c loop unrolls inside the vectorised lane loop, so
// each lane's distance stays in a register and the loads are whole 64-byte lines. D == 0 reads
// the run-time d (the fallback: a lane accumulator that GCC keeps in memory).
template <int D>
ATTNPOOL_MULTIVERSION
float score_tile_blocked(const float* q, const float* kb, std::size_t d, std::size_t j0,
                         std::size_t len, gaussian_log2_score score, float* s) {
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
#pragma GCC unroll 64
        for (int c = 0; c < D; ++c) {
          const float diff = q[c] - kblk[c * kLanes + l];
          acc = diff * diff + acc;
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

// The run-time d -> compile-time D switch for the blocked score tile.
float score_tile_d(const float* q, const float* kb, std::size_t d, std::size_t j0,
                   std::size_t len, gaussian_log2_score score, float* s) {
  switch (d) {
    case 2: return score_tile_blocked<2>(q, kb, d, j0, len, score, s);
    case 3: return score_tile_blocked<3>(q, kb, d, j0, len, score, s);
    case 4: return score_tile_blocked<4>(q, kb, d, j0, len, score, s);
    case 8: return score_tile_blocked<8>(q, kb, d, j0, len, score, s);
    case 16: return score_tile_blocked<16>(q, kb, d, j0, len, score, s);
    case 32: return score_tile_blocked<32>(q, kb, d, j0, len, score, s);
    case 64: return score_tile_blocked<64>(q, kb, d, j0, len, score, s);
    default: return score_tile_blocked<0>(q, kb, d, j0, len, score, s);
  }
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

// Every pass below subtracts the reference from a score that was rounded to float first, never
// from an unrounded product: with -ffp-contract=fast, `scale * dist2 - ref` would become one FMA
// and the best key would get 2^(rounding error of its score) instead of exactly 2^0. For far
// keys at small bandwidths (|score| ~ 1e13, ulp ~ 1e6) that is inf or 0, and the result NaN.
// A stored score, or one that has a second use (the max reduction), is not contracted; the
// HugeScores test checks it.

// d = 1, dv = 1 in a single pass (the notebook's case), against the running maximum `ref`. The
// caller checks max <= ref + kRefSlack and repeats the tile with ref = max when it is not.
ATTNPOOL_MULTIVERSION
tile_sums fused_tile_d1(float q, const float* k, const float* v, std::size_t len,
                        gaussian_log2_score score, float ref) {
  float mx = -std::numeric_limits<float>::infinity(), sum = 0.0f, dot = 0.0f;
#pragma omp simd reduction(max : mx) reduction(+ : sum, dot)
  for (std::size_t j = 0; j < len; ++j) {
    const float diff = q - k[j];
    const float sc = score(diff * diff);
    mx = std::max(mx, sc);
    const float p = exp2_poly(sc - ref);
    sum += p;
    dot = p * v[j] + dot;
  }
  return {mx, sum, dot};
}

// s[j] = log2 score of the query against keys [j0, j0 + len); returns max_j s[j].
ATTNPOOL_MULTIVERSION
float score_tile(const float* q, const float* kt, std::size_t m, std::size_t d, std::size_t j0,
                 std::size_t len, gaussian_log2_score score, float* s) {
  {
    const float qc = q[0];
    const float* k0 = kt + j0;
#pragma omp simd
    for (std::size_t j = 0; j < len; ++j) {
      const float diff = qc - k0[j];
      s[j] = diff * diff;
    }
  }
  for (std::size_t c = 1; c < d; ++c) {
    const float qc = q[c];
    const float* kc = kt + c * m + j0;
#pragma omp simd
    for (std::size_t j = 0; j < len; ++j) {
      const float diff = qc - kc[j];
      s[j] = diff * diff + s[j];
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

// Scores s[j] -> weights p[j] = 2^(s[j] - ref) in place; returns sum_j p[j].
ATTNPOOL_MULTIVERSION
float exp_tile(float* s, std::size_t len, float ref) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (std::size_t j = 0; j < len; ++j) {
    s[j] = exp2_poly(s[j] - ref);
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
    const float p = exp2_poly(s[j] - ref);
    sum += p;
    dot = p * v[j] + dot;
  }
  return {ref, sum, dot};
}

ATTNPOOL_MULTIVERSION
float dot_tile(const float* p, const float* v, std::size_t len) {
  float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
  for (std::size_t j = 0; j < len; ++j) dot = p[j] * v[j] + dot;
  return dot;
}

// Runs body(row, scratch) for rows [0, n) on `threads` workers. Each row is computed by one
// thread with a fixed key order, so results do not depend on the thread count or scheduling.
template <class Body>
void parallel_rows(std::size_t n, std::size_t pairs_per_row, unsigned threads,
                   std::size_t scratch_floats, Body body) {
  unsigned t = threads == 0 ? std::max(1u, std::thread::hardware_concurrency()) : threads;
  const std::size_t by_work = std::max<std::size_t>(1, n * pairs_per_row / kMinPairsPerThread);
  const std::size_t by_rows = (n + kRowChunk - 1) / kRowChunk;
  t = static_cast<unsigned>(std::min<std::size_t>({t, by_work, by_rows}));
  // Allocate every scratch buffer before any thread starts: nothing inside a worker can throw.
  std::vector<std::vector<float>> scratch(t, std::vector<float>(scratch_floats));
  std::atomic<std::size_t> next{0};
  auto worker = [&](unsigned id) {
    for (;;) {
      const std::size_t begin = next.fetch_add(kRowChunk, std::memory_order_relaxed);
      if (begin >= n) return;
      const std::size_t end = std::min(n, begin + kRowChunk);
      for (std::size_t i = begin; i < end; ++i) body(i, scratch[id].data());
    }
  };
  if (t == 1) {
    worker(0);
    return;
  }
  std::vector<std::jthread> pool;
  pool.reserve(t - 1);
  for (unsigned id = 1; id < t; ++id) pool.emplace_back(worker, id);
  worker(0);
}

gaussian_log2_score make_score(const pool_params& params) {
  return {static_cast<float>(-gaussian_log2_scale(params.bandwidth))};
}

// The running state of one query row: the shared online softmax plus the dv accumulators.
struct row_state {
  online_softmax softmax;
  float* acc;

  // Folds in a tile summarised against reference `ref`; `tile_acc` holds its dv dot products.
  void add(float ref, float sum, const float* tile_acc, std::size_t dv) {
    const rescale r = softmax.merge(online_softmax{ref, sum});
    for (std::size_t c = 0; c < dv; ++c) acc[c] = acc[c] * r.self + r.other * tile_acc[c];
  }
};

}  // namespace

void cpu_pool(const_view q, const_view k, const_view v, mutable_view out,
              const pool_params& params, unsigned threads) {
  const std::size_t n = q.rows, m = k.rows, d = q.cols, dv = v.cols;
  if (n == 0) return;
  const gaussian_log2_score score = make_score(params);
  const std::vector<float> kt = d == 1 ? pack_columns(k) : std::vector<float>{};
  const std::vector<float> kb = d > 1 ? pack_blocks(k) : std::vector<float>{};
  const std::vector<float> vt = pack_columns(v);
  // Scratch per thread: one tile of squared distances / weights, the row's accumulator and the
  // tile's.
  parallel_rows(n, m * (d + dv), threads, kCpuTile + 2 * dv, [&](std::size_t i, float* buf) {
    float* s = buf;
    row_state row{online_softmax{}, s + kCpuTile};
    float* tile_acc = row.acc + dv;
    std::fill(row.acc, row.acc + dv, 0.0f);
    for (std::size_t j0 = 0; j0 < m; j0 += kCpuTile) {
      const std::size_t len = std::min(kCpuTile, m - j0);
      const float* vp = vt.data() + j0;
      if (d == 1 && dv == 1 && row.softmax.max != -std::numeric_limits<float>::infinity()) {
        // Single pass against the running maximum; repeat the tile against its own maximum when
        // that exceeds the reference by more than the slack (a much closer key turned up).
        float ref = row.softmax.max;
        tile_sums t = fused_tile_d1(q(i, 0), kt.data() + j0, vp, len, score, ref);
        if (!(t.max <= ref + kRefSlack)) {
          ref = t.max;
          t = fused_tile_d1(q(i, 0), kt.data() + j0, vp, len, score, ref);
        }
        row.add(ref, t.sum, &t.dot, 1);
        continue;
      }
      // Two passes: exact tile maximum first (always so for the first tile of a row).
      const float ref = d > 1 ? score_tile_d(q.row(i), kb.data(), d, j0, len, score, s)
                              : score_tile(q.row(i), kt.data(), m, d, j0, len, score, s);
      if (dv == 1) {
        const tile_sums t = exp_dot_tile(s, vp, len, ref);
        row.add(ref, t.sum, &t.dot, 1);
      } else {
        const float sum = exp_tile(s, len, ref);
        for (std::size_t c = 0; c < dv; ++c) tile_acc[c] = dot_tile(s, vt.data() + c * m + j0, len);
        row.add(ref, sum, tile_acc, dv);
      }
    }
    const float inv = row.softmax.inv_sum();
    for (std::size_t c = 0; c < dv; ++c) out(i, c) = row.acc[c] * inv;
  });
}

void cpu_weights(const_view q, const_view k, mutable_view w, const pool_params& params,
                 unsigned threads) {
  const std::size_t n = q.rows, m = k.rows, d = q.cols;
  if (n == 0) return;
  const gaussian_log2_score score = make_score(params);
  const std::vector<float> kt = pack_columns(k);
  parallel_rows(n, m * d, threads, 0, [&](std::size_t i, float*) {
    float* row = w.row(i);
    // Scores straight into the output row, tile by tile, then one exp pass.
    float mx = -std::numeric_limits<float>::infinity();
    for (std::size_t j0 = 0; j0 < m; j0 += kCpuTile) {
      const std::size_t len = std::min(kCpuTile, m - j0);
      mx = std::max(mx, score_tile(q.row(i), kt.data(), m, d, j0, len, score, row + j0));
    }
    // Exponentiate tile by tile and add the tile sums in double: the normaliser of a long row
    // then stays within the float rounding of one tile's sum, vectorised or not (sanitizer
    // builds do not vectorise, and a sequential float sum of m terms drifts by ~sqrt(m) eps).
    double sum = 0.0;
    for (std::size_t j0 = 0; j0 < m; j0 += kCpuTile)
      sum += exp_tile(row + j0, std::min(kCpuTile, m - j0), mx);
    const auto inv = static_cast<float>(1.0 / sum);
    for (std::size_t j = 0; j < m; ++j) row[j] *= inv;
  });
}

}  // namespace attnpool::detail
