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

}  // namespace attnpool::kernels
