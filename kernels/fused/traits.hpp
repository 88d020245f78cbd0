// Tile constants of the fused forward family, one traits struct (FlashAttention's Kernel_traits).
// Host-includable: the planner sizes grids and shared memory from it.
#pragma once

#include <cstddef>

namespace attnpool::kernels {

/// Tile constants of fused_pool_kernel<D, DV>. D is the query dimension the kernel is compiled
/// for (a run-time d <= D is zero-padded to D, which leaves every distance exactly unchanged);
/// D == 0 is the generic path for d > 64, which reads query and key rows from global memory
/// (L1) instead of registers and shared memory. DV is the width of the value-column window one
/// block accumulates in registers; wider dv uses several windows (grid.y).
///
/// Tuning: bench/cuda/bench_fused_tuning at n = m = 2^20, d = dv = 1, on an NVIDIA H100 80GB HBM3
/// (2026-11-26; the sweep and the SASS counts are in bench/runs/2026-11-26-h100.md). Shapes
/// other than d = dv = 1 follow the same rules by register count and are not measured apart.
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
  /// weights sum past a limit (fused_agent::lazy_weights): score - reference is one FFMA and the
  /// per-chunk merge goes away. It costs registers, hence d = dv = 1 only.
  /// H100, d = dv = 1: 3.00e12 pairs/s lazy at 1 row/thread vs 2.41e12 eager at 2 rows/thread.
  static constexpr bool kLazyRescale = !kGeneric && kRowRegs <= 2;

  /// H100, d = dv = 1: 128 threads 2.53e12 pairs/s, 64 2.50e12, 256 2.47e12 (eager, 2 rows).
  static constexpr int kThreads = 128;
  /// Two rows share every shared-memory read while D + DV <= 8; H100, d = dv = 1, lazy: 1 row
  /// 3.00e12 pairs/s vs 2 rows 2.79e12 (4 rows, eager: 2.31e12).
  static constexpr int kRowsPerThread = kLazyRescale ? 1 : kRowRegs <= 8 ? 2 : 1;
  /// Keys per online-softmax merge, their distances in registers; H100, d = dv = 1, eager:
  /// 16 2.53e12 pairs/s, 8 2.09e12, 32 2.40e12. 8 for wide rows (register pressure).
  static constexpr int kChunk = kRowRegs <= 48 ? 16 : 8;
  /// Keys per chunk of the expanded d = 1 score (fused_d1_expanded), where a pair costs about
  /// 4.75 instructions and the per-chunk work (lazy test, factor, loop) weighs more. SASS,
  /// sm_90, every exp2 on MUFU: 16 keys 5.69 instructions per pair at 72 registers, 32 keys
  /// 5.22 at 78 (the default kernel's occupancy class: it has 76). Not measured on a GPU.
  static constexpr int kExpandedChunk = 32;
  /// Pairs per expanded chunk whose exp2 runs on the FMA pipe (detail::exp2_fma, degree 5, as
  /// accurate as MUFU.EX2), so that both pipes work once the rest of a pair is cheap: 4 of 32
  /// (every 8th) is the issue-slot balance of bench/runs/2026-12-03-sass-d1.md, a paper
  /// estimate to tune on the device (0 turns it off): 6.50 instructions and 0.875 MUFU.EX2 per
  /// pair at 79 registers.
  static constexpr int kExpandedEmulatedExp2 = 4;
  /// Keys staged per __syncthreads pair; H100, d = dv = 1, eager: 128 2.53e12 pairs/s,
  /// 256 (256 threads) 2.47e12. 64 for wide rows (48 KiB of static shared memory).
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

/// The expanded d = 1 kernel's constants (fused_pool_expanded_kernel): fused_traits<D, DV> with
/// tiles of 256 keys, because each tile adds a second barrier and its centre, expanded keys and
/// row constants (about 100 instructions per thread, d = 1) to the default tile's work; 256 keys
/// halve that per pair. Rows per block are unchanged, so the plan's grid fits. Not measured on
/// a GPU.
template <int D, int DV>
struct fused_expanded_traits : fused_traits<D, DV> {
  static constexpr int kTileKeys = 256;
  static constexpr int kKeyFloats = kTileKeys * D;
  static constexpr int kValueFloats = kTileKeys * DV;
  static constexpr std::size_t kSmemBytes = sizeof(float) * (kKeyFloats + kValueFloats);
  static_assert(kSmemBytes + sizeof(float) * 2 * kTileKeys <= 48 * 1024,
                "static shared memory is limited to 48 KiB per block");
};

/// Whether the tensor-core kernel is compiled for (D, DV): the query dimensions that fill whole
/// k-steps of 8 and the narrow value windows, whose P . V stays in FFMAs on the mma's fragments.
constexpr bool fused_tc_serves(int d, int dv) {
  return (d == 16 || d == 32 || d == 64) && dv >= 1 && dv <= 8;
}

/// Tile constants of fused_pool_tc_kernel<D, DV> (kernels/fused/tc_agent.cuh), FlashAttention-2's
/// forward on mma.sync m16n8k8 tf32: 4 warps, each 32 query rows (two m16 tiles), against key
/// tiles in shared memory. The block holds fused_traits' rows with its threads, so that the plan
/// (grid, split-K) is the FFMA kernel's and a block can run the FFMA agent instead. Paper
/// choices from register counts; not measured on a GPU.
template <int D, int DV>
struct fused_tc_traits {
  static_assert(fused_tc_serves(D, DV), "fused_tc_traits: D in {16, 32, 64}, DV <= 8");
  using ffma_traits = fused_traits<D, DV>;

  static constexpr int kThreads = 128;
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kMTiles = 2;  ///< m16 tiles per warp
  static constexpr int kRowsPerBlock = kWarps * 16 * kMTiles;
  static constexpr int kKSteps = D / 8;  ///< k8 steps of one score
  /// Keys per tile: one thread stages each key where the tile fits (SASS, sm_90, D = 16, DV = 1:
  /// 64 keys staged by two threads each cost 4.3 instructions per pair beside the 5.1 of the
  /// scores and weights); 64 at D = 64, whose split keys take 576 bytes each.
  static constexpr int kTileKeys = D == 64 ? 64 : 128;
  static constexpr int kThreadsPerKey = kThreads / kTileKeys;
  /// n8 blocks whose scores are live at once (4 registers each per m tile): 8 at D = 16, fewer
  /// where the query's split parts (2 D registers per thread) take the room.
  static constexpr int kChunkBlocks = D == 16 ? 8 : D == 32 ? 4 : 2;
  /// Floats per staged key: per k-step the quad lane t's {big_t, big_t+4, small_t, small_t+4}
  /// (one LDS.128 is a lane's two B fragments), padded by 16 so that the 8 lanes of an LDS.128
  /// phase (two keys) hit all 32 banks once.
  static constexpr int kKeyStride = 2 * D + 16;
  static constexpr int kKeyFloats = kTileKeys * kKeyStride;
  static constexpr int kValueFloats = kTileKeys * DV;

  static_assert(kThreads == ffma_traits::kThreads && kRowsPerBlock == ffma_traits::kRowsPerBlock,
                "a block is the FFMA kernel's block, so that it can fall back to the FFMA agent");
  static_assert(kTileKeys % (8 * kChunkBlocks) == 0, "whole chunks per tile");
  static_assert(kThreadsPerKey * kTileKeys == kThreads &&
                    (kThreadsPerKey == 1 || kThreadsPerKey == 2),
                "one or two threads stage each key");
  static_assert(sizeof(float) * (kKeyFloats + kTileKeys + kValueFloats + 2 * D + kWarps) <=
                    48 * 1024,
                "static shared memory is limited to 48 KiB per block");
};

}  // namespace attnpool::kernels
