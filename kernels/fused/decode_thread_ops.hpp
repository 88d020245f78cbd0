// The decode path's per-thread work and its block reduction order, written once as
// __host__ __device__ code: kernels/fused/decode_agent.cuh runs them one thread at a time, and
// tests/core/test_decode.cpp runs the very same functions on the CPU (threads x strided keys,
// then the fixed merge tree) against the fp64 oracle, so the GPU's arithmetic is checked without
// a GPU (up to the hardware exp2, which the host replaces with the shared exp2_poly).
// The maths per key and per merge is detail::online_softmax's and the Gaussian score functor's.
#pragma once

#include <attnpool/detail/host_device.hpp>
#include <attnpool/detail/online_softmax.hpp>
#include <attnpool/detail/scores.hpp>

#include "kernels/fused/params.hpp"

#include <cstddef>

namespace attnpool::kernels {

/// The state of R query rows over some keys, for one window of DV value columns: one online
/// softmax and DV unnormalised accumulators a row. Default-constructed it is empty, the merge's
/// identity (max -inf, sum 0, acc 0).
template <int DV, int R>
struct decode_state {
  detail::online_softmax softmax[R];
  float acc[R][DV] = {};
};

/// Rows row0 .. row0 + R - 1 of the queries, the first d coordinates zero-padded to D (padding
/// leaves every distance unchanged); rows past n are zero and never stored.
template <int D, int R>
ATTNPOOL_HD void decode_load_queries(const fused_args& a, std::size_t row0, float (&q)[R][D]) {
  ATTNPOOL_UNROLL
  for (int r = 0; r < R; ++r) {
    const std::size_t row = row0 + static_cast<std::size_t>(r);
    ATTNPOOL_UNROLL
    for (int c = 0; c < D; ++c)
      q[r][c] = row < a.n && c < a.d ? detail::ldg(a.q + row * a.ldq + c) : 0.0f;
  }
}

/// Key j and its value columns col0 .. col0 + cols - 1, zero-padded to D and DV. D = 1 and
/// DV = 1 need no guard (d >= 1 and cols >= 1), which keeps the d = dv = 1 loop to two loads.
template <int D, int DV>
ATTNPOOL_HD void decode_load_key(const fused_args& a, std::size_t j, int col0, int cols,
                                 float (&k)[D], float (&v)[DV]) {
  ATTNPOOL_UNROLL
  for (int c = 0; c < D; ++c) k[c] = D == 1 || c < a.d ? detail::ldg(a.k + j * a.ldk + c) : 0.0f;
  ATTNPOOL_UNROLL
  for (int c = 0; c < DV; ++c)
    v[c] = DV == 1 || c < cols ? detail::ldg(a.v + j * a.ldv + col0 + c) : 0.0f;
}

/// Adds one key to every row's state: the eager online-softmax update and acc = acc * self +
/// other * v, one rounding per FMA on host and device alike.
template <int D, int DV, int R>
ATTNPOOL_HD void decode_add_key(const float (&q)[R][D], const float (&k)[D], const float (&v)[DV],
                                const detail::gaussian_log2_score& score, decode_state<DV, R>& st) {
  ATTNPOOL_UNROLL
  for (int r = 0; r < R; ++r) {
    const detail::rescale rs = st.softmax[r].update(score(detail::squared_distance<D>(q[r], k)));
    ATTNPOOL_UNROLL
    for (int c = 0; c < DV; ++c)
      st.acc[r][c] = detail::fma_hd(st.acc[r][c], rs.self, rs.other * v[c]);
  }
}

/// Thread t of `threads` walks the keys begin + t, begin + t + threads, ... below end, in that
/// order: consecutive threads read consecutive keys (coalesced), and Unroll keys are loaded
/// before any of them is added, so that their loads are in flight together.
template <int D, int DV, int R, int Unroll>
ATTNPOOL_HD void decode_walk(const fused_args& a, const float (&q)[R][D], std::size_t begin,
                             std::size_t end, std::size_t t, std::size_t threads, int col0,
                             int cols, decode_state<DV, R>& st) {
  const detail::gaussian_log2_score score{a.score_constant};
  std::size_t j = begin + t;
  const std::size_t span = static_cast<std::size_t>(Unroll - 1) * threads;
  for (; j < end && end - j > span; j += static_cast<std::size_t>(Unroll) * threads) {
    float k[Unroll][D], v[Unroll][DV];
    ATTNPOOL_UNROLL
    for (int u = 0; u < Unroll; ++u)
      decode_load_key<D, DV>(a, j + static_cast<std::size_t>(u) * threads, col0, cols, k[u], v[u]);
    ATTNPOOL_UNROLL
    for (int u = 0; u < Unroll; ++u) decode_add_key<D, DV, R>(q, k[u], v[u], score, st);
  }
  for (; j < end; j += threads) {
    float k[D], v[DV];
    decode_load_key<D, DV>(a, j, col0, cols, k, v);
    decode_add_key<D, DV, R>(q, k, v, score, st);
  }
}

/// left = left merged with right (disjoint keys), row by row: detail::online_softmax::merge and
/// the merge kernel's acc = acc * self + other * acc_other. An empty side is the identity.
template <int DV, int R>
ATTNPOOL_HD void decode_merge(decode_state<DV, R>& left, const decode_state<DV, R>& right) {
  ATTNPOOL_UNROLL
  for (int r = 0; r < R; ++r) {
    const detail::rescale rs = left.softmax[r].merge(right.softmax[r]);
    ATTNPOOL_UNROLL
    for (int c = 0; c < DV; ++c)
      left.acc[r][c] = detail::fma_hd(left.acc[r][c], rs.self, rs.other * right.acc[r][c]);
  }
}

/// The warp level of the block's fixed merge tree, on 32 lane states in memory: at offsets 16,
/// 8, 4, 2, 1, lane l < offset merges lane l + offset into itself, the lower lane always the
/// left operand; the warp's state ends in lane 0. The device runs this pairing with
/// __shfl_xor_sync (decode_agent.cuh); this array form is the host's emulation of it.
template <int DV, int R>
ATTNPOOL_HD void decode_warp_tree(decode_state<DV, R>* lanes) {
  for (int offset = 16; offset > 0; offset /= 2)
    for (int l = 0; l < offset; ++l) decode_merge(lanes[l], lanes[l + offset]);
}

/// The block level: the warps' states merged in warp order 0, 1, ..., count - 1 (one thread,
/// from shared memory on the device).
template <int DV, int R>
ATTNPOOL_HD decode_state<DV, R> decode_merge_warps(const decode_state<DV, R>* warps, int count) {
  decode_state<DV, R> st = warps[0];
  for (int w = 1; w < count; ++w) decode_merge(st, warps[w]);
  return st;
}

/// Writes the block's merged state for rows row0 .. row0 + R - 1 (those below n): with
/// a.partial_acc null the normalised output window (no split-K), else split `split`'s partial
/// state in the default kernels' layout (fused_args: {max, sum} at 2 (split n + row), acc at
/// (split n + row) dv + col0), the state written by window 0 only.
template <int DV, int R>
ATTNPOOL_HD void decode_store(const fused_args& a, const decode_state<DV, R>& st, std::size_t row0,
                              std::size_t split, unsigned window, int col0, int cols) {
  ATTNPOOL_UNROLL
  for (int r = 0; r < R; ++r) {
    const std::size_t row = row0 + static_cast<std::size_t>(r);
    if (row >= a.n) continue;
    if (a.partial_acc == nullptr) {
      const float inv = st.softmax[r].inv_sum();
      float* dst = a.out + row * a.ldo + col0;
      ATTNPOOL_UNROLL
      for (int c = 0; c < DV; ++c)
        if (c < cols) dst[c] = st.acc[r][c] * inv;
    } else {
      const std::size_t slot = split * a.n + row;
      if (window == 0) {
        a.partial_state[2 * slot] = st.softmax[r].max;
        a.partial_state[2 * slot + 1] = st.softmax[r].sum;
      }
      float* dst = a.partial_acc + slot * static_cast<std::size_t>(a.dv) + col0;
      ATTNPOOL_UNROLL
      for (int c = 0; c < DV; ++c)
        if (c < cols) dst[c] = st.acc[r][c];
    }
  }
}

}  // namespace attnpool::kernels
