// The fused attention-pooling kernel family: its parameters, its one traits struct, the
// runtime-to-compile-time dispatch helper and the launch plan. Host-includable (no device code):
// src/cuda/ plans and launches through this header; kernels/fused_pool.cuh holds the device side
// and kernels/fused_pool_d*.cu instantiate it, one file per query dimension D so that the
// instantiations compile in parallel.
//
// Layers (CUB style):
//   attnpool::cuda::pool            public call, validation          (src/cuda/cuda_api.cpp)
//   plan_fused / launch_fused       picks D, DV, the grid and split-K (here, fused_launch.cu)
//   fused_pool_kernel<D, DV>        thin __global__ entry            (fused_pool.cuh)
//   fused_pool_any_kernel<DV>       same, every kernel of the family and masks (fused_pool.cuh,
//                                   D = 0)
//   fused_agent<D, DV, Score>       walks the key tiles of one block (fused_pool.cuh)
//   merge_states_kernel             merges split-K partial states    (merge_states.cu)
#pragma once

#include <attnpool/detail/online_softmax.hpp>
#include <attnpool/types.hpp>

#include <cstddef>
#include <span>
#include <type_traits>
#include <vector>

namespace attnpool::kernels {

/// One block of a batched launch (pool_batched): query rows [row_begin, row_end) of one problem
/// (at most kRowsPerBlock of them) against that problem's keys [key_begin, key_end). Row and key
/// indices are into the concatenated buffers, so the output row is the query row.
struct fused_block {
  std::size_t row_begin = 0, row_end = 0;
  std::size_t key_begin = 0, key_end = 0;
};

/// Everything one launch reads: pointers, leading dimensions (in elements) and sizes. Plain
/// data, passed by value as the kernel parameter (FlashAttention's params struct).
struct fused_args {
  const float* q = nullptr;  ///< n x d, row stride ldq
  const float* k = nullptr;  ///< m x d, row stride ldk
  const float* v = nullptr;  ///< m x dv, row stride ldv
  float* out = nullptr;      ///< n x dv, row stride ldo (written when partial_acc is null)
  std::size_t ldq = 0, ldk = 0, ldv = 0, ldo = 0;
  std::size_t n = 0, m = 0;
  int d = 0, dv = 0;
  float neg_scale = 0.0f;  ///< the score functor's constant: detail::kernel_constant(kind, h)

  // Split-K (flash-decoding): block z handles keys [z * keys_per_split, (z + 1) * keys_per_split).
  int splits = 1;
  std::size_t keys_per_split = 0;
  float* partial_state = nullptr;  ///< splits x n x {max, sum}          (splits > 1 only)
  float* partial_acc = nullptr;    ///< splits x n x dv unnormalised acc (splits > 1 only)
  // (When partial_acc is set the kernel writes partial states even for splits == 1: that is how
  // pool_partial gets unnormalised states; the merge kernel then writes them out.)

  // Batched launch (pool_batched): block x runs batch_blocks[blockIdx.x] (device memory, grid_x
  // entries, built by plan_batch_blocks) instead of rows [x * kRowsPerBlock, ...) against
  // every key; n is then the total number of query rows, splits 1. Null: one problem.
  const fused_block* batch_blocks = nullptr;
};

/// What the any-kernel instantiations (fused_pool_any.cu: non-Gaussian kernels, anisotropic
/// bandwidths, masks) read on top of fused_args. A second kernel parameter rather than more fields of
/// fused_args, so that the Gaussian fast path's parameter block, and with it its code, stays
/// exactly as it was (a 256-byte array in fused_args changed how nvcc addresses the whole block).
struct any_kernel_args {
  attnpool::kernel kind = attnpool::kernel::gaussian;
  /// Anisotropic bandwidth: 1 = squared differences are weighted by dim_weights[c] = 1 / h_c^2
  /// (d <= kMaxGpuAnisotropicDims; the functor's h is then 1). In the parameter block, so no
  /// device copy is needed and the call stays asynchronous.
  int weighted = 0;
  float dim_weights[kMaxGpuAnisotropicDims] = {};
  /// Which keys each query sees (pool_params::mask): a masked key's distance becomes +inf, so
  /// its score is -inf and its weight exactly 0, with no n x m mask stored. Masked calls run
  /// this path whatever the kernel, so the Gaussian fast path's code stays mask-free.
  attnpool::mask mask = attnpool::mask::none;
  /// mask::valid_length only: n counts in device memory (the caller's workspace), row i sees
  /// keys [0, valid_lens[i]).
  const std::size_t* valid_lens = nullptr;
};

/// Tile constants of fused_pool_kernel<D, DV>. D is the query dimension the kernel is compiled
/// for (a run-time d <= D is zero-padded to D, which leaves every distance exactly unchanged);
/// D == 0 is the generic path for d > 64, which reads query and key rows from global memory
/// (L1) instead of registers and shared memory. DV is the width of the value-column window one
/// block accumulates in registers; wider dv uses several windows (grid.y).
///
/// Measured for d = dv = 1 on an NVIDIA H100 80GB HBM3 (132 SMs, 1980 MHz; 2026-11-26) with
/// bench/cuda/bench_fused_tuning at n = m = 2^20 (pairs/s; exp2 bound 4.18e12):
///
/// (run B, before the lazy rescale of kLazyRescale, which changed the d = dv = 1 choice to one
/// row per thread: see there)
///   threads rows/thread chunk tile | regs blocks/SM | pairs/s
///   128     2           16    128  |  72   7        | 2.53e12 (60.4 %)
///   128     1           16    128  |  47  10        | 2.53e12
///    64     2           16    128  |  72  14        | 2.50e12
///   256     2           16    256  |  64   4        | 2.47e12
///   128     2           32    128  | 127   4        | 2.40e12
///   128     4           16    128  | 128   4        | 2.31e12
///   256     4           16    256  | 128   2        | 2.31e12
///   128     4           32    256  | 255   2        | 2.27e12
///   128     2            8    128  |  53   9        | 2.09e12
///
/// Chunk 8 pays its per-chunk merge (2 exp2 and a rescale per row) twice as often; chunk 32 and
/// 4 rows per thread double the registers and halve the resident blocks. The SASS of the chosen
/// configuration (cuobjdump on that machine) has 303 instructions per full 16-key chunk of 2 rows,
/// 36 of them MUFU.EX2: 9.5 issue slots per pair, so issue, not the MUFU pipe, bounds it near
/// 84 % of the exp2 bound; it reaches 72 % of that ceiling. The other shapes' constants follow
/// the same rules by register count and are not separately measured: kRowsPerThread 2 only
/// while the per-row registers (D + DV) stay <= 8, kChunk 8 and kTileKeys 64 for wide rows.
///  - kThreads 128: four warps per block.
///  - kRowsPerThread: 2 where D + DV <= 8 and the rescale is eager, so that two query rows share
///    every shared-memory key and value read; 1 elsewhere, the lazy d = dv = 1 path included
///    (measured faster there, see kLazyRescale).
///  - kChunk 16: one online-softmax merge per chunk; its distances stay in registers.
///  - kTileKeys 128: keys staged per __syncthreads pair.
template <int D, int DV>
struct fused_traits {
  static_assert(D == 0 || D == 1 || D == 2 || D == 3 || D == 4 || D == 8 || D == 16 || D == 32 ||
                    D == 64,
                "fused_traits: D must be one of the compiled query dimensions (0 = generic)");
  static_assert(DV == 1 || DV == 2 || DV == 4 || DV == 8 || DV == 16 || DV == 32 || DV == 64,
                "fused_traits: DV must be a power of two <= 64");

  static constexpr bool kGeneric = D == 0;
  /// Registers per query row that scale with the shape (query row + accumulators).
  static constexpr int kRowRegs = (kGeneric ? 0 : D) + DV;

  /// Gaussian weights relative to each row's running reference, rebased only when a chunk's
  /// weights sum past a limit (fused_agent::lazy_weights), with score - reference in one FFMA:
  /// saves the per-pair FMNMX and FMUL and the per-chunk merge (4 of the 36 MUFU.EX2 per chunk
  /// of 2 rows); the SASS of the full chunk drops from 303 to about 226 instructions per 32
  /// pairs, so the MUFU pipe, not issue, becomes the bound. It costs registers (d = dv = 1:
  /// 72 -> 106 at 2 rows per thread, ptxas 13.0; dv = 4: 80 -> 128), which is why it is limited
  /// to d = dv = 1. Measured on the H100 (bench_fused_tuning, n = m = 2^20, 2026-11-26 run C):
  ///   eager, 2 rows/thread (the previous default)   72 regs  7 blocks/SM  2.41e12 pairs/s
  ///   lazy,  2 rows/thread                          106 regs  4 blocks/SM  2.79e12
  ///   lazy,  1 row/thread (these traits)             76 regs  6 blocks/SM  3.00e12 (71.8 %)
  /// (the eager default gave 2.53e12 in run B: about 5 % run-to-run spread). The GPU tests of
  /// run C ran the lazy path at 2 rows per thread; 1 row per thread gave bitwise the same
  /// output on the tuning problem (max_diff 0), and that row count is the one every wider
  /// shape already uses.
  static constexpr bool kLazyRescale = !kGeneric && kRowRegs <= 2;

  static constexpr int kThreads = 128;
  static constexpr int kRowsPerThread = kLazyRescale ? 1 : kRowRegs <= 8 ? 2 : 1;
  static constexpr int kChunk = kRowRegs <= 48 ? 16 : 8;
  static constexpr int kTileKeys = kRowRegs <= 64 ? 128 : 64;
  static constexpr int kRowsPerBlock = kThreads * kRowsPerThread;
  /// Accumulate each chunk's p . v in a second register array and fold it in once per chunk
  /// (saves a multiply per pair) where that array is small; else scale the weights.
  static constexpr bool kChunkAccumulators = kRowsPerThread * DV <= 16;

  /// Floats of shared memory per tile: keys (not staged on the generic path) and values.
  static constexpr int kKeyFloats = kGeneric ? 0 : kTileKeys * D;
  static constexpr int kValueFloats = kTileKeys * DV;
  static constexpr std::size_t kSmemBytes = sizeof(float) * (kKeyFloats + kValueFloats);

  /// Resident blocks per SM assumed when sizing split-K (the grid should cover every SM this
  /// many times). Below the 6-7 the occupancy API reports for d = dv = 1 on an H100, so that the
  /// split ranges stay long; the split heuristic itself is not tuned.
  static constexpr int kBlocksPerSm = 4;

  static_assert(kThreads % 32 == 0, "whole warps only");
  static_assert(kTileKeys % kChunk == 0,
                "a chunk never straddles a tile, so chunk reads stay inside the shared arrays");
  static_assert(kSmemBytes <= 48 * 1024, "static shared memory is limited to 48 KiB per block");
  static_assert(kRowsPerThread * (kChunk + kRowRegs + (kChunkAccumulators ? DV : 0)) <= 160,
                "live registers per thread must leave room under the 255-register cap");
};

/// Compile-time dimension tag handed to dispatch_dims' callback.
template <int N>
using dim_c = std::integral_constant<int, N>;

/// The compiled query dimension that serves a run-time d: the smallest of {1, 2, 3, 4, 8, 16,
/// 32, 64} that is >= d, else 0 (generic path).
constexpr int fused_d_bucket(std::size_t d) {
  if (d <= 4) return static_cast<int>(d);
  if (d <= 8) return 8;
  if (d <= 16) return 16;
  if (d <= 32) return 32;
  if (d <= 64) return 64;
  return 0;
}

/// The value-column window that serves a run-time dv: the smallest power of two >= dv, capped
/// at 64 (wider dv runs ceil(dv / 64) windows).
constexpr int fused_dv_bucket(std::size_t dv) {
  int b = 1;
  while (b < 64 && static_cast<std::size_t>(b) < dv) b *= 2;
  return b;
}

namespace dispatch_impl {
template <int D, class F>
decltype(auto) dispatch_dv(int dv_bucket, F&& f) {
  switch (dv_bucket) {
    case 1:
      return f(dim_c<D>{}, dim_c<1>{});
    case 2:
      return f(dim_c<D>{}, dim_c<2>{});
    case 4:
      return f(dim_c<D>{}, dim_c<4>{});
    case 8:
      return f(dim_c<D>{}, dim_c<8>{});
    case 16:
      return f(dim_c<D>{}, dim_c<16>{});
    case 32:
      return f(dim_c<D>{}, dim_c<32>{});
    default:
      return f(dim_c<D>{}, dim_c<64>{});
  }
}
}  // namespace dispatch_impl

/// THE runtime-to-compile-time switch of the fused family: calls f(dim_c<D>{}, dim_c<DV>{}) for
/// the compiled configuration that serves (d, dv). Every (D, DV) it can name is instantiated in
/// kernels/fused_pool_d*.cu.
template <class F>
decltype(auto) dispatch_dims(std::size_t d, std::size_t dv, F&& f) {
  const int dvb = fused_dv_bucket(dv);
  switch (fused_d_bucket(d)) {
    case 1:
      return dispatch_impl::dispatch_dv<1>(dvb, f);
    case 2:
      return dispatch_impl::dispatch_dv<2>(dvb, f);
    case 3:
      return dispatch_impl::dispatch_dv<3>(dvb, f);
    case 4:
      return dispatch_impl::dispatch_dv<4>(dvb, f);
    case 8:
      return dispatch_impl::dispatch_dv<8>(dvb, f);
    case 16:
      return dispatch_impl::dispatch_dv<16>(dvb, f);
    case 32:
      return dispatch_impl::dispatch_dv<32>(dvb, f);
    case 64:
      return dispatch_impl::dispatch_dv<64>(dvb, f);
    default:
      return dispatch_impl::dispatch_dv<0>(dvb, f);
  }
}

/// How one fused call is laid out on the GPU.
struct fused_plan {
  int d_bucket = 0, dv_bucket = 0;  ///< the compiled (D, DV)
  unsigned grid_x = 0;              ///< blocks of kRowsPerBlock query rows
  unsigned grid_y = 0;              ///< value-column windows of DV columns
  int splits = 1;                   ///< grid_z: key ranges (1 = no split-K)
  std::size_t keys_per_split = 0;
  std::size_t rows_per_block = 0;
};

/// Picks the configuration and split-K for a problem. `sm_count` is the device's multiprocessor
/// count; `forced_splits` 0 lets the heuristic decide, >= 1 requests that many key ranges
/// (clamped so that every range holds at least one key). `any_kernel`: the call runs the
/// any-kernel instantiations (uses_any_kernel), whose tiles are those of D = 0. Pure function of
/// its arguments, so the workspace query and the launch agree on the same device.
fused_plan plan_fused(std::size_t n, std::size_t m, std::size_t d, std::size_t dv, int sm_count,
                      int forced_splits = 0, bool any_kernel = false);

/// Query rows one block of the (d, dv) configuration handles (fused_traits::kRowsPerBlock).
std::size_t fused_rows_per_block(std::size_t d, std::size_t dv, bool any_kernel = false);

/// The block table of a batched launch: problem b's query rows [query_offsets[b],
/// query_offsets[b + 1]) cut into blocks of at most rows_per_block rows, each against the keys
/// [key_offsets[b], key_offsets[b + 1]); problems without queries get no block. Offsets must be
/// validated (B + 1 each, non-decreasing). Host code, no device needed.
std::vector<fused_block> plan_batch_blocks(std::span<const std::size_t> query_offsets,
                                           std::span<const std::size_t> key_offsets,
                                           std::size_t rows_per_block);

/// An upper bound on plan_batch_blocks(...).size() that needs only the totals: every problem
/// wastes at most one partial block, so ceil(total_rows / rows_per_block) + problems.
std::size_t max_batch_blocks(std::size_t problems, std::size_t total_rows,
                             std::size_t rows_per_block);

/// The plan of a batched launch over `blocks` table entries: the compiled (D, DV), grid_x =
/// blocks, the value windows, no split-K.
fused_plan plan_fused_batched(std::size_t blocks, std::size_t d, std::size_t dv,
                              bool any_kernel = false);

/// Alignment of every array carved out of a workspace (cudaMalloc's guarantee).
inline constexpr std::size_t kWorkspaceAlign = 256;

constexpr std::size_t align_up(std::size_t x, std::size_t a = kWorkspaceAlign) {
  return (x + a - 1) / a * a;
}

/// Enqueues the fused kernel (and the merge kernel when plan.splits > 1) on `stream`. `args`
/// holds the problem and, for split-K, partial_state / partial_acc carved from the workspace;
/// the split fields of `args` are filled in from `plan`. `any` null: the Gaussian fast path;
/// else the any-kernel path (plan made with any_kernel = true). Throws cuda_error on a launch
/// failure.
void launch_fused(fused_args args, const fused_plan& plan, stream_t stream,
                  const any_kernel_args* any = nullptr);

/// Where launch_fused_partial writes the merged, unnormalised state of every query row: max[i],
/// sum[i] and acc row i (n x dv, row stride acc_ld). Device memory.
struct partial_target {
  float* max = nullptr;
  float* sum = nullptr;
  float* acc = nullptr;
  std::size_t acc_ld = 0;
};

/// pool_partial's launch: the fused kernel writes per-split partial states into
/// args.partial_state / args.partial_acc (required, also for plan.splits == 1: splits x n x 2
/// and splits x n x dv floats), then the merge kernel merges the splits in its fixed order into
/// `dst`.
void launch_fused_partial(fused_args args, const fused_plan& plan, stream_t stream,
                          const any_kernel_args* any, const partial_target& dst);

/// One compiled configuration's launch (defined in fused_pool.cuh, instantiated per D). Score is
/// the per-pair score functor: the Gaussian's for the 63 fast-path configurations; the
/// run-time-switched detail::any_log2_score (every kernel, anisotropic distances) only for the
/// generic D = 0 path and the 7 value windows (kernels/fused_pool_any.cu), so the kernel family
/// costs 7 instantiations, not 4 x 63. Non-Gaussian kernels are therefore not the fast path for
/// small d: they read query and key rows through L1 instead of registers / shared memory.
template <int D, int DV, class Score = detail::gaussian_log2_score>
void launch_fused_config(const fused_args& args, const fused_plan& plan, stream_t stream,
                         const any_kernel_args* any = nullptr);

#define ATTNPOOL_FUSED_EXTERN(D)                                                                  \
  extern template void launch_fused_config<D, 1>(const fused_args&, const fused_plan&, stream_t,  \
                                                 const any_kernel_args*);                         \
  extern template void launch_fused_config<D, 2>(const fused_args&, const fused_plan&, stream_t,  \
                                                 const any_kernel_args*);                         \
  extern template void launch_fused_config<D, 4>(const fused_args&, const fused_plan&, stream_t,  \
                                                 const any_kernel_args*);                         \
  extern template void launch_fused_config<D, 8>(const fused_args&, const fused_plan&, stream_t,  \
                                                 const any_kernel_args*);                         \
  extern template void launch_fused_config<D, 16>(const fused_args&, const fused_plan&, stream_t, \
                                                  const any_kernel_args*);                        \
  extern template void launch_fused_config<D, 32>(const fused_args&, const fused_plan&, stream_t, \
                                                  const any_kernel_args*);                        \
  extern template void launch_fused_config<D, 64>(const fused_args&, const fused_plan&, stream_t, \
                                                  const any_kernel_args*);
ATTNPOOL_FUSED_EXTERN(0)
ATTNPOOL_FUSED_EXTERN(1)
ATTNPOOL_FUSED_EXTERN(2)
ATTNPOOL_FUSED_EXTERN(3)
ATTNPOOL_FUSED_EXTERN(4)
ATTNPOOL_FUSED_EXTERN(8)
ATTNPOOL_FUSED_EXTERN(16)
ATTNPOOL_FUSED_EXTERN(32)
ATTNPOOL_FUSED_EXTERN(64)
#undef ATTNPOOL_FUSED_EXTERN
#define ATTNPOOL_FUSED_ANY_EXTERN(DV)                                      \
  extern template void launch_fused_config<0, DV, detail::any_log2_score>( \
      const fused_args&, const fused_plan&, stream_t, const any_kernel_args*);
ATTNPOOL_FUSED_ANY_EXTERN(1)
ATTNPOOL_FUSED_ANY_EXTERN(2)
ATTNPOOL_FUSED_ANY_EXTERN(4)
ATTNPOOL_FUSED_ANY_EXTERN(8)
ATTNPOOL_FUSED_ANY_EXTERN(16)
ATTNPOOL_FUSED_ANY_EXTERN(32)
ATTNPOOL_FUSED_ANY_EXTERN(64)
#undef ATTNPOOL_FUSED_ANY_EXTERN

}  // namespace attnpool::kernels
