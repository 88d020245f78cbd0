// Device side of the fused attention-pooling kernel: one pass over the keys per block, the
// n x m weight matrix never stored. Included only by kernels/fused/inst/d*.cu, each of which
// instantiates launch_fused_config<D, DV> for one D.
//
// Per block: kRowsPerBlock query rows (each thread owns kRowsPerThread of them, with the query
// coordinates, the online-softmax state and the DV accumulators in registers) against the keys
// [key_begin, key_end) of its split, streamed through shared memory kTileKeys at a time. Every
// thread reads the same key at the same time, so the shared-memory reads are broadcasts (no bank
// conflicts), and the maths per pair is the shared code of <attnpool/detail/online_softmax.hpp>.
#pragma once

#include <attnpool/detail/exp2_emulated.hpp>
#include <attnpool/detail/expanded_score.hpp>
#include <attnpool/detail/fast_math.hpp>
#include <attnpool/detail/online_softmax.hpp>
#include <attnpool/detail/scores.hpp>

#include "kernels/common/cuda_check.hpp"
#include "kernels/common/workspace.hpp"
#include "kernels/fused/dispatch.hpp"
#include "kernels/fused/traits.hpp"

#include <cuda_runtime.h>

#include <type_traits>

namespace attnpool::kernels {

/// The score functor of a launch, from its arguments.
template <class Score>
__device__ Score score_from_args(const fused_args& a, const generic_score_args* generic) {
  if constexpr (std::is_same_v<Score, detail::gaussian_log2_score>) {
    return Score{a.score_constant};
  } else {
    return Score{generic->kind, a.score_constant};
  }
}

/// Traits defaults to fused_traits<D, DV>; bench/cuda/bench_fused_tuning.cu instantiates the
/// agent with variants of it to measure the constants (any type with fused_traits' members).
/// Expanded: the d = 1 expanded score (detail/expanded_score.hpp) on tiles where its bound
/// holds; only for the Gaussian lazy d = dv = 1 configuration (fused_d1_expanded()).
/// Masked: the Gaussian fast path under a mask (detail::mask_rule, fused_masks()): the key
/// loop ends at the block's largest key limit, and only the chunks where one of a thread's rows
/// loses a key (its limit, its skipped key, the tile's end) select weights; the others run the
/// unmasked chunk unchanged.
template <int D, int DV, class Score, class Traits = fused_traits<D, DV>, bool Expanded = false,
          bool Masked = false>
struct fused_agent {
  using traits = Traits;
  /// The generic-score path: may see -inf scores (compact supports) and weighted distances.
  static constexpr bool kGenericScore = !std::is_same_v<Score, detail::gaussian_log2_score>;
  static_assert(!kGenericScore || traits::kGeneric,
                "the generic-score path is instantiated for D = 0 only");
  static constexpr int kR = traits::kRowsPerThread;
  static constexpr int kC = traits::kChunk;
  static constexpr int kTile = traits::kTileKeys;
  static constexpr int kQRegs = traits::kGeneric ? 1 : D;  // a zero-length array is not C++
  static_assert(!Expanded || (D == 1 && !kGenericScore && traits::kLazyRescale),
                "the expanded score is the Gaussian lazy d = 1 path's");
  static_assert(!Masked || (!kGenericScore && !Expanded),
                "the masked fast path is the Gaussian direct form's (the generic-score path masks "
                "by distance)");
  /// Rows that carry a key range: the generic-score path's and the masked fast path's.
  static constexpr bool kRowRanges = kGenericScore || Masked;
  static constexpr int kWarps = traits::kThreads / 32;
  static constexpr int kXC = traits::kExpandedChunk;
  static_assert(!Expanded || kTile % kXC == 0, "an expanded chunk never straddles a tile");
  /// Every kXEvery-th pair of an expanded chunk takes its exp2 on the FMA pipe (0: none).
  static constexpr int kXEvery =
      traits::kExpandedEmulatedExp2 > 0 ? kXC / traits::kExpandedEmulatedExp2 : 0;
  static_assert(!Expanded || traits::kExpandedEmulatedExp2 == 0 ||
                    kXC % traits::kExpandedEmulatedExp2 == 0,
                "the emulated exp2s divide the expanded chunk evenly");

  /// Shared memory of one block: one tile of keys (zero-padded to D coordinates) and values
  /// (zero-padded to the DV-column window). Rows beyond the tile's valid keys are zero too, so
  /// reading a whole chunk never touches uninitialised memory.
  struct shared_storage {
    alignas(16) float keys[traits::kGeneric ? 1 : traits::kKeyFloats];
    alignas(16) float values[traits::kValueFloats];
  };
  /// The expanded path's tile on top: {k'_j, kb_j} interleaved (one LDS.128 reads two keys) and
  /// each warp's {min, max} of the tile's valid keys, for the tile's centre.
  struct expanded_storage : shared_storage {
    alignas(16) float kx[2 * kTile];
    float extremes[2 * kWarps];
  };
  /// The masked path's on top: each warp's largest key limit, for the block's loop bound.
  struct masked_storage : shared_storage {
    std::size_t warp_limits[kWarps];
  };
  using storage_t = std::conditional_t<Expanded, expanded_storage,
                                       std::conditional_t<Masked, masked_storage, shared_storage>>;

  shared_storage& smem;
  const fused_args& a;
  const generic_score_args*
      x;  // the generic-score path's extra parameters; null on the Gaussian path
  const Score score;

  // Block coordinates.
  const std::size_t row0;  // this thread's first row; its rows are row0 + r * kThreads
  const int col0;          // first value column of this block's window
  const int cols;          // value columns in the window, 1..DV
  const std::size_t key_begin;
  std::size_t key_end;        // under a mask, cut to the block's largest key limit before the walk
  const std::size_t row_end;  // one past this block's last row (n, or the batch block's end)

  // Per-thread state, in registers (every index below is a compile-time constant after
  // unrolling, which is what keeps these arrays out of local memory).
  float q[kR][kQRegs];
  const float* q_row[kR];  // generic path: the query rows in global memory
  // Any-kernel path and masked fast path: row r sees key j iff j < key_limit[r] and
  // j != skip_key[r] (mask::none: no limit and no skipped key). Global key indices, so split-K
  // ranges and tiles apply them as they are.
  std::size_t key_limit[kRowRanges ? kR : 1];
  std::size_t skip_key[kRowRanges ? kR : 1];
  // Masked fast path: the current tile's part of them (its valid keys at most).
  detail::tile_keys tile_seen[Masked ? kR : 1];
  detail::online_softmax softmax[kR];
  float acc[kR][DV];
  // Expanded path: this tile's row constants, each row's factor 2^-(a q'^2 + ref) (refreshed
  // when ref moves), and whether the whole warp takes the expanded form on this tile.
  detail::d1_expanded_row xrow[Expanded ? kR : 1];
  float xfactor[Expanded ? kR : 1];
  bool tile_expanded = false;

  __device__ fused_agent(shared_storage& s, const fused_args& args,
                         const generic_score_args* generic = nullptr)
      : smem(s),
        a(args),
        x(generic),
        score(score_from_args<Score>(args, generic)),
        row0((args.batch_blocks != nullptr
                  ? args.batch_blocks[blockIdx.x].row_begin
                  : static_cast<std::size_t>(blockIdx.x) * traits::kRowsPerBlock) +
             threadIdx.x),
        col0(static_cast<int>(blockIdx.y) * DV),
        cols(min(DV, args.dv - static_cast<int>(blockIdx.y) * DV)),
        key_begin(args.batch_blocks != nullptr
                      ? args.batch_blocks[blockIdx.x].key_begin
                      : static_cast<std::size_t>(blockIdx.z) * args.keys_per_split),
        key_end(args.batch_blocks != nullptr
                    ? args.batch_blocks[blockIdx.x].key_end
                    : min(args.m, static_cast<std::size_t>(blockIdx.z + 1) * args.keys_per_split)),
        // A batch block never holds more than kRowsPerBlock rows (plan_batch_blocks); the min
        // keeps a bad table from walking into the next block's rows all the same.
        row_end(args.batch_blocks != nullptr
                    ? min(args.batch_blocks[blockIdx.x].row_end,
                          min(args.n, args.batch_blocks[blockIdx.x].row_begin +
                                          static_cast<std::size_t>(traits::kRowsPerBlock)))
                    : args.n) {}

  __device__ bool row_valid(int r) const {
    return row0 + static_cast<std::size_t>(r) * traits::kThreads < row_end;
  }
  __device__ std::size_t row_index(int r) const {
    return row0 + static_cast<std::size_t>(r) * traits::kThreads;
  }

  /// `rule`: the masked fast path's mask (device pointers inside); null elsewhere. (A parameter
  /// rather than a member: one more member changes the unmasked kernels' register allocation.)
  __device__ void run(const detail::mask_rule* rule = nullptr) {
    load_queries(rule);
#pragma unroll
    for (int r = 0; r < kR; ++r) {
#pragma unroll
      for (int c = 0; c < DV; ++c) acc[r][c] = 0.0f;
    }
    // A warp whose rows all lie past the block's last row (the last block's tail; most of every
    // block when n is tiny) still loads tiles and meets every barrier, but skips the maths:
    // warp-uniform, so nothing diverges. For n = 1 this leaves one warp of four issuing
    // instructions. (row0 - threadIdx.x is the block's first row, batched or not.)
    const bool warp_live = row0 - threadIdx.x + (threadIdx.x & ~31u) < row_end;
    // The plan gives every split (and plan_batch_blocks every batch block) at least one key, so
    // key_begin < key_end and every live softmax state below ends non-empty (sum >= 1). Under a
    // mask the loop ends at the block's largest key limit, and a split may hold no key a row
    // sees: its partial state stays empty, which the merge takes as its identity (a row sees at
    // least one key in all, check_mask).
    if constexpr (Masked) key_end = min(key_end, block_key_limit());
    for (std::size_t tile0 = key_begin; tile0 < key_end; tile0 += kTile) {
      const int valid = static_cast<int>(min(static_cast<std::size_t>(kTile), key_end - tile0));
      load_tile(tile0, valid);
      if constexpr (Expanded) tile_extremes(valid);
      __syncthreads();  // the tile is complete before anyone reads it
      if constexpr (Expanded) {
        prepare_expanded(valid);
        __syncthreads();  // the expanded keys are complete before anyone reads them
      }
      if (!warp_live) {
        // nothing to compute
      } else if constexpr (Masked) {
        consume_masked(tile0, valid);
      } else if (valid == kTile) {
        consume<true>(tile0, kTile);
      } else {
        consume<false>(tile0, valid);
      }
      __syncthreads();  // everyone is done reading before the next load_tile overwrites it
    }
    store();
  }

  // Rows past n (the last block's tail) compute on zeros and are never stored: they cannot
  // return early because they take part in the __syncthreads of every tile.
  __device__ void load_queries(const detail::mask_rule* rule) {
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      const bool ok = row_valid(r);
      const float* src = a.q + (ok ? row_index(r) : 0) * a.ldq;  // row 0 exists: n >= 1
      if constexpr (kGenericScore) {
        // Rows past n keep no limit; they are never stored. valid_lens is read for rows < n only.
        // The key count is no limit here: the tiles end at the keys' end.
        const detail::key_range keys = ok ? x->mask.row(row_index(r), detail::kNoKey)
                                          : detail::key_range{detail::kNoKey, detail::kNoKey};
        key_limit[r] = keys.limit;
        skip_key[r] = keys.skip;
      }
      if constexpr (Masked) {
        // Rows past n see no key, so they do not stretch the block's key loop.
        const detail::key_range keys =
            ok ? rule->row(row_index(r), detail::kNoKey) : detail::key_range{0, detail::kNoKey};
        key_limit[r] = keys.limit;
        skip_key[r] = keys.skip;
      }
      if constexpr (traits::kGeneric) {
        q_row[r] = src;
      } else {
#pragma unroll
        for (int c = 0; c < D; ++c) q[r][c] = (ok && c < a.d) ? __ldg(src + c) : 0.0f;
      }
    }
  }

  // Cooperative, bounds-checked copy of keys [tile0, tile0 + valid) into shared memory. Only
  // the first d coordinates and the window's `cols` value columns are read from global memory:
  // pad elements of ld-strided inputs are never touched. Everything else is zero-filled.
  __device__ void load_tile(std::size_t tile0, int valid) {
    if constexpr (!traits::kGeneric) {
      for (int e = static_cast<int>(threadIdx.x); e < traits::kKeyFloats; e += traits::kThreads) {
        const int j = e / D, c = e - j * D;
        smem.keys[e] = (j < valid && c < a.d)
                           ? __ldg(a.k + (tile0 + static_cast<std::size_t>(j)) * a.ldk + c)
                           : 0.0f;
      }
    }
    for (int e = static_cast<int>(threadIdx.x); e < traits::kValueFloats; e += traits::kThreads) {
      const int j = e / DV, c = e - j * DV;
      smem.values[e] = (j < valid && c < cols)
                           ? __ldg(a.v + (tile0 + static_cast<std::size_t>(j)) * a.ldv + col0 + c)
                           : 0.0f;
    }
  }

  __device__ expanded_storage& xs() const {
    return static_cast<expanded_storage&>(smem);
  }

  // Each warp's {min, max} over the tile's valid keys (the thread's own loads: d = 1, so key e
  // is smem.keys[e]); lane 0 stores them for prepare_expanded after the tile's barrier.
  __device__ void tile_extremes(int valid) {
    float lo = INFINITY, hi = -INFINITY;
    for (int e = static_cast<int>(threadIdx.x); e < valid; e += traits::kThreads) {
      lo = fminf(lo, smem.keys[e]);
      hi = fmaxf(hi, smem.keys[e]);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, o));
      hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, o));
    }
    if ((threadIdx.x & 31u) == 0) {
      xs().extremes[2 * (threadIdx.x / 32)] = lo;
      xs().extremes[2 * (threadIdx.x / 32) + 1] = hi;
    }
  }

  // The tile's centre (midrange of its keys), its expanded keys, and each row's constants; the
  // warp takes the expanded form only where every one of its rows meets the bound, so the
  // branch stays warp-uniform. a is the float score constant's magnitude: the same rounded a
  // as the direct form's.
  __device__ void prepare_expanded(int valid) {
    float lo = INFINITY, hi = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      lo = fminf(lo, xs().extremes[2 * w]);
      hi = fmaxf(hi, xs().extremes[2 * w + 1]);
    }
    const detail::d1_centre c = detail::d1_centre_of(lo, hi);
    const double scale = -static_cast<double>(a.score_constant);
    for (int e = static_cast<int>(threadIdx.x); e < kTile; e += traits::kThreads) {
      const detail::d1_expanded_key key = e < valid
                                              ? detail::d1_expand_key(smem.keys[e], c.mu, scale)
                                              : detail::d1_expanded_key{0.0f, 0.0f};
      xs().kx[2 * e] = key.kc;
      xs().kx[2 * e + 1] = key.kb;
    }
    bool ok = true;
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      xrow[r] = detail::d1_expand_row(q[r][0], c, scale);
      ok = ok && (xrow[r].ok || !row_valid(r));  // rows past n (q = 0) never veto
      xfactor[r] = detail::d1_expanded_factor(xrow[r].cq, softmax[r].max);
    }
    tile_expanded = __all_sync(0xffffffffu, ok);
  }

  // The expanded form's lazy weights of row r: 2^x_j summed, then scaled by the row's factor
  // once; a chunk past kLazyLimit (or the first, whose factor is inf) is rebased exactly as
  // lazy_weights does, on distances of the direct form, and the factor follows the new ref.
  template <bool kFull>
  __device__ detail::rescale expanded_weights(int r, float (&p)[kXC], std::size_t tile0, int j0,
                                              int valid) {
    const float* kx = xs().kx + 2 * j0;
    float csum = 0.0f;
#pragma unroll
    for (int j = 0; j < kXC; ++j) {
      const float x =
          detail::d1_expanded_exponent(xrow[r], detail::d1_expanded_key{kx[2 * j], kx[2 * j + 1]});
      // |x| <= a R^2 <= 3.83 here, inside exp2_fma's range; j is a constant after unrolling.
      const float w =
          kXEvery > 0 && j % kXEvery == kXEvery - 1 ? detail::exp2_fma(x) : detail::fast_exp2(x);
      p[j] = sees_key<kFull>(r, j0 + j, valid) ? w : 0.0f;
      csum += p[j];
    }
    const float f = xfactor[r];
    const float sum = csum * f;
    if (sum <= kLazyLimit) {  // false for inf and NaN too
      softmax[r].sum += sum;
      return {1.0f, f};
    }
#pragma unroll
    for (int j = 0; j < kXC; ++j)
      p[j] = sees_key<kFull>(r, j0 + j, valid) ? distance(r, tile0, j0 + j) : 0.0f;
    const detail::rescale rs = rebase_weights<kFull, kXC>(r, p, j0, valid);
    xfactor[r] = detail::d1_expanded_factor(xrow[r].cq, softmax[r].max);
    return rs;
  }

  // One chunk of kXC keys in the expanded form.
  template <bool kFull>
  __device__ void expanded_chunk(std::size_t tile0, int j0, int valid) {
    float p[kR][kXC];
    detail::rescale rs[kR];
#pragma unroll
    for (int r = 0; r < kR; ++r) rs[r] = expanded_weights<kFull>(r, p[r], tile0, j0, valid);
    accumulate<kXC>(p, rs, j0);
  }

  // The largest key limit of the block's rows (kNoKey without valid_length): one warp
  // reduction and one barrier per block, before the first tile.
  __device__ std::size_t block_key_limit() {
    auto& ms = static_cast<masked_storage&>(smem);
    std::size_t lim = 0;
#pragma unroll
    for (int r = 0; r < kR; ++r) lim = max(lim, key_limit[r]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) lim = max(lim, __shfl_xor_sync(0xffffffffu, lim, o));
    if ((threadIdx.x & 31u) == 0) ms.warp_limits[threadIdx.x / 32] = lim;
    __syncthreads();
    lim = 0;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) lim = max(lim, ms.warp_limits[w]);
    return lim;
  }

  // Whether row r sees key jj of the current tile's chunk: every key of a full, clean chunk;
  // else the tile's valid keys, and under a mask the row's part of them (tile_seen already
  // holds `valid`).
  template <bool kFull>
  __device__ bool sees_key(int r, int jj, int valid) const {
    if constexpr (kFull) {
      return true;
    } else if constexpr (Masked) {
      return tile_seen[r].sees(jj);
    } else {
      return jj < valid;
    }
  }

  // The masked tile walk: runs of clean chunks, where every row of the thread sees every key,
  // through the unmasked full chunk, and between them the one chunk where some row loses a key
  // (its limit, its skipped key, the tile's end) through chunk<false>, whose weights select on
  // sees_key (detail::tile_keys, the rule of detail::key_range in tile coordinates). The two sit in
  // different loops so that nvcc cannot merge them into one chunk that selects everywhere. Per
  // thread, not per warp: the rows of a warp are consecutive, so leave_one_out makes 2 or 3 chunks
  // per tile diverge, valid_length the chunks around the warp's limits (no barrier or shuffle
  // inside a chunk).
  __device__ void consume_masked(std::size_t tile0, int valid) {
#pragma unroll
    for (int r = 0; r < kR; ++r)
      tile_seen[r] = detail::key_range{key_limit[r], skip_key[r]}.in_tile(tile0, valid);
    int j0 = 0;
#pragma unroll 1
    while (j0 < valid) {
      // The clean run ends at the first chunk that holds a row's limit or its skipped key.
      int stop = valid;
#pragma unroll
      for (int r = 0; r < kR; ++r) stop = min(stop, tile_seen[r].clean_end(j0, kC));
#pragma unroll 1
      for (; j0 < stop; j0 += kC) chunk<true>(tile0, j0, valid);
      // Past every row's limit no later chunk holds a key either.
      bool any = false;
#pragma unroll
      for (int r = 0; r < kR; ++r) any = any || j0 < tile_seen[r].limit;
      if (!any) break;
      chunk<false>(tile0, j0, valid);
      j0 += kC;
    }
  }

  template <bool kFull>
  __device__ void consume(std::size_t tile0, int valid) {
    if constexpr (Expanded) {
      if (tile_expanded) {  // warp-uniform, and decided once per tile
#pragma unroll 1
        for (int j0 = 0; j0 < (kFull ? kTile : valid); j0 += kXC)
          expanded_chunk<kFull>(tile0, j0, valid);
        return;
      }
    }
    // j0 < valid <= kTile and kTile % kC == 0, so a chunk [j0, j0 + kC) lies inside the tile.
#pragma unroll 1
    for (int j0 = 0; j0 < (kFull ? kTile : valid); j0 += kC) chunk<kFull>(tile0, j0, valid);
  }

  // The chunk's weights of row r, rebased on the chunk's own maximum score: p holds the kC
  // squared distances on entry and the weights 2^(s_j - chunk max) on return; the row's state
  // absorbs the chunk by the associative merge, whose rescale factors are returned.
  template <bool kFull, int N = kC>
  __device__ detail::rescale rebase_weights(int r, float (&p)[N], int j0, int valid) {
    // The largest score is the score of the smallest distance: every kernel's score is
    // non-increasing in the distance and rounding is monotone, so score(min_j dist_j) ==
    // max_j score(dist_j) (bitwise for the Gaussian). Key j0 is live, except under a mask:
    // there a row may see no key of the chunk, and then cmax = score(inf) = -inf, every weight
    // is selected to 0 and the merge of {-inf, 0} changes nothing.
    constexpr bool kFromInf = Masked && !kFull;
    float mn = kFromInf ? INFINITY : p[0];
#pragma unroll
    for (int j = kFromInf ? 0 : 1; j < N; ++j)
      if (sees_key<kFull>(r, j0 + j, valid)) mn = fminf(mn, p[j]);
    float cmax = score(mn);
    if constexpr (kGenericScore) {
      // No key of the chunk inside a compact support: every weight is 2^(-inf - 0) = 0 and
      // the merge of {-inf, 0} is the identity; -inf - -inf would be NaN.
      if (cmax == -INFINITY) cmax = 0.0f;
    }
    float csum = 0.0f;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      // __fsub_rn forbids contracting score * dist - cmax into one FMA. Contracted, the
      // chunk's best key would get 2^(rounding error of its score) instead of 2^0 = 1, and
      // for far keys at small h (|score| ~ 1e13, ulp ~ 1e6) that is 0 or inf: the sum must
      // keep its >= 1 invariant (up to ex2.approx's 2^-22 relative error).
      const float w = detail::fast_exp2(__fsub_rn(score(p[j]), cmax));
      p[j] = sees_key<kFull>(r, j0 + j, valid) ? w : 0.0f;
      csum += p[j];
    }
    if constexpr (kGenericScore) {
      return softmax[r].merge(detail::online_softmax{csum > 0.0f ? cmax : -INFINITY, csum});
    } else {
      return softmax[r].merge(detail::online_softmax{cmax, csum});
    }
  }

  // The Gaussian path's weights: relative to the row's running reference softmax[r].max (an
  // attained score, not necessarily the largest seen), so that the common chunk, one without a
  // key that beats the reference by much, needs neither its own maximum (one FMNMX per pair)
  // nor a merge (2 exp2 and a rescale per row): its weights 2^(s_j - ref) are added as they
  // are, each at most kLazyLimit. Only a chunk whose sum exceeds kLazyLimit (a key better than
  // the reference by more than log2(kLazyLimit / kC), the first chunk, or an overflow to inf)
  // is redone by rebase_weights on distances recomputed from the tile, which moves the
  // reference to that chunk's maximum. The state (ref, sum, acc) always means
  // sum_j 2^(s_j - ref) (v_j), which is all the merge kernel and store() assume, and sum >= 1
  // still holds: the key that set the reference contributed 2^0.
  // Used where fused_traits::kLazyRescale says (measured there).
  static constexpr float kLazyLimit = 1024.0f;
  /// Below this |reference| (log2 units) lazy_weights fuses score - ref into one FFMA.
  static constexpr float kFmaRefLimit = 65536.0f;

  template <bool kFull>
  __device__ detail::rescale lazy_weights(int r, float (&p)[kC], std::size_t tile0, int j0,
                                          int valid) {
    const float ref = softmax[r].max;  // -inf before the first chunk: every weight is inf
    float csum = 0.0f;
    if (fabsf(ref) < kFmaRefLimit) {
      // One FFMA for score - ref: c * d_j - ref rounded once, more accurate than the rounded
      // score minus ref. The key that set ref = round(c * d_ref) gets 2^(c * d_ref - ref), off
      // from 2^0 by at most half an ulp of ref in the exponent (<= 2^-8 below kFmaRefLimit),
      // which every weight of the chunk shares, so the normalised output does not see it.
#pragma unroll
      for (int j = 0; j < kC; ++j) {
        const float w = detail::fast_exp2(fmaf(score.neg_scale, p[j], -ref));
        p[j] = sees_key<kFull>(r, j0 + j, valid) ? w : 0.0f;
        csum += p[j];
      }
    } else {
      // Far from every key at a small h (|ref| ~ 1e13, ulp ~ 1e6), that residual would be
      // 2^(+-1e6): subtract the rounded score instead (__fsub_rn keeps nvcc from contracting
      // it into the FFMA above), so the key that set ref gets exactly 2^0. Also the first
      // chunk (ref = -inf: every weight inf, so it rebases).
#pragma unroll
      for (int j = 0; j < kC; ++j) {
        const float w = detail::fast_exp2(__fsub_rn(score(p[j]), ref));
        p[j] = sees_key<kFull>(r, j0 + j, valid) ? w : 0.0f;
        csum += p[j];
      }
    }
    if (csum <= kLazyLimit) {  // false for inf and NaN too
      softmax[r].sum += csum;
      return {1.0f, 1.0f};
    }
    // The weights overwrote the distances (a second array would cost kR * kC registers):
    // recompute them. Dead keys stay 0 and are never read (the generic path reads keys from
    // global memory, where a dead key may lie past m).
#pragma unroll
    for (int j = 0; j < kC; ++j)
      p[j] = sees_key<kFull>(r, j0 + j, valid) ? distance(r, tile0, j0 + j) : 0.0f;
    return rebase_weights<kFull>(r, p, j0, valid);
  }

  // Row r's squared distance to key jj of the current tile, exactly as chunk() computes it
  // (same function, same operands): the Gaussian path's recomputation in lazy_weights.
  __device__ float distance(int r, std::size_t tile0, int jj) const {
    if constexpr (traits::kGeneric) {
      const float* kj = a.k + (tile0 + static_cast<std::size_t>(jj)) * a.ldk;
      return detail::squared_distance(q_row[r], kj, a.d);
    } else {
      return detail::squared_distance<D>(q[r], smem.keys + jj * D);
    }
  }

  // One chunk of kC keys: distances, then one exp2 per pair, relative to the row's running
  // reference on the Gaussian path (lazy_weights) or to the chunk's maximum score, merged into
  // the row's state (rebase_weights: the other kernels, and the Gaussian path's rare rebase).
  template <bool kFull>
  __device__ void chunk(std::size_t tile0, int j0, int valid) {
    float p[kR][kC];  // squared distances, then weights
#pragma unroll
    for (int j = 0; j < kC; ++j) {
      if constexpr (traits::kGeneric) {
        const bool live = kFull || j0 + j < valid;
        const float* kj = a.k + (tile0 + static_cast<std::size_t>(j0 + j)) * a.ldk;
#pragma unroll
        for (int r = 0; r < kR; ++r) {
          if constexpr (kGenericScore) {
            const std::size_t key = tile0 + static_cast<std::size_t>(j0 + j);
            // A masked key: distance +inf, so score -inf for every kernel of the family and
            // weight 2^-inf = 0; it never becomes the chunk's minimum unless all keys are
            // masked, and then the chunk is the empty state (cmax = -inf below).
            p[r][j] = !live                                                     ? 0.0f
                      : !detail::key_range{key_limit[r], skip_key[r]}.sees(key) ? INFINITY
                      : x->weighted
                          ? detail::weighted_squared_distance(q_row[r], kj, x->dim_weights, a.d)
                          : detail::squared_distance(q_row[r], kj, a.d);
          } else {
            p[r][j] = live ? detail::squared_distance(q_row[r], kj, a.d) : 0.0f;
          }
        }
      } else {
        // Dead keys of a partial tile read the zero-filled rows: finite, and masked below.
        const float* kj = smem.keys + (j0 + j) * D;
#pragma unroll
        for (int r = 0; r < kR; ++r) p[r][j] = detail::squared_distance<D>(q[r], kj);
      }
    }

    detail::rescale rs[kR];
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      if constexpr (kGenericScore || !traits::kLazyRescale) {
        rs[r] = rebase_weights<kFull>(r, p[r], j0, valid);
      } else {
        rs[r] = lazy_weights<kFull>(r, p[r], tile0, j0, valid);
      }
    }
    accumulate(p, rs, j0);
  }

  // Folds a chunk's weights p (dead keys 0) and its rescale factors into the accumulators.
  template <int N = kC>
  __device__ void accumulate(float (&p)[kR][N], const detail::rescale (&rs)[kR], int j0) {
    if constexpr (traits::kChunkAccumulators) {
      // Narrow windows: sum p . v for the chunk in registers, then fold it in with one FMA per
      // column, acc = acc * self + other * chunk. This keeps the per-pair work at one FMA
      // (no p *= other per pair). The value rows are read once per chunk and shared by the
      // thread's rows; dead keys have p = 0 and zero-filled values.
      float chunk_acc[kR][DV];
#pragma unroll
      for (int r = 0; r < kR; ++r) {
#pragma unroll
        for (int c = 0; c < DV; ++c) chunk_acc[r][c] = 0.0f;
      }
#pragma unroll
      for (int j = 0; j < N; ++j) {
        const float* vj = smem.values + (j0 + j) * DV;
#pragma unroll
        for (int c = 0; c < DV; ++c) {
          const float vc = vj[c];
#pragma unroll
          for (int r = 0; r < kR; ++r) chunk_acc[r][c] = fmaf(p[r][j], vc, chunk_acc[r][c]);
        }
      }
#pragma unroll
      for (int r = 0; r < kR; ++r) {
#pragma unroll
        for (int c = 0; c < DV; ++c)
          acc[r][c] = fmaf(acc[r][c], rs[r].self, rs[r].other * chunk_acc[r][c]);
      }
    } else {
      // Wide windows: a second DV-wide accumulator would not fit in registers, so rescale acc
      // once per chunk and fold `other` into the N weights instead (one extra multiply per
      // pair, small next to the DV FMAs per pair).
#pragma unroll
      for (int r = 0; r < kR; ++r) {
#pragma unroll
        for (int c = 0; c < DV; ++c) acc[r][c] *= rs[r].self;
#pragma unroll
        for (int j = 0; j < N; ++j) p[r][j] *= rs[r].other;
      }
#pragma unroll
      for (int j = 0; j < N; ++j) {
        const float* vj = smem.values + (j0 + j) * DV;
#pragma unroll
        for (int c = 0; c < DV; ++c) {
          const float vc = vj[c];
#pragma unroll
          for (int r = 0; r < kR; ++r) acc[r][c] = fmaf(p[r][j], vc, acc[r][c]);
        }
      }
    }
  }

  __device__ void store() const {
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      if (!row_valid(r)) continue;
      const std::size_t row = row_index(r);
      if (a.partial_acc == nullptr) {  // no split-K and no pool_partial: normalised output
        float inv = softmax[r].inv_sum();
        // A row with no key in a compact support: NaN, which the host side turns into the
        // empty_support policy (error naming the row, or the NaN itself).
        if constexpr (kGenericScore) inv = softmax[r].empty() ? __int_as_float(0x7fffffff) : inv;
        float* dst = a.out + row * a.ldo + col0;
#pragma unroll
        for (int c = 0; c < DV; ++c)
          if (c < cols) dst[c] = acc[r][c] * inv;
      } else {
        // Partial state of this split; the merge kernel combines the splits in a fixed order. Every
        // column window computes the same state bitwise; window 0 writes it.
        const std::size_t slot = static_cast<std::size_t>(blockIdx.z) * a.n + row;
        if (blockIdx.y == 0) {
          a.partial_state[2 * slot] = softmax[r].max;
          a.partial_state[2 * slot + 1] = softmax[r].sum;
        }
        float* dst = a.partial_acc + slot * static_cast<std::size_t>(a.dv) + col0;
#pragma unroll
        for (int c = 0; c < DV; ++c)
          if (c < cols) dst[c] = acc[r][c];
      }
    }
  }
};

/// Thin entry points: the agent does the work. The Gaussian fast path keeps its one-parameter
/// signature (and code); the generic-score path takes its extra parameters beside it.
template <int D, int DV>
__global__ void __launch_bounds__(fused_traits<D, DV>::kThreads)
    fused_pool_kernel(const fused_args args) {
  __shared__ typename fused_agent<D, DV, detail::gaussian_log2_score>::shared_storage smem;
  fused_agent<D, DV, detail::gaussian_log2_score> agent(smem, args);
  agent.run();
}

/// The Gaussian fast path with the expanded d = 1 score (fused_d1_expanded), d = dv = 1 only.
template <int D, int DV>
__global__ void __launch_bounds__(fused_traits<D, DV>::kThreads)
    fused_pool_expanded_kernel(const fused_args args) {
  using agent_t =
      fused_agent<D, DV, detail::gaussian_log2_score, fused_expanded_traits<D, DV>, true>;
  __shared__ typename agent_t::storage_t smem;
  agent_t agent(smem, args);
  agent.run();
}

/// The Gaussian fast path under a mask (fused_masks): the rule is a parameter of its own, so
/// fused_args, and with it the unmasked kernel's code, stay as they are.
template <int D, int DV>
__global__ void __launch_bounds__(fused_traits<D, DV>::kThreads)
    fused_pool_masked_kernel(const fused_args args, const detail::mask_rule rule) {
  using agent_t = fused_agent<D, DV, detail::gaussian_log2_score, fused_traits<D, DV>, false, true>;
  __shared__ typename agent_t::storage_t smem;
  agent_t agent(smem, args);
  agent.run(&rule);
}

template <int DV>
__global__ void __launch_bounds__(fused_traits<0, DV>::kThreads)
    fused_pool_generic_kernel(const fused_args args, const generic_score_args generic) {
  __shared__ typename fused_agent<0, DV, detail::generic_log2_score>::shared_storage smem;
  fused_agent<0, DV, detail::generic_log2_score> agent(smem, args, &generic);
  agent.run();
}

template <int D, int DV, class Score>
void launch_fused_config(const fused_args& args, const fused_plan& plan, stream_t stream,
                         const generic_score_args* generic) {
  using traits = fused_traits<D, DV>;
  const dim3 grid(plan.grid_x, plan.grid_y, static_cast<unsigned>(plan.splits));
  if constexpr (std::is_same_v<Score, detail::gaussian_log2_score>) {
    if constexpr (D == 1 && traits::kLazyRescale) {
      if (fused_d1_expanded()) {
        fused_pool_expanded_kernel<D, DV><<<grid, traits::kThreads, 0, stream>>>(args);
        ATTNPOOL_CHECK_LAUNCH("fused_pool_expanded_kernel");
        return;
      }
    }
    fused_pool_kernel<D, DV><<<grid, traits::kThreads, 0, stream>>>(args);
    ATTNPOOL_CHECK_LAUNCH("fused_pool_kernel");
  } else {
    static_assert(D == 0, "the generic-score path is instantiated for D = 0 only");
    fused_pool_generic_kernel<DV><<<grid, traits::kThreads, 0, stream>>>(args, *generic);
    ATTNPOOL_CHECK_LAUNCH("fused_pool_generic_kernel");
  }
}

template <int D, int DV>
void launch_fused_masked_config(const fused_args& args, const fused_plan& plan, stream_t stream,
                                const detail::mask_rule& rule) {
  using traits = fused_traits<D, DV>;
  const dim3 grid(plan.grid_x, plan.grid_y, static_cast<unsigned>(plan.splits));
  fused_pool_masked_kernel<D, DV><<<grid, traits::kThreads, 0, stream>>>(args, rule);
  ATTNPOOL_CHECK_LAUNCH("fused_pool_masked_kernel");
}

#define ATTNPOOL_FUSED_INSTANTIATE(D)                                                      \
  template void launch_fused_config<D, 1>(const fused_args&, const fused_plan&, stream_t,  \
                                          const generic_score_args*);                      \
  template void launch_fused_config<D, 2>(const fused_args&, const fused_plan&, stream_t,  \
                                          const generic_score_args*);                      \
  template void launch_fused_config<D, 4>(const fused_args&, const fused_plan&, stream_t,  \
                                          const generic_score_args*);                      \
  template void launch_fused_config<D, 8>(const fused_args&, const fused_plan&, stream_t,  \
                                          const generic_score_args*);                      \
  template void launch_fused_config<D, 16>(const fused_args&, const fused_plan&, stream_t, \
                                           const generic_score_args*);                     \
  template void launch_fused_config<D, 32>(const fused_args&, const fused_plan&, stream_t, \
                                           const generic_score_args*);                     \
  template void launch_fused_config<D, 64>(const fused_args&, const fused_plan&, stream_t, \
                                           const generic_score_args*);

#define ATTNPOOL_FUSED_ANY_INSTANTIATE(DV)                              \
  template void launch_fused_config<0, DV, detail::generic_log2_score>( \
      const fused_args&, const fused_plan&, stream_t, const generic_score_args*);

#define ATTNPOOL_FUSED_MASKED_INSTANTIATE(D)                                                      \
  template void launch_fused_masked_config<D, 1>(const fused_args&, const fused_plan&, stream_t,  \
                                                 const detail::mask_rule&);                       \
  template void launch_fused_masked_config<D, 2>(const fused_args&, const fused_plan&, stream_t,  \
                                                 const detail::mask_rule&);                       \
  template void launch_fused_masked_config<D, 4>(const fused_args&, const fused_plan&, stream_t,  \
                                                 const detail::mask_rule&);                       \
  template void launch_fused_masked_config<D, 8>(const fused_args&, const fused_plan&, stream_t,  \
                                                 const detail::mask_rule&);                       \
  template void launch_fused_masked_config<D, 16>(const fused_args&, const fused_plan&, stream_t, \
                                                  const detail::mask_rule&);                      \
  template void launch_fused_masked_config<D, 32>(const fused_args&, const fused_plan&, stream_t, \
                                                  const detail::mask_rule&);                      \
  template void launch_fused_masked_config<D, 64>(const fused_args&, const fused_plan&, stream_t, \
                                                  const detail::mask_rule&);

}  // namespace attnpool::kernels
