// Pieces shared by the host engines (src/cpu/engine.cpp, src/api/backward.cpp, src/api/bandwidth.cpp):
// the tile size, the per-ISA function cloning, column packing and the row-parallel driver.
#pragma once

#include <attnpool/detail/mask.hpp>
#include <attnpool/error.hpp>
#include <attnpool/types.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(ATTNPOOL_NO_MULTIVERSIONING)
#define ATTNPOOL_CLONES 1
#define ATTNPOOL_MULTIVERSION \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
// Code that only the AVX-512 clone calls, and code that only the others call: one and two
// compilations instead of three (the AVX-512 dot tile compiled for AVX2 and baseline was dead
// code that cost minutes of build, most under the sanitizers).
#define ATTNPOOL_V4_ONLY __attribute__((target("arch=x86-64-v4")))
#define ATTNPOOL_BELOW_V4 __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define ATTNPOOL_CLONES 0
#define ATTNPOOL_MULTIVERSION
#define ATTNPOOL_V4_ONLY
#define ATTNPOOL_BELOW_V4
#endif

// Complete unrolling of the tile loops (register tiles need constant indices). Sanitizer builds
// do not unroll: they check the same accesses, and the unrolled multi-row tiles took minutes per
// clone to compile under AddressSanitizer.
#define ATTNPOOL_HOST_PRAGMA(x) _Pragma(#x)
#if defined(__SANITIZE_ADDRESS__)
#define ATTNPOOL_HOST_UNROLL(n)
#else
#define ATTNPOOL_HOST_UNROLL(n) ATTNPOOL_HOST_PRAGMA(GCC unroll n)
#endif

namespace attnpool::detail {

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
inline std::vector<float> pack_columns(const_view a) {
  std::vector<float> out(a.rows * a.cols);
  for (std::size_t j = 0; j < a.rows; ++j)
    for (std::size_t c = 0; c < a.cols; ++c) out[c * a.rows + j] = a(j, c);
  return out;
}

// Runs body(begin, end, scratch) for chunks of `chunk` rows covering [0, n) on `threads` workers
// (0: every hardware thread; more than the hardware threads or kMaxThreads are clamped). Each
// row is computed by one thread with a fixed key order, so results do not depend on the thread
// count or scheduling. A thread that cannot be started stops the call with attnpool::error once
// the started ones are joined.
template <class Body>
void parallel_row_chunks(std::size_t n, std::size_t chunk, std::size_t pairs_per_row,
                         unsigned threads, std::size_t scratch_floats, Body body) {
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  unsigned t = std::min({threads == 0 ? hw : threads, hw, kMaxThreads});
  const std::size_t by_work = std::max<std::size_t>(1, n * pairs_per_row / kMinPairsPerThread);
  const std::size_t by_rows = (n + chunk - 1) / chunk;
  t = static_cast<unsigned>(std::min<std::size_t>({t, by_work, by_rows}));
  // Allocate every scratch buffer before any thread starts: nothing inside a worker can throw.
  std::vector<std::vector<float>> scratch(t, std::vector<float>(scratch_floats));
  std::atomic<std::size_t> next{0};
  auto worker = [&](unsigned id) {
    for (;;) {
      const std::size_t begin = next.fetch_add(chunk, std::memory_order_relaxed);
      if (begin >= n) return;
      body(begin, std::min(n, begin + chunk), scratch[id].data());
    }
  };
  if (t == 1) {
    worker(0);
    return;
  }
  std::vector<std::jthread> pool;
  pool.reserve(t - 1);
  for (unsigned id = 1; id < t; ++id) {
    try {
      pool.emplace_back(worker, id);
    } catch (const std::system_error& e) {
      next.store(n, std::memory_order_relaxed);  // the started workers stop at their next chunk
      pool.clear();                              // and are joined here
      throw error(concat("CPU engine: could not start worker thread ", id + 1, " of ", t, " (",
                         e.what(), "); lower options.threads or raise the process's thread and ",
                         "memory limits"));
    }
  }
  worker(0);
}

// Runs body(row, scratch) for rows [0, n), kRowChunk rows at a time: parallel_row_chunks.
template <class Body>
void parallel_rows(std::size_t n, std::size_t pairs_per_row, unsigned threads,
                   std::size_t scratch_floats, Body body) {
  parallel_row_chunks(n, kRowChunk, pairs_per_row, threads, scratch_floats,
                      [&](std::size_t begin, std::size_t end, float* buf) {
                        for (std::size_t i = begin; i < end; ++i) body(i, buf);
                      });
}

// r[t] = sum_c (a_c - bt[c * stride + t0 + t])^2 for t in [0, len): squared distances of one
// point to a tile of column-major points (defined once in src/cpu/engine.cpp, multiversioned). The
// backward pass's and the bandwidth sweep's distance tiles.
void dist_tile(const float* a, const float* bt, std::size_t stride, std::size_t d, std::size_t t0,
               std::size_t len, float* r);

// sum_j p[j] * v[j], vectorised (defined once in src/cpu/engine.cpp, multiversioned there). The
// engine's, the backward pass's and the bandwidth sweep's dot products over a tile.
float dot_tile(const float* p, const float* v, std::size_t len);

// out[r * cols + c] = sum_j p[r][j] * v[c * ld + j] for rows r < rows and value columns c < cols:
// dot_tile for a group of weight rows against several value columns at once; a product's bits do
// not depend on the group (defined once in src/cpu/engine.cpp, multiversioned there). `wide`: the
// AVX-512 clone is running (it sizes the register tile).
void dot_tile_rows(const float* const* p, std::size_t rows, const float* v, std::size_t ld,
                   std::size_t len, std::size_t cols, bool wide, float* out);

// out[r][t] = sum_c coef[r][c] * bt[c * stride + t0 + t] for r < rows and t < len, each in
// column order (coef[r][0] bt[0] first, then an FMA per column): several coefficient rows against
// one column-major tile, the tile loaded once for all of them (defined once in src/cpu/engine.cpp,
// multiversioned there). `wide` as for dot_tile_rows.
void dot_cols_rows(const float* const* coef, std::size_t rows, const float* bt, std::size_t stride,
                   std::size_t cols, std::size_t t0, std::size_t len, bool wide, float* const* out);

// Whether a call scores with the AVX-512 register tiles (the clone in use, unless
// ATTNPOOL_CPU_DOT_GROUP=4): the `wide` of dot_tile_rows and dot_cols_rows. Read it once per call.
bool cpu_wide_tiles();

}  // namespace attnpool::detail
