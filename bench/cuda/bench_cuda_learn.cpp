// GPU benchmarks of the learning paths (STYLE.md section 7): the fused forward (the
// Gaussian fast path, and the masked generic-score path the trainer uses) against the fused
// backward pass (all four gradients), through the device-pointer API, timed with CUDA events
// (UseManualTime), every allocation and upload outside the timed region.
//
// The goal: backward <= 2.5x forward at n = m = 2^16, d = dv = 1; compare
// "backward/..." with "forward/..." of the same shape (and "backward_loo" with "forward_loo").
// Shapes: n = m = 2^16 with d = dv = 1, and n = m = 2^14 with d = 16, dv = 1.
// Counter pairs/s = n * m per second. Without a device the program says so and exits 0.
#include <attnpool/cuda.hpp>
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>

#include "bench_cuda_support.hpp"

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace {

using attnpool::bench::dev_bytes;
using attnpool::bench::dev_floats;

enum class what { forward, backward };

void bm_learn(benchmark::State& state, what w, std::size_t n, std::size_t d, std::size_t dv,
              attnpool::mask mk) {
  const std::size_t m = n;
  attnpool::pool_params params{0.5};
  params.mask = mk;
  try {
    const std::size_t ws_bytes =
        w == what::forward ? attnpool::cuda::pool_workspace_size(n, m, d, dv, params,
                                                                 attnpool::backend::cuda_fused)
                           : attnpool::cuda::pool_backward_workspace_size(n, m, d, dv, params);
    const attnpool::bench::device_problem pb(n, m, d, dv, ws_bytes, attnpool::backend::cuda_fused);
    const dev_floats dout(n * dv, 5, -0.5f), dq(n * d, 6, 0.0f), dk(m * d, 7, 0.0f),
        dvv(m * dv, 8, 0.0f);
    const dev_bytes dh(sizeof(double));
    const auto& opts = pb.opts;
    const attnpool::const_view qv = pb.queries(), kv = pb.keys(), vv = pb.values(),
                               dov{dout.p, n, dv};
    attnpool::pool_gradients g;
    g.queries = {dq.p, n, d};
    g.keys = {dk.p, m, d};
    g.values = {dvv.p, m, dv};
    g.bandwidth = static_cast<double*>(dh.p);
    auto run = [&] {
      if (w == what::forward) {
        attnpool::cuda::pool(qv, kv, vv, pb.output(), params, opts);
      } else {
        attnpool::cuda::pool_backward(qv, kv, vv, dov, g, params, opts);
      }
    };
    attnpool::bench::timed_loop(state, pb.stream.s, run);
    const double pairs = static_cast<double>(n) * static_cast<double>(m);
    state.counters["pairs/s"] = benchmark::Counter(pairs * static_cast<double>(state.iterations()),
                                                   benchmark::Counter::kIsRate);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void register_all() {
  using attnpool::mask;
  auto add = [](const char* kind, what w, std::size_t n, std::size_t d, std::size_t dv, mask mk) {
    const std::string name = std::string(kind) + "/n:" + std::to_string(n) +
                             "/d:" + std::to_string(d) + "/dv:" + std::to_string(dv);
    benchmark::RegisterBenchmark(name.c_str(),
                                 [=](benchmark::State& s) { bm_learn(s, w, n, d, dv, mk); })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  };
  for (auto [n, d] : {std::pair<std::size_t, std::size_t>{65536, 1}, {16384, 16}}) {
    add("forward", what::forward, n, d, 1, mask::none);
    add("backward", what::backward, n, d, 1, mask::none);
    add("forward_loo", what::forward, n, d, 1, mask::leave_one_out);
    add("backward_loo", what::backward, n, d, 1, mask::leave_one_out);
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  attnpool::bench::device_info dev;
  if (!attnpool::bench::query_device(dev)) {
    std::printf("bench_cuda_learn: no CUDA device found; nothing to measure.\n");
    return 0;
  }
  attnpool::bench::print_device("bench_cuda_learn", dev);
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
