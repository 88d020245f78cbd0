// Batched problems on the GPU: 1000 problems of n = m = 100, d = dv = 1, in ONE
// cuda::pool_batched launch against 1000 separate cuda::pool calls on the same stream, both on
// device pointers with options::check_finite off (so neither synchronises) and every
// allocation and upload outside the timed region. Goal: the batched launch >= 20x faster.
//
// Timed with CUDA events around each iteration's work on the stream (UseManualTime); the
// separate calls' time therefore includes their 1000 launches' host overhead as the stream sees
// it, which is exactly the cost the batch removes. A third case times pool_sharded-style
// partial states + merge (several shards on one GPU) against the unsharded call, for
// docs/scaling.md.
//
// Run: build/bench/cuda/bench_cuda_batched --benchmark_counters_tabular=true
// Without a device the program says so and exits 0.
#include <attnpool/cuda.hpp>
#include <attnpool/error.hpp>

#include "bench_cuda_support.hpp"

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace {

constexpr std::size_t kProblems = 1000, kN = 100, kM = 100;

using attnpool::bench::dev_bytes;
using attnpool::bench::dev_stream;
using attnpool::bench::timed_loop;

// Inputs uniform in [0, 5), as the notebook's.
struct dev_floats : attnpool::bench::dev_floats {
  explicit dev_floats(std::size_t count, std::uint32_t seed = 1)
      : attnpool::bench::dev_floats(count, seed, 0.0f, 5.0f) {}
};

void set_counters(benchmark::State& state, double problems, double pairs) {
  state.counters["problems/s"] =
      benchmark::Counter(problems, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["pairs/s"] =
      benchmark::Counter(pairs, benchmark::Counter::kIsIterationInvariantRate);
}

attnpool::options fused_opts(cudaStream_t stream, const dev_bytes& ws) {
  attnpool::options o;
  o.backend = attnpool::backend::cuda_fused;
  o.check_finite = false;
  o.stream = stream;
  o.workspace = ws.p;
  o.workspace_bytes = ws.bytes;
  return o;
}

void BM_batched_one_launch(benchmark::State& state) {
  const dev_floats q(kProblems * kN, 1), k(kProblems * kM, 2), v(kProblems * kM, 3),
      out(kProblems * kN, 4);
  std::vector<std::size_t> qoff, koff;
  for (std::size_t b = 0; b <= kProblems; ++b) {
    qoff.push_back(b * kN);
    koff.push_back(b * kM);
  }
  const attnpool::pool_params params{1.0};
  const dev_bytes ws(
      attnpool::cuda::pool_batched_workspace_size(kProblems, kProblems * kN, 1, 1, params));
  const dev_stream owned;
  const cudaStream_t stream = owned.s;
  const attnpool::options o = fused_opts(stream, ws);
  timed_loop(state, stream, [&] {
    attnpool::cuda::pool_batched({q.p, kProblems * kN, 1}, {k.p, kProblems * kM, 1},
                                 {v.p, kProblems * kM, 1}, {out.p, kProblems * kN, 1}, qoff, koff,
                                 params, o);
  });
  set_counters(state, kProblems, static_cast<double>(kProblems * kN * kM));
}

void BM_separate_pool_calls(benchmark::State& state) {
  const dev_floats q(kProblems * kN, 1), k(kProblems * kM, 2), v(kProblems * kM, 3),
      out(kProblems * kN, 4);
  const attnpool::pool_params params{1.0};
  const dev_bytes ws(
      attnpool::cuda::pool_workspace_size(kN, kM, 1, 1, params, attnpool::backend::cuda_fused));
  const dev_stream owned;
  const cudaStream_t stream = owned.s;
  const attnpool::options o = fused_opts(stream, ws);
  timed_loop(state, stream, [&] {
    for (std::size_t b = 0; b < kProblems; ++b) {
      attnpool::cuda::pool({q.p + b * kN, kN, 1}, {k.p + b * kM, kM, 1}, {v.p + b * kM, kM, 1},
                           {out.p + b * kN, kN, 1}, params, o);
    }
  });
  set_counters(state, kProblems, static_cast<double>(kProblems * kN * kM));
}

// S shards of m keys on one GPU: S pool_partial calls into one packed buffer + merge_partials,
// against the unsharded cuda::pool (S = 0 row). n queries, d = 3, dv = 1.
void BM_sharded_on_one_gpu(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto m = static_cast<std::size_t>(state.range(1));
  const auto shards = static_cast<std::size_t>(state.range(2));
  constexpr std::size_t d = 3, dv = 1;
  const dev_floats q(n * d, 1), k(m * d, 2), v(m * dv, 3), out(n * dv, 4);
  const attnpool::pool_params params{0.5};
  const dev_stream owned;
  const cudaStream_t stream = owned.s;
  if (shards == 0) {
    const dev_bytes ws(
        attnpool::cuda::pool_workspace_size(n, m, d, dv, params, attnpool::backend::cuda_fused));
    const attnpool::options o = fused_opts(stream, ws);
    timed_loop(state, stream, [&] {
      attnpool::cuda::pool({q.p, n, d}, {k.p, m, d}, {v.p, m, dv}, {out.p, n, dv}, params, o);
    });
  } else {
    const std::size_t per = attnpool::cuda::packed_partial_floats(n, dv);
    const dev_floats stacked(shards * per);
    const dev_bytes ws(
        attnpool::cuda::pool_partial_workspace_size(n, m / shards + 1, d, dv, params));
    const dev_bytes mws(attnpool::cuda::merge_partials_workspace_size(params));
    const attnpool::options o = fused_opts(stream, ws), mo = fused_opts(stream, mws);
    timed_loop(state, stream, [&] {
      for (std::size_t s = 0; s < shards; ++s) {
        const std::size_t k0 = m * s / shards, k1 = m * (s + 1) / shards;
        attnpool::cuda::pool_partial(
            {q.p, n, d}, {k.p + k0 * d, k1 - k0, d}, {v.p + k0 * dv, k1 - k0, dv},
            attnpool::cuda::packed_partial(stacked.p + s * per, n, dv), params, o);
      }
      attnpool::cuda::merge_partials(attnpool::cuda::packed_partials(stacked.p, shards, n, dv),
                                     {out.p, n, dv}, params, mo);
    });
  }
  set_counters(state, 1.0, static_cast<double>(n) * static_cast<double>(m));
  state.counters["bytes_exchanged"] =
      static_cast<double>(shards * attnpool::cuda::packed_partial_floats(n, dv) * sizeof(float));
}

BENCHMARK(BM_batched_one_launch)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_separate_pool_calls)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_sharded_on_one_gpu)
    ->ArgNames({"n", "m", "shards"})
    ->Args({1024, 1 << 22, 0})
    ->Args({1024, 1 << 22, 1})
    ->Args({1024, 1 << 22, 4})
    ->Args({1024, 1 << 22, 16})
    ->Args({65536, 1 << 20, 0})
    ->Args({65536, 1 << 20, 4})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  if (attnpool::cuda::device_count() == 0) {
    std::printf("bench_cuda_batched: no CUDA device; nothing to time\n");
    return 0;
  }
  attnpool::bench::device_info dev;
  if (attnpool::bench::query_device(dev)) attnpool::bench::print_device("bench_cuda_batched", dev);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
