// GPU benchmarks of the CUDA backends (STYLE.md section 7): the fused kernel and the unfused
// cuBLAS path through the device-pointer API, timed with CUDA events (UseManualTime), with
// every allocation and upload outside the timed region.
//
// Counters:
//   pairs/s   n * m per second: the headline (goal: >= 60% of the exp2 bound at
//             n = m = 2^20, d = dv = 1)
//   bytes/s   compulsory traffic (inputs once, output once; the unfused path adds its n x m
//             matrix written and read three times)
//   exp2_%    pairs/s over the exp2 bound: SMs x 16 MUFU.EX2 per clock per SM x clock, one ex2
//             per pair (what the fused kernel issues, plus 2 per 16-key chunk)
//   fma_%     pairs/s over the FP32 bound: SMs x 128 lanes x clock / ops per pair, counting
//             the fused kernel's FP32-pipe instructions: 2d (difference, FMA) + 4 (score,
//             chunk minimum, subtract, chunk sum) + dv (FMA into the accumulators); windows
//             wider than 8 columns add one multiply per pair (kChunkAccumulators)
// The bounds are printed at start. Without a device the program says so and exits 0.
//
// Shapes: n = m = 2^10 .. 2^22 (unfused only where n x m floats fit in device memory),
// d in {1, 3, 16, 64}, dv in {1, 16}; skinny n = 1..64 with m = 2^20 (split-K) and n = 2^20
// with m = 64. The full set takes tens of minutes on an H100 at 2^22; scripts/device-check.sh
// runs a filtered subset.
//
// masked/<mask>/...: a masked fused forward and the unmasked one of the same shape, timed in the
// same iterations; the time is the masked call's, counter vs_unmasked = masked / unmasked time
// (the GPU goal: <= 1.15 for leave_one_out and valid_length). vl_full: every valid_len = m (the
// mask's cost alone); vl_random: valid_lens uniform in [1, m], about half the pairs. Which path a
// masked call takes is ATTNPOOL_CUDA_FUSED_MASKS (kernels/fused/dispatch.hpp): run it both ways.
//
// fused_wide/...: d = 16 and 64 at h = 1.5 sqrt(d), the bandwidths where the tensor-core path
// (ATTNPOOL_CUDA_TENSOR_CORES=1) computes the scores: run it both ways too.
//
// skinny_fused/n:1..64/m:2^20/...: few queries against many keys; with ATTNPOOL_CUDA_DECODE=1 the
// d <= 8 ones take the key-parallel decode kernel (kernels/fused/decode.hpp): run it both ways.
#include <attnpool/cuda.hpp>
#include <attnpool/error.hpp>

#include "bench_cuda_support.hpp"

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace {

using attnpool::bench::check;
using attnpool::bench::dev_bytes;
using attnpool::bench::dev_floats;

attnpool::bench::device_info g_dev;

void bm_pool(benchmark::State& state, std::size_t n, std::size_t m, std::size_t d, std::size_t dv,
             attnpool::backend which, double h = 0.5) {
  const attnpool::pool_params params{h};
  try {
    const std::size_t ws_bytes = attnpool::cuda::pool_workspace_size(n, m, d, dv, params, which);
    const double need =
        4.0 * static_cast<double>(n * d + m * d + m * dv + n * dv) + static_cast<double>(ws_bytes);
    if (need > 0.9 * static_cast<double>(g_dev.free_bytes)) {
      state.SkipWithError("does not fit in device memory");
      return;
    }
    const attnpool::bench::device_problem pb(n, m, d, dv, ws_bytes, which);
    const auto& opts = pb.opts;
    const attnpool::const_view qv = pb.queries(), kv = pb.keys(), vv = pb.values();
    const attnpool::mutable_view ov = pb.output();
    const double seconds = attnpool::bench::timed_loop(
        state, pb.stream.s, [&] { attnpool::cuda::pool(qv, kv, vv, ov, params, opts); });

    const double pairs = static_cast<double>(n) * static_cast<double>(m);
    const double iters = static_cast<double>(state.iterations());
    double bytes = 4.0 * static_cast<double>(n * d + m * d + m * dv + n * dv);
    if (which == attnpool::backend::cuda_unfused) bytes += 4.0 * pairs * 4.0;  // S: w, r/w, r
    using benchmark::Counter;
    state.counters["pairs/s"] = Counter(pairs * iters, Counter::kIsRate);
    state.counters["bytes/s"] = Counter(bytes * iters, Counter::kIsRate);
    const double pairs_per_s = seconds > 0 ? pairs * iters / seconds : 0.0;
    const double fp32_ops = 2.0 * static_cast<double>(d) + 4.0 + static_cast<double>(dv);
    state.counters["exp2_%"] = 100.0 * pairs_per_s / g_dev.exp2_per_s;
    state.counters["fma_%"] = 100.0 * pairs_per_s * fp32_ops / g_dev.fp32_per_s;
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

enum class masked_kind { loo, vl_full, vl_random };

void bm_masked(benchmark::State& state, std::size_t n, std::size_t d, std::size_t dv,
               masked_kind kind) {
  const std::size_t m = n;
  const attnpool::pool_params plain{0.5};
  attnpool::pool_params masked{0.5};
  std::vector<std::size_t> lens;
  if (kind == masked_kind::loo) {
    masked.mask = attnpool::mask::leave_one_out;
  } else {
    masked.mask = attnpool::mask::valid_length;
    lens.assign(n, m);
    std::uint32_t s = 7;
    if (kind == masked_kind::vl_random)
      for (auto& l : lens) l = 1 + ((s = s * 1664525u + 1013904223u) >> 8) % m;
    masked.valid_lens = lens;
  }
  try {
    const auto which = attnpool::backend::cuda_fused;
    const std::size_t ws_bytes =
        std::max(attnpool::cuda::pool_workspace_size(n, m, d, dv, plain, which),
                 attnpool::cuda::pool_workspace_size(n, m, d, dv, masked, which));
    const attnpool::bench::device_problem pb(n, m, d, dv, ws_bytes, which);
    const auto& opts = pb.opts;
    const attnpool::const_view qv = pb.queries(), kv = pb.keys(), vv = pb.values();
    const attnpool::mutable_view ov = pb.output();
    cudaEvent_t e[3];
    for (auto& x : e) check(cudaEventCreate(&x), "event");
    attnpool::cuda::pool(qv, kv, vv, ov, plain, opts);  // warm-up, outside the timing
    attnpool::cuda::pool(qv, kv, vv, ov, masked, opts);
    check(cudaStreamSynchronize(pb.stream.s), "warm-up");
    double t_plain = 0.0, t_masked = 0.0;
    for (auto _ : state) {
      check(cudaEventRecord(e[0], pb.stream.s), "record");
      attnpool::cuda::pool(qv, kv, vv, ov, plain, opts);
      check(cudaEventRecord(e[1], pb.stream.s), "record");
      attnpool::cuda::pool(qv, kv, vv, ov, masked, opts);
      check(cudaEventRecord(e[2], pb.stream.s), "record");
      check(cudaEventSynchronize(e[2]), "sync");
      float ms_plain = 0.0f, ms_masked = 0.0f;
      check(cudaEventElapsedTime(&ms_plain, e[0], e[1]), "elapsed");
      check(cudaEventElapsedTime(&ms_masked, e[1], e[2]), "elapsed");
      state.SetIterationTime(ms_masked * 1e-3);
      t_plain += ms_plain * 1e-3;
      t_masked += ms_masked * 1e-3;
    }
    for (auto& x : e) static_cast<void>(cudaEventDestroy(x));
    const double pairs = static_cast<double>(n) * static_cast<double>(m);
    state.counters["pairs/s"] = benchmark::Counter(pairs * static_cast<double>(state.iterations()),
                                                   benchmark::Counter::kIsRate);
    state.counters["vs_unmasked"] = t_plain > 0 ? t_masked / t_plain : 0.0;
  } catch (const std::exception& ex) {
    state.SkipWithError(ex.what());
  }
}

void register_all() {
  using attnpool::backend;
  auto add = [](const char* kind, backend which, std::size_t n, std::size_t m, std::size_t d,
                std::size_t dv) {
    const std::string name = std::string(kind) + "/n:" + std::to_string(n) +
                             "/m:" + std::to_string(m) + "/d:" + std::to_string(d) +
                             "/dv:" + std::to_string(dv);
    benchmark::RegisterBenchmark(name.c_str(),
                                 [=](benchmark::State& s) { bm_pool(s, n, m, d, dv, which); })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  };
  for (int lg = 10; lg <= 22; lg += 2) {
    const std::size_t n = std::size_t{1} << lg;
    for (std::size_t d : {1, 3, 16, 64}) {
      for (std::size_t dv : {1, 16}) {
        add("fused", backend::cuda_fused, n, n, d, dv);
        // The unfused path needs n x m floats; registration skips what can never fit.
        if (4.0 * static_cast<double>(n) * static_cast<double>(n) <
            0.9 * static_cast<double>(g_dev.free_bytes))
          add("unfused", backend::cuda_unfused, n, n, d, dv);
      }
    }
  }
  // 16384 is the goal's fused-vs-unfused comparison point (>= 10x).
  for (std::size_t d : {1, 16}) {
    add("fused", backend::cuda_fused, 16384, 16384, d, 1);
    add("unfused", backend::cuda_unfused, 16384, 16384, d, 1);
  }
  // fused_wide: h = 1.5 sqrt(d), where the tensor-core path's bound holds on this [0, 1)^d data
  // (a R^2 <= 0.32; at h = 0.5 every block of d >= 16 misses it and runs the FFMA agent). Run
  // with ATTNPOOL_CUDA_TENSOR_CORES=1 and without: the FFMA kernel's time at the same shape.
  for (auto [nw, d] :
       {std::pair<std::size_t, std::size_t>{16384, 16}, {16384, 64}, {1048576, 16}}) {
    const std::string name = "fused_wide/n:" + std::to_string(nw) + "/m:" + std::to_string(nw) +
                             "/d:" + std::to_string(d) + "/dv:1";
    const double h = 1.5 * std::sqrt(static_cast<double>(d));
    benchmark::RegisterBenchmark(
        name.c_str(),
        [=](benchmark::State& st) { bm_pool(st, nw, nw, d, 1, backend::cuda_fused, h); })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
  for (std::size_t n : {1, 8, 64}) {
    add("skinny_fused", backend::cuda_fused, n, std::size_t{1} << 20, 1, 1);
    add("skinny_fused", backend::cuda_fused, n, std::size_t{1} << 20, 16, 16);
  }
  add("skinny_fused", backend::cuda_fused, std::size_t{1} << 20, 64, 1, 1);
  add("skinny_fused", backend::cuda_fused, std::size_t{1} << 20, 64, 16, 16);
  add("skinny_unfused", backend::cuda_unfused, std::size_t{1} << 20, 64, 1, 1);
  const std::pair<masked_kind, const char*> kinds[] = {{masked_kind::loo, "loo"},
                                                       {masked_kind::vl_full, "vl_full"},
                                                       {masked_kind::vl_random, "vl_random"}};
  for (auto [n, d] : {std::pair<std::size_t, std::size_t>{65536, 1}, {1048576, 1}, {65536, 16}}) {
    for (auto [kind, label] : kinds) {
      const std::string name = std::string("masked/") + label + "/n:" + std::to_string(n) +
                               "/m:" + std::to_string(n) + "/d:" + std::to_string(d) + "/dv:1";
      benchmark::RegisterBenchmark(name.c_str(),
                                   [=](benchmark::State& s) { bm_masked(s, n, d, 1, kind); })
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (!attnpool::bench::query_device(g_dev)) {
    std::printf("bench_cuda: no CUDA device found; nothing to measure.\n");
    return 0;
  }
  attnpool::bench::print_device("bench_cuda", g_dev);
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
