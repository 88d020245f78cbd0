// Measures the tile constants of kernels/fused/traits.hpp (fused_traits) on the GPU at hand: the
// fused kernel for d = dv = 1 (the notebook's shape and the headline), instantiated through
// kernels/fused/tuning.cuh with variants of its traits, each timed with CUDA events on the same buffers and checked against
// the library's own kernel (max |difference|, which must be rounding-sized).
//
// Counters: pairs/s, exp2_% (of SMs x 16 MUFU.EX2/clk x clock), regs (registers per thread),
// spill (local-memory bytes per thread; must be 0), blocks/SM (resident, from the occupancy
// API), max_diff (vs attnpool::cuda::pool). The variant named "default" is fused_traits<1, 1>.
//
// Variant names: t<threads>_r<rows per thread>_c<chunk>_k<keys per tile>[_eager|_lazy] (the
// rescale strategy, fused_traits::kLazyRescale; without a suffix: the default's).
#include <attnpool/cuda.hpp>
#include <attnpool/detail/online_softmax.hpp>
#include <attnpool/detail/scores.hpp>

#include "bench_cuda_support.hpp"
#include "kernels/fused/tuning.cuh"

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using attnpool::kernels::fused_args;
using attnpool::kernels::fused_traits;

template <int Threads, int Rows, int Chunk, int Tile, bool Lazy = fused_traits<1, 1>::kLazyRescale>
struct variant : fused_traits<1, 1> {
  static constexpr bool kLazyRescale = Lazy;
  static constexpr int kThreads = Threads;
  static constexpr int kRowsPerThread = Rows;
  static constexpr int kChunk = Chunk;
  static constexpr int kTileKeys = Tile;
  static constexpr int kRowsPerBlock = Threads * Rows;
  static constexpr bool kChunkAccumulators = Rows <= 16;
  static constexpr int kKeyFloats = Tile;
  static constexpr int kValueFloats = Tile;
  static_assert(Tile % Chunk == 0, "a chunk never straddles a tile");
};

// The expanded d = 1 score (ATTNPOOL_CUDA_D1_EXPANDED): tile, chunk and the exp2s per chunk
// on the FMA pipe (kernels/fused/traits.hpp, fused_expanded_traits).
template <int Tile, int Chunk, int Emulated>
struct xvariant : attnpool::kernels::fused_expanded_traits<1, 1> {
  static constexpr bool kExpanded = true;
  static constexpr int kTileKeys = Tile;
  static constexpr int kKeyFloats = Tile;
  static constexpr int kValueFloats = Tile;
  static constexpr int kExpandedChunk = Chunk;
  static constexpr int kExpandedEmulatedExp2 = Emulated;
};

using attnpool::bench::check;

struct device_buffers {
  std::size_t n = 0;
  float *q = nullptr, *k = nullptr, *v = nullptr, *out = nullptr, *ref = nullptr;
  void* ws = nullptr;
  std::size_t ws_bytes = 0;
  double exp2_per_s = 0.0;

  explicit device_buffers(std::size_t count) : n(count) {
    std::vector<float> h(count);
    std::uint32_t s = 12345u;
    auto fill = [&](float*& p, float lo) {
      for (float& x : h) {
        s = s * 1664525u + 1013904223u;
        x = lo + static_cast<float>(s >> 8) * (1.0f / 16777216.0f);
      }
      check(cudaMalloc(&p, count * sizeof(float)), "cudaMalloc");
      check(cudaMemcpy(p, h.data(), count * sizeof(float), cudaMemcpyHostToDevice), "upload");
    };
    fill(q, 0.0f);
    fill(k, 0.0f);
    fill(v, -0.5f);
    check(cudaMalloc(&out, count * sizeof(float)), "cudaMalloc");
    check(cudaMalloc(&ref, count * sizeof(float)), "cudaMalloc");
    attnpool::options opts;
    opts.backend = attnpool::backend::cuda_fused;
    opts.check_finite = false;
    ws_bytes = attnpool::cuda::pool_workspace_size(n, n, 1, 1, params(), opts.backend);
    if (ws_bytes > 0) check(cudaMalloc(&ws, ws_bytes), "cudaMalloc");
    opts.workspace = ws;
    opts.workspace_bytes = ws_bytes;
    attnpool::cuda::pool({q, n, 1}, {k, n, 1}, {v, n, 1}, {ref, n, 1}, params(), opts);
    check(cudaDeviceSynchronize(), "reference run");
    attnpool::bench::device_info dev;
    if (!attnpool::bench::query_device(dev)) throw std::runtime_error("no CUDA device");
    exp2_per_s = dev.exp2_per_s;
  }
  ~device_buffers() {
    for (float* p : {q, k, v, out, ref}) static_cast<void>(cudaFree(p));
    static_cast<void>(cudaFree(ws));
  }
  static attnpool::pool_params params() { return attnpool::pool_params{0.5}; }
};

template <class T>
void bm_variant(benchmark::State& state, std::size_t n) {
  try {
    const device_buffers b(n);
    fused_args a;
    a.q = b.q;
    a.k = b.k;
    a.v = b.v;
    a.out = b.out;
    a.ldq = a.ldk = a.ldv = a.ldo = 1;
    a.n = a.m = n;
    a.d = a.dv = 1;
    a.score_constant = attnpool::detail::kernel_constant(attnpool::kernel::gaussian, 0.5);
    a.splits = 1;
    a.keys_per_split = n;
    const double seconds = attnpool::bench::timed_loop(state, nullptr, [&] {
      attnpool::kernels::launch_fused_tuned<1, 1, T>(a);
      check(cudaGetLastError(), "launch");
    });
    std::vector<float> got(n), want(n);
    check(cudaMemcpy(got.data(), b.out, n * sizeof(float), cudaMemcpyDeviceToHost), "download");
    check(cudaMemcpy(want.data(), b.ref, n * sizeof(float), cudaMemcpyDeviceToHost), "download");
    double max_diff = 0.0;
    for (std::size_t i = 0; i < n; ++i)
      max_diff = std::max(max_diff, std::fabs(static_cast<double>(got[i]) - want[i]));
    const auto kernel = attnpool::kernels::fused_pool_tuned_kernel<1, 1, T>;
    cudaFuncAttributes attr{};
    check(cudaFuncGetAttributes(&attr, kernel), "attributes");
    int blocks = 0;
    check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, T::kThreads, 0),
          "occupancy");
    const double pairs = static_cast<double>(n) * static_cast<double>(n);
    const double iters = static_cast<double>(state.iterations());
    using benchmark::Counter;
    state.counters["pairs/s"] = Counter(pairs * iters, Counter::kIsRate);
    state.counters["exp2_%"] = seconds > 0 ? 100.0 * pairs * iters / seconds / b.exp2_per_s : 0;
    state.counters["regs"] = attr.numRegs;
    state.counters["spill"] = static_cast<double>(attr.localSizeBytes);
    state.counters["blocks/SM"] = blocks;
    state.counters["max_diff"] = max_diff;
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

template <class T>
void add(const char* name) {
  for (std::size_t n : {std::size_t{1} << 18, std::size_t{1} << 20}) {
    const std::string full = std::string("tuning/") + name + "/n=m:" + std::to_string(n);
    benchmark::RegisterBenchmark(full.c_str(), [n](benchmark::State& s) { bm_variant<T>(s, n); })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  attnpool::bench::device_info dev;
  if (!attnpool::bench::query_device(dev)) {
    std::printf("bench_fused_tuning: no CUDA device found; nothing to measure.\n");
    return 0;
  }
  attnpool::bench::print_device("bench_fused_tuning", dev);
  add<fused_traits<1, 1>>("default");
  add<variant<128, 2, 16, 128, false>>("t128_r2_c16_k128_eager");
  add<variant<128, 2, 16, 128, true>>("t128_r2_c16_k128_lazy");
  add<variant<128, 1, 16, 128, true>>("t128_r1_c16_k128_lazy");
  add<variant<128, 1, 16, 128>>("t128_r1_c16_k128");
  add<variant<128, 4, 16, 128>>("t128_r4_c16_k128");
  add<variant<128, 2, 8, 128>>("t128_r2_c8_k128");
  add<variant<128, 2, 32, 128>>("t128_r2_c32_k128");
  add<variant<64, 2, 16, 128>>("t64_r2_c16_k128");
  add<variant<256, 2, 16, 256>>("t256_r2_c16_k256");
  add<variant<128, 4, 32, 256>>("t128_r4_c32_k256");
  add<variant<256, 4, 16, 256>>("t256_r4_c16_k256");
  add<xvariant<256, 32, 4>>("expanded_k256_c32_e4");  // fused_expanded_traits<1, 1>
  add<xvariant<256, 32, 0>>("expanded_k256_c32_e0");
  add<xvariant<256, 32, 2>>("expanded_k256_c32_e2");
  add<xvariant<256, 32, 8>>("expanded_k256_c32_e8");
  add<xvariant<256, 16, 0>>("expanded_k256_c16_e0");
  add<xvariant<512, 32, 4>>("expanded_k512_c32_e4");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
