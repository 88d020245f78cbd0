// pool_batched: 1000 problems of n = m = 100, d = dv = 1, in one
// pool_batched call against 1000 separate attnpool::pool calls, both on the CPU engine with
// every hardware thread. The goal is for the batched call to be >= 20x faster on the GPU;
// on the CPU the gain is the per-call overhead (validation, packing, thread start-up) saved.
// BM_batched/loo:1 is the same call with the leave-one-out mask.
//
// Run: build-bench/bench/bench_batched --benchmark_counters_tabular=true
// Results and the machine they came from: bench/RESULTS.md.
#include <attnpool/batched.hpp>
#include <attnpool/pool.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <random>
#include <vector>

namespace {

constexpr std::size_t kProblems = 1000, kN = 100, kM = 100;

struct data {
  std::vector<float> q, k, v, out;
  std::vector<std::size_t> qoff, koff;
};

const data& get_data() {
  static const data d = [] {
    data r;
    std::mt19937 rng(20261126u);
    std::uniform_real_distribution<float> coord(0.0f, 5.0f);
    r.q.resize(kProblems * kN);
    r.k.resize(kProblems * kM);
    r.v.resize(kProblems * kM);
    r.out.resize(kProblems * kN);
    for (float& x : r.q) x = coord(rng);
    for (float& x : r.k) x = coord(rng);
    for (float& x : r.v) x = coord(rng);
    for (std::size_t b = 0; b <= kProblems; ++b) {
      r.qoff.push_back(b * kN);
      r.koff.push_back(b * kM);
    }
    return r;
  }();
  return d;
}

attnpool::options cpu_opts() {
  attnpool::options o;
  o.backend = attnpool::backend::cpu;
  return o;
}

void set_counters(benchmark::State& state) {
  state.counters["problems/s"] = benchmark::Counter(
      static_cast<double>(kProblems), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["pairs/s"] = benchmark::Counter(static_cast<double>(kProblems * kN * kM),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

// range(0): 0 unmasked, 1 leave_one_out (the batched training and selection calls' mask).
void BM_batched(benchmark::State& state) {
  const data& d = get_data();
  std::vector<float> out(d.out.size());
  attnpool::pool_params params{0.5};
  if (state.range(0) == 1) params.mask = attnpool::mask::leave_one_out;
  for (auto _ : state) {
    attnpool::pool_batched({d.q.data(), kProblems * kN, 1}, {d.k.data(), kProblems * kM, 1},
                           {d.v.data(), kProblems * kM, 1}, {out.data(), kProblems * kN, 1},
                           d.qoff, d.koff, params, cpu_opts());
    benchmark::DoNotOptimize(out.data());
  }
  set_counters(state);
}

void BM_separate(benchmark::State& state) {
  const data& d = get_data();
  std::vector<float> out(d.out.size());
  const attnpool::pool_params params{0.5};
  for (auto _ : state) {
    for (std::size_t b = 0; b < kProblems; ++b) {
      attnpool::pool({d.q.data() + b * kN, kN, 1}, {d.k.data() + b * kM, kM, 1},
                     {d.v.data() + b * kM, kM, 1}, {out.data() + b * kN, kN, 1}, params,
                     cpu_opts());
    }
    benchmark::DoNotOptimize(out.data());
  }
  set_counters(state);
}

BENCHMARK(BM_batched)->ArgName("loo")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_separate)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
