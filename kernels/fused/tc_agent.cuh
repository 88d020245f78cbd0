// Device side of the fused forward's tensor-core path (fused_tensor_cores()): FlashAttention-2's
// forward for the isotropic Gaussian, unmasked, D in {16, 32, 64}, DV <= 8. Included only by
// kernels/fused/inst/d*_tc.cu, each of which instantiates launch_fused_tc_config<D, DV> for one D.
//
// Per block: the FFMA kernel's 128 query rows, 4 warps of two m16 tiles each. The block centres
// its data on the midrange of its queries, and takes the tensor cores only where every row meets
// the score's bound (detail::tc_score_ok) against the block's keys; otherwise it runs the FFMA
// agent, which is why it has the FFMA kernel's rows, threads and plan. On the tensor cores, key
// tiles (fused_tc_traits::kTileKeys) are staged in shared memory already split into tf32 big and
// small parts, and the scores S = (2a Q') K'^T come from three mma.sync m16n8k8 tf32 per k-step
// (3xTF32, detail/tf32_split.hpp, which derives the bound and emulates the arithmetic for the host
// test). Each key is weighed by 2^S ew_j (ew_j = 2^(-a |k'_j|^2), folded into the staged values)
// against the row's fixed reference -a |q'|^2: the bound keeps every exponent small, so there is no
// running maximum. P . V is FFMA on the accumulator fragments; the four lanes holding a row merge
// their states (detail::online_softmax::merge) at the end.
#pragma once

#include <attnpool/detail/fast_math.hpp>
#include <attnpool/detail/online_softmax.hpp>
#include <attnpool/detail/tf32_split.hpp>

#include "kernels/common/cuda_check.hpp"
#include "kernels/fused/agent.cuh"
#include "kernels/fused/dispatch.hpp"
#include "kernels/fused/traits.hpp"

#include <cuda_runtime.h>

#include <cstdint>

namespace attnpool::kernels {

/// c += a b on one m16n8k8 tile in tf32 with f32 accumulation: a the row-major 16 x 8 A
/// fragment, {b0, b1} the column-major 8 x 8 B fragment, c the 16 x 8 accumulator fragment
/// (PTX ISA, "Matrix Fragments for mma.m16n8k8", .tf32).
__device__ __forceinline__ void mma_tf32(float (&c)[4], const std::uint32_t (&a)[4],
                                         std::uint32_t b0, std::uint32_t b1) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <int D, int DV>
struct fused_tc_agent {
  using traits = fused_tc_traits<D, DV>;
  using ffma_agent = fused_agent<D, DV, detail::gaussian_log2_score>;
  static constexpr int kMT = traits::kMTiles;
  static constexpr int kKS = traits::kKSteps;
  static constexpr int kNB = traits::kChunkBlocks;
  static constexpr int kTile = traits::kTileKeys;
  static constexpr int kStride = traits::kKeyStride;
  static constexpr int kWarps = traits::kWarps;

  /// One key tile (keys in kKeyStride's layout; ew_j = 2^(-a |k'_j|^2) and ew_j v_j, both 0 for
  /// keys past the tile's end and columns past the window, so those weigh nothing), the block
  /// centre, and the warps' largest |k'|^2.
  struct tc_storage {
    alignas(16) float keys[traits::kKeyFloats];
    alignas(16) float ew[kTile];
    alignas(16) float vw[traits::kValueFloats];
    float mu[D];
    double warp_rk2[kWarps];
  };
  /// The FFMA agent's tiles share the memory: a block runs one agent or the other.
  union storage {
    typename ffma_agent::shared_storage ffma;
    tc_storage tc;
  };

  tc_storage& s;
  const fused_args& a;
  const ffma_agent& f;  // the block's coordinates: rows, key range, value window
  const double scale;   // a, the magnitude of the float score constant (the FFMA path's a)
  const int g, t;       // the lane's row group and its place in the quad
  const std::size_t warp_row0;

  // Per-thread state: rows g and g + 8 of each m tile (index h), in registers.
  std::uint32_t qb[kMT][kKS][4], qsm[kMT][kKS][4];  // A fragments of 2a q': tf32 big and small
  float cq[kMT][2];                                 // a |q'|^2, the rows' reference is -cq
  double q_dist[kMT][2];                            // |q'|
  float sum[kMT][2];                                // this lane's sum_j 2^S_ij ew_j over its keys
  float acc[kMT][2][DV];

  __device__ fused_tc_agent(tc_storage& st, const fused_args& args, const ffma_agent& ffma)
      : s(st),
        a(args),
        f(ffma),
        scale(-static_cast<double>(args.score_constant)),
        g(static_cast<int>(threadIdx.x & 31u) >> 2),
        t(static_cast<int>(threadIdx.x & 3u)),
        warp_row0(ffma.row0 - threadIdx.x + (threadIdx.x & ~31u)) {}

  // Row h of the lane's two in m tile mt: the A fragments' and the accumulators' rows g, g + 8.
  __device__ std::size_t row_of(int mt, int h) const {
    return warp_row0 + static_cast<std::size_t>(mt * 16 + detail::tc_a_row(g, h));
  }

  /// The block centre, the rows' A fragments and the bound; true (block-uniform) where every
  /// row of the block meets it against every key of the block's range.
  __device__ bool prepare() {
    const std::size_t row_begin = f.row0 - threadIdx.x;
    const std::size_t rows =
        min(f.row_end - row_begin, static_cast<std::size_t>(traits::kRowsPerBlock));
    for (int c = static_cast<int>(threadIdx.x); c < D; c += traits::kThreads) {
      float lo = INFINITY, hi = -INFINITY;
      if (c < a.d) {
        for (std::size_t i = 0; i < rows; ++i) {
          const float x = __ldg(a.q + (row_begin + i) * a.ldq + c);
          lo = fminf(lo, x);
          hi = fmaxf(hi, x);
        }
      }
      s.mu[c] = c < a.d ? static_cast<float>(0.5 * (static_cast<double>(lo) + hi)) : 0.0f;
    }
    __syncthreads();  // the centre is complete before anyone centres with it

#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const std::size_t row = row_of(mt, h);
        const bool ok = row < f.row_end;
        const float* src = a.q + (ok ? row : 0) * a.ldq;
        double n2 = 0.0;
#pragma unroll
        for (int ks = 0; ks < kKS; ++ks) {
#pragma unroll
          for (int hi = 0; hi < 2; ++hi) {
            const int r = h + 2 * hi;  // the A register of this row and coordinate
            const int c = detail::tc_a_coord(ks, t, r);
            const float qc = (ok && c < a.d) ? __ldg(src + c) - s.mu[c] : 0.0f;
            n2 += static_cast<double>(qc) * qc;
            const detail::tf32_pair p =
                detail::tf32_split(static_cast<float>(2.0 * scale * static_cast<double>(qc)));
            qb[mt][ks][r] = __float_as_uint(p.big);
            qsm[mt][ks][r] = __float_as_uint(p.small);
          }
        }
        // The quad holds the row's coordinates between its four lanes.
        n2 += __shfl_xor_sync(0xffffffffu, n2, 1);
        n2 += __shfl_xor_sync(0xffffffffu, n2, 2);
        cq[mt][h] = static_cast<float>(scale * n2);
        q_dist[mt][h] = ok ? sqrt(n2) : 0.0;
      }
    }

    // The block's keys' largest |k'|^2, each key centred exactly as stage() centres it.
    double rk2 = 0.0;
    for (std::size_t j = f.key_begin + threadIdx.x; j < f.key_end; j += traits::kThreads) {
      const float* kj = a.k + j * a.ldk;
      double n2 = 0.0;
#pragma unroll
      for (int c = 0; c < D; ++c) {
        if (c < a.d) {
          const float kc = __ldg(kj + c) - s.mu[c];
          n2 += static_cast<double>(kc) * kc;
        }
      }
      rk2 = fmax(rk2, n2);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) rk2 = fmax(rk2, __shfl_xor_sync(0xffffffffu, rk2, o));
    if ((threadIdx.x & 31u) == 0) s.warp_rk2[threadIdx.x / 32] = rk2;
    __syncthreads();
#pragma unroll
    for (int w = 0; w < kWarps; ++w) rk2 = fmax(rk2, s.warp_rk2[w]);
    const double rk = sqrt(rk2);
    bool ok = true;
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        // Rows past the block's end (q' = 0) never veto.
        ok = ok && (row_of(mt, h) >= f.row_end || detail::tc_score_ok(scale, q_dist[mt][h], rk, D));
      }
    }
    // Also the barrier after which the FFMA agent may overwrite the shared memory.
    return __syncthreads_and(ok) != 0;
  }

  __device__ void run() {
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        sum[mt][h] = 0.0f;
#pragma unroll
        for (int c = 0; c < DV; ++c) acc[mt][h][c] = 0.0f;
      }
    }
    // Warp-uniform: a warp whose rows all lie past the block's end stages tiles and meets every
    // barrier but skips the maths.
    const bool warp_live = warp_row0 < f.row_end;
    for (std::size_t tile0 = f.key_begin; tile0 < f.key_end; tile0 += kTile) {
      const int valid = static_cast<int>(min(static_cast<std::size_t>(kTile), f.key_end - tile0));
      stage(tile0, valid);
      __syncthreads();  // the tile is complete before anyone reads it
      if (warp_live) consume();
      __syncthreads();  // everyone is done reading before the next stage overwrites it
    }
    store();
  }

  // kThreadsPerKey threads per key, each D / kThreadsPerKey of its coordinates: k' = fl(k - mu)
  // split into tf32 parts (kKeyStride's layout), |k'|^2 in double, then ew = 2^(-a |k'|^2) and
  // ew v for the window.
  __device__ void stage(std::size_t tile0, int valid) {
    constexpr int kPer = traits::kThreadsPerKey, kCoords = D / kPer;
    const int j = static_cast<int>(threadIdx.x) / kPer;
    const int part = static_cast<int>(threadIdx.x) % kPer;
    const bool live = j < valid;
    const std::size_t key = tile0 + static_cast<std::size_t>(live ? j : 0);
    const float* kj = a.k + key * a.ldk;
    float* dst = s.keys + j * kStride;
    const float* kp = kj + part * kCoords;
    float kv[kCoords];
    if (a.d == D) {  // the common case: whole rows, loads without a per-coordinate predicate
#pragma unroll
      for (int cc = 0; cc < kCoords; ++cc) kv[cc] = __ldg(kp + cc);
    } else {
#pragma unroll
      for (int cc = 0; cc < kCoords; ++cc)
        kv[cc] = part * kCoords + cc < a.d ? __ldg(kp + cc) : 0.0f;
    }
    double n2 = 0.0;
    // Coordinates c and c + 4 of a k-step's quad place t together: their four parts are one
    // lane's LDS.128 in consume(), stored by one STS.128 (tc_key_slot(c) = tc_b_offset(ks, t)).
#pragma unroll
    for (int cc = 0; cc < kCoords; ++cc) {
      if ((cc & 4) != 0) continue;  // stored with cc - 4
      const int c = part * kCoords + cc;
      // Past d both kv and mu are 0; a key past the tile's end is 0 whatever its row holds.
      const float kc0 = live ? kv[cc] - s.mu[c] : 0.0f;
      const float kc1 = live ? kv[cc + 4] - s.mu[c + 4] : 0.0f;
      n2 += static_cast<double>(kc0) * kc0;
      n2 += static_cast<double>(kc1) * kc1;
      const detail::tf32_pair p0 = detail::tf32_split(kc0), p1 = detail::tf32_split(kc1);
      *reinterpret_cast<float4*>(dst + detail::tc_key_slot(c)) =
          make_float4(p0.big, p1.big, p0.small, p1.small);
    }
    if constexpr (kPer == 2) n2 += __shfl_xor_sync(0xffffffffu, n2, 1);
    if (part == 0) {
      const float ew = live ? detail::fast_exp2(static_cast<float>(-scale * n2)) : 0.0f;
      s.ew[j] = ew;
      const float* vj = a.v + key * a.ldv + f.col0;
#pragma unroll
      for (int c = 0; c < DV; ++c)
        s.vw[j * DV + c] = (live && c < f.cols) ? ew * __ldg(vj + c) : 0.0f;
    }
  }

  // The tile's keys, kNB n8 blocks at a time: scores on the tensor cores, then per pair one
  // exp2, one FFMA into the sum and DV into the accumulators.
  __device__ void consume() {
#pragma unroll 1
    for (int nb0 = 0; nb0 < kTile / 8; nb0 += kNB) {
      float sc[kMT][kNB][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
        for (int nb = 0; nb < kNB; ++nb) {
#pragma unroll
          for (int e = 0; e < 4; ++e) sc[mt][nb][e] = 0.0f;
        }
      }
#pragma unroll
      for (int ks = 0; ks < kKS; ++ks) {
        std::uint32_t big[kNB][2], small[kNB][2];
#pragma unroll
        for (int nb = 0; nb < kNB; ++nb) {
          const float4 b = *reinterpret_cast<const float4*>(
              s.keys + ((nb0 + nb) * 8 + g) * kStride + detail::tc_b_offset(ks, t));
          big[nb][0] = __float_as_uint(b.x);
          big[nb][1] = __float_as_uint(b.y);
          small[nb][0] = __float_as_uint(b.z);
          small[nb][1] = __float_as_uint(b.w);
        }
        // detail::tf32_dot_emulated's order per accumulator: the two cross terms, then
        // big . big; term by term over all kMT x kNB accumulators, so that consecutive mmas are
        // independent (one accumulator's three in a row stall on each other).
#pragma unroll
        for (int nb = 0; nb < kNB; ++nb) {
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt)
            mma_tf32(sc[mt][nb], qb[mt][ks], small[nb][0], small[nb][1]);
        }
#pragma unroll
        for (int nb = 0; nb < kNB; ++nb) {
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt)
            mma_tf32(sc[mt][nb], qsm[mt][ks], big[nb][0], big[nb][1]);
        }
#pragma unroll
        for (int nb = 0; nb < kNB; ++nb) {
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt) mma_tf32(sc[mt][nb], qb[mt][ks], big[nb][0], big[nb][1]);
        }
      }
#pragma unroll
      for (int nb = 0; nb < kNB; ++nb) {
        const int j = (nb0 + nb) * 8 + detail::tc_c_col(t, 0);  // and j + 1: elements 2h, 2h + 1
        const float2 ew = *reinterpret_cast<const float2*>(s.ew + j);
        const float* v0 = s.vw + j * DV;
        const float* v1 = v0 + DV;
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const float w0 = detail::fast_exp2(sc[mt][nb][2 * h]);
            const float w1 = detail::fast_exp2(sc[mt][nb][2 * h + 1]);
            sum[mt][h] = fmaf(w1, ew.y, fmaf(w0, ew.x, sum[mt][h]));
#pragma unroll
            for (int c = 0; c < DV; ++c)
              acc[mt][h][c] = fmaf(w1, v1[c], fmaf(w0, v0[c], acc[mt][h][c]));
          }
        }
      }
    }
  }

  // The quad's four states of a row share the reference -cq, so their merge is exact addition;
  // lane t = 0 writes the row as the FFMA agent's store() does.
  __device__ void store() {
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        detail::online_softmax st{-cq[mt][h], sum[mt][h]};
#pragma unroll
        for (int o = 1; o <= 2; o <<= 1) {
          const detail::online_softmax other{__shfl_xor_sync(0xffffffffu, st.max, o),
                                             __shfl_xor_sync(0xffffffffu, st.sum, o)};
          float other_acc[DV];
#pragma unroll
          for (int c = 0; c < DV; ++c)
            other_acc[c] = __shfl_xor_sync(0xffffffffu, acc[mt][h][c], o);
          const detail::rescale r = st.merge(other);
#pragma unroll
          for (int c = 0; c < DV; ++c)
            acc[mt][h][c] = fmaf(acc[mt][h][c], r.self, r.other * other_acc[c]);
        }
        const std::size_t row = row_of(mt, h);
        if (t == 0 && row < f.row_end) store_row(row, st, acc[mt][h]);
      }
    }
  }

  __device__ void store_row(std::size_t row, const detail::online_softmax& st,
                            const float (&out)[DV]) const {
    if (a.partial_acc == nullptr) {  // no split-K and no pool_partial: normalised output
      const float inv = st.inv_sum();
      float* dst = a.out + row * a.ldo + f.col0;
#pragma unroll
      for (int c = 0; c < DV; ++c)
        if (c < f.cols) dst[c] = out[c] * inv;
    } else {
      // This split's state against the reference -cq (an upper bound of no score, but a
      // reference all the same: the merge kernel rescales by differences of references).
      const std::size_t slot = static_cast<std::size_t>(blockIdx.z) * a.n + row;
      if (blockIdx.y == 0) {
        a.partial_state[2 * slot] = st.max;
        a.partial_state[2 * slot + 1] = st.sum;
      }
      float* dst = a.partial_acc + slot * static_cast<std::size_t>(a.dv) + f.col0;
#pragma unroll
      for (int c = 0; c < DV; ++c)
        if (c < f.cols) dst[c] = out[c];
    }
  }
};

/// Thin entry point: the tensor-core agent where the block's bound holds, else the FFMA agent on
/// the same rows and keys.
template <int D, int DV>
__global__ void __launch_bounds__(fused_tc_traits<D, DV>::kThreads)
    fused_pool_tc_kernel(const fused_args args) {
  using agent_t = fused_tc_agent<D, DV>;
  __shared__ typename agent_t::storage smem;
  typename agent_t::ffma_agent ffma(smem.ffma, args);
  agent_t agent(smem.tc, args, ffma);
  if (agent.prepare()) {
    agent.run();
  } else {
    ffma.run();
  }
}

template <int D, int DV>
void launch_fused_tc_config(const fused_args& args, const fused_plan& plan, stream_t stream) {
  using traits = fused_tc_traits<D, DV>;
  const dim3 grid(plan.grid_x, plan.grid_y, static_cast<unsigned>(plan.splits));
  fused_pool_tc_kernel<D, DV><<<grid, traits::kThreads, 0, stream>>>(args);
  ATTNPOOL_CHECK_LAUNCH("fused_pool_tc_kernel");
}

#define ATTNPOOL_FUSED_TC_INSTANTIATE(D)                                                      \
  template void launch_fused_tc_config<D, 1>(const fused_args&, const fused_plan&, stream_t); \
  template void launch_fused_tc_config<D, 2>(const fused_args&, const fused_plan&, stream_t); \
  template void launch_fused_tc_config<D, 4>(const fused_args&, const fused_plan&, stream_t); \
  template void launch_fused_tc_config<D, 8>(const fused_args&, const fused_plan&, stream_t);

}  // namespace attnpool::kernels
