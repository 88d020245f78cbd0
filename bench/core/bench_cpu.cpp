// CPU benchmarks in one table:
//   reference   attnpool::pool, backend::reference (fp64 two-pass oracle, single thread)
//   cpu         attnpool::pool, backend::cpu (the streaming-softmax engine, all cores by default)
//   naive       a plain scalar two-pass loop with std::exp in float: what a user writes first
//   exp2_bound  the machine's vectorised exp2 throughput: exp2_poly over an L1-resident array,
//               the bound the CPU engine's pairs/s per core is measured against
//   exp2_bound_poly5  the same with exp2_poly5, the degree-5 exp2 of the engine's d = 1 tiles
//               (a higher bound: report the engine against both)
//   fma_bound   FMAs per second on one core (8 independent 16-float chains in registers), and
//               from it and exp2_bound_poly5 the d = 16 and 64 per-core pair bounds
//   exp2_sum_dot  diagnostic: the d = 1 inner loop shape (score, exp2, sum, dot) on L1 data
//
// Counters: pairs/s (n * m per second), bytes/s (the key and value bytes streamed through the
// inner loop, 4 * n * m * (d + dv) per call: the operand traffic an engine that does not reuse
// keys across queries must sustain; the compulsory I/O 4 * (n*d + m*(d+dv) + n*dv) is negligible
// at these sizes), threads (threads the call may use) and, where it helps, pairs/s per thread.
//
// Run: build-bench/bench/bench_cpu --benchmark_counters_tabular=true
// Results and the machine they came from: bench/RESULTS.md.
#include <attnpool/pool.hpp>

#include "exp2_bound.hpp"
#include "src/cpu/engine.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

namespace {

using attnpool_bench::clone_label;
using attnpool_bench::exp2_array;
using attnpool_bench::exp2_sum_dot_array;

// ---- inputs ---------------------------------------------------------------------------------

struct problem {
  std::size_t n, m, d, dv;
  std::vector<float> q, k, v, out;
};

// The notebook's data, widened to d dimensions: coordinates uniform on [0, 5), values
// 2 sin(x) + x^0.8 of the first coordinate plus noise. Seed fixed so every run times the same
// data. Cached: the 65536 x 16 inputs are shared by every benchmark that uses them.
problem& get_problem(std::size_t n, std::size_t m, std::size_t d, std::size_t dv) {
  static std::map<std::tuple<std::size_t, std::size_t, std::size_t, std::size_t>, problem> cache;
  auto key = std::make_tuple(n, m, d, dv);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  std::mt19937 rng(20261126u);
  std::uniform_real_distribution<float> coord(0.0f, 5.0f);
  std::normal_distribution<float> noise(0.0f, 0.5f);
  problem p{n, m, d, dv, std::vector<float>(n * d), std::vector<float>(m * d),
            std::vector<float>(m * dv), std::vector<float>(n * dv)};
  for (float& x : p.q) x = coord(rng);
  for (float& x : p.k) x = coord(rng);
  for (std::size_t j = 0; j < m; ++j) {
    const float x = p.k[j * d];
    for (std::size_t c = 0; c < dv; ++c)
      p.v[j * dv + c] = 2.0f * std::sin(x) + std::pow(x, 0.8f) + noise(rng);
  }
  return cache.emplace(key, std::move(p)).first->second;
}

unsigned hardware_threads() { return std::max(1u, std::thread::hardware_concurrency()); }

void set_pair_counters(benchmark::State& state, const problem& p, unsigned threads) {
  const double pairs = static_cast<double>(p.n) * static_cast<double>(p.m);
  const double iters = static_cast<double>(state.iterations());
  state.counters["pairs/s"] = benchmark::Counter(pairs * iters, benchmark::Counter::kIsRate);
  state.counters["bytes/s"] = benchmark::Counter(
      4.0 * pairs * static_cast<double>(p.d + p.dv) * iters, benchmark::Counter::kIsRate,
      benchmark::Counter::kIs1024);
  state.counters["threads"] = threads;
  state.counters["pairs/s/thread"] =
      benchmark::Counter(pairs * iters / threads, benchmark::Counter::kIsRate);
}

// ---- attnpool backends ----------------------------------------------------------------------

// args: n (= m), d, threads (0 = all), check_finite (0/1)
void bm_pool(benchmark::State& state, attnpool::backend which) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto d = static_cast<std::size_t>(state.range(1));
  problem& p = get_problem(n, n, d, 1);
  attnpool::options opts;
  opts.backend = which;
  opts.threads = static_cast<unsigned>(state.range(2));
  opts.check_finite = state.range(3) != 0;
  const unsigned threads = which == attnpool::backend::reference
                               ? 1u
                               : (opts.threads == 0 ? hardware_threads() : opts.threads);
  std::vector<float>& out = p.out;
  for (auto _ : state) {
    attnpool::pool(attnpool::const_view{p.q.data(), p.n, p.d},
                   attnpool::const_view{p.k.data(), p.m, p.d},
                   attnpool::const_view{p.v.data(), p.m, p.dv},
                   attnpool::mutable_view{out.data(), p.n, p.dv}, {}, opts);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_pair_counters(state, p, threads);
}

// The two score forms of the CPU engine side by side, one thread, at a bandwidth given in the
// name: args n (= m), d, h, dot form on (1) or off (0, ATTNPOOL_CPU_DOT_FORM=0 for the call).
// The dot form is taken only by rows that meet its error bound (src/cpu/engine.cpp), so the
// bandwidths registered are ones at which every row of the U(0, 5)^d data does.
void bm_pool_forms(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto d = static_cast<std::size_t>(state.range(1));
  const auto h = static_cast<double>(state.range(2));
  const bool dot = state.range(3) != 0;
  problem& p = get_problem(n, n, d, 1);
  attnpool::options opts;
  opts.backend = attnpool::backend::cpu;
  opts.threads = 1;
  opts.check_finite = false;
  if (!dot) setenv("ATTNPOOL_CPU_DOT_FORM", "0", 1);
  for (auto _ : state) {
    attnpool::pool(attnpool::const_view{p.q.data(), p.n, p.d},
                   attnpool::const_view{p.k.data(), p.m, p.d},
                   attnpool::const_view{p.v.data(), p.m, p.dv},
                   attnpool::mutable_view{p.out.data(), p.n, p.dv},
                   attnpool::pool_params{.bandwidth = h}, opts);
    benchmark::DoNotOptimize(p.out.data());
    benchmark::ClobberMemory();
  }
  // Rows that took the dot form (all of them, or none with the form off): the table shows it.
  state.counters["dot_rows"] = static_cast<double>(attnpool::detail::cpu_dot_form_rows(
      attnpool::const_view{p.q.data(), p.n, p.d}, attnpool::const_view{p.k.data(), p.m, p.d},
      attnpool::pool_params{.bandwidth = h}));
  unsetenv("ATTNPOOL_CPU_DOT_FORM");
  set_pair_counters(state, p, 1);
}

// Registered but not run: too slow for what it would tell us (see reference_affordable), so the
// table shows the row and the reason instead of a silent gap.
void bm_skipped(benchmark::State& state, const char* why) {
  state.SkipWithError(why);
  for (auto _ : state) {
  }
}

// ---- the naive C++ baseline -----------------------------------------------------------------

// What a user writes first: per query, pass 1 finds the maximum score, pass 2 sums exp(s - max)
// and the weighted values. Float, std::exp, single thread, no tiling, no intrinsics. Built with
// the same -O3 flags as everything else (no target_clones, no fast-math), so std::exp stays a
// scalar libm call.
void naive_pool(const float* q, const float* k, const float* v, float* out, std::size_t n,
                std::size_t m, std::size_t d, float bandwidth) {
  const float inv_2h2 = 1.0f / (2.0f * bandwidth * bandwidth);
  for (std::size_t i = 0; i < n; ++i) {
    const float* qi = q + i * d;
    auto score = [&](std::size_t j) {
      const float* kj = k + j * d;
      float dist = 0.0f;
      for (std::size_t c = 0; c < d; ++c) dist += (qi[c] - kj[c]) * (qi[c] - kj[c]);
      return -dist * inv_2h2;
    };
    float mx = -std::numeric_limits<float>::infinity();
    for (std::size_t j = 0; j < m; ++j) mx = std::max(mx, score(j));
    float sum = 0.0f, acc = 0.0f;
    for (std::size_t j = 0; j < m; ++j) {
      const float w = std::exp(score(j) - mx);
      sum += w;
      acc += w * v[j];
    }
    out[i] = acc / sum;
  }
}

void bm_naive(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto d = static_cast<std::size_t>(state.range(1));
  problem& p = get_problem(n, n, d, 1);
  std::vector<float>& out = p.out;
  for (auto _ : state) {
    naive_pool(p.q.data(), p.k.data(), p.v.data(), out.data(), p.n, p.m, p.d, 1.0f);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_pair_counters(state, p, 1);
}

// ---- the exp2 bound -------------------------------------------------------------------------

// 2048 floats in, 2048 out: 16 KiB, well inside the 32 KiB L1d of a Zen 4 core, so the loop is
// bound by the exp2 arithmetic (range reduction, degree-6 Horner, exponent insert), not memory.
constexpr std::size_t kExpLen = 2048;

// exp2_array, exp2_sum_dot_array and clone_label live in exp2_bound.cpp, built with the
// engine's multiversioning and -fno-trapping-math (see there).

std::vector<float> exp_inputs(std::size_t len) {
  std::mt19937 rng(7u);
  std::uniform_real_distribution<float> dist(-30.0f, 0.0f);  // scores relative to the max
  std::vector<float> x(len);
  for (float& e : x) e = dist(rng);
  return x;
}

// exp2_bound_poly5's rate on one thread (exp2/s), for bm_fma_bound's derived bounds.
double g_exp2_poly5_rate = 0.0;

// This thread's CPU time in seconds: the derived bounds use it rather than wall time, so that
// other work on a shared machine does not lower them.
double thread_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

void bm_exp2_bound(benchmark::State& state, bool poly5) {
  const std::vector<float> x = exp_inputs(kExpLen);
  std::vector<float> y(kExpLen);
  const double t0 = thread_seconds();
  for (auto _ : state) {
    if (poly5) {
      attnpool_bench::exp2_poly5_array(x.data(), y.data(), kExpLen);
    } else {
      exp2_array(x.data(), y.data(), kExpLen);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double seconds = thread_seconds() - t0;
  state.counters["exp2/s"] = benchmark::Counter(
      static_cast<double>(kExpLen) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
  if (poly5 && state.threads() == 1 && seconds > 0.0)
    g_exp2_poly5_rate =
        static_cast<double>(kExpLen) * static_cast<double>(state.iterations()) / seconds;
  state.SetLabel(clone_label());
}

// FMAs per second on one thread, for the d >= 16 bound: a pair of the dot form costs d FMAs
// (the dot product) and dv (the weighted sum) besides its exp2, so one core does at most
//   1 / ((d + dv) / fma_rate + 1 / exp2_rate)
// pairs per second (exp2_rate from exp2_bound_poly5, whose FMAs it includes). The counters
// print that bound for d = 16 and 64, dv = 1, from this run's FMA rate and the exp2 rate that
// exp2_bound_poly5 measured before it in the same process, both per second of thread CPU time.
void bm_fma_bound(benchmark::State& state) {
  std::vector<float> acc(128, 1.0f);
  double fmas = 0.0;
  const double t0 = thread_seconds();
  for (auto _ : state) {
    fmas += attnpool_bench::fma_chains(acc.data(), 4096, 0.999f, 1e-3f);
    benchmark::DoNotOptimize(acc.data());
    benchmark::ClobberMemory();
  }
  const double seconds = thread_seconds() - t0;
  state.counters["fma/s"] = benchmark::Counter(fmas, benchmark::Counter::kIsRate);
  if (g_exp2_poly5_rate > 0.0 && seconds > 0.0) {
    const double fma_rate = fmas / seconds;
    for (const int d : {16, 64})
      state.counters["bound_d" + std::to_string(d) + "_pairs/s"] =
          1.0 / ((d + 1.0) / fma_rate + 1.0 / g_exp2_poly5_rate);
  }
  state.SetLabel(clone_label());
}

void bm_exp2_sum_dot(benchmark::State& state) {
  std::vector<float> k = exp_inputs(kExpLen), v = exp_inputs(kExpLen);
  for (float& e : k) e = -e / 6.0f;  // keys on [0, 5), like the problem data
  const float neg_scale = -0.72134752f;  // -log2(e) / (2 h^2), h = 1
  float qx = 2.5f;
  for (auto _ : state) {
    const attnpool_bench::sum_dot r =
        exp2_sum_dot_array(qx, k.data(), v.data(), kExpLen, neg_scale, 0.0f);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(qx);
  }
  state.counters["pairs/s"] = benchmark::Counter(
      static_cast<double>(kExpLen) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
  state.SetLabel(clone_label());
}

// ---- registration ---------------------------------------------------------------------------

constexpr std::int64_t kSizes[] = {1024, 16384, 65536};
constexpr std::int64_t kDims[] = {1, 16};

// Rows where the fp64 reference finishes in a few seconds with one iteration (measured on the
// 2-core EPYC, 2026-11-26: ~11 ns/pair at d = 1, ~19 ns/pair at d = 16, single thread; so
// 16384^2 at d = 16 would take ~5 s and 65536^2 at d = 1 ~45 s).
bool reference_affordable(std::int64_t n, std::int64_t d) {
  return n <= 1024 || (n <= 16384 && d == 1);
}
// The naive loop: ~9 ns/pair at d = 1, ~15 ns/pair at d = 16 (two distance passes per pair).
bool naive_affordable(std::int64_t n, std::int64_t d) {
  return n <= 1024 || (n <= 16384 && d == 1);
}

void register_all() {
  using attnpool::backend;
  for (std::int64_t d : kDims) {
    for (std::int64_t n : kSizes) {
      const std::string shape = "/n=m:" + std::to_string(n) + "/d:" + std::to_string(d);
      // reference
      if (reference_affordable(n, d)) {
        auto* b = benchmark::RegisterBenchmark(("reference" + shape).c_str(), bm_pool,
                                               backend::reference);
        b->Args({n, d, 1, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
        if (n > 1024) b->Iterations(1);
      } else {
        benchmark::RegisterBenchmark(("reference" + shape).c_str(), bm_skipped,
                                     "skipped: fp64 reference too slow here (>= ~5 s)");
      }
      // naive std::exp loop
      if (naive_affordable(n, d)) {
        auto* b = benchmark::RegisterBenchmark(("naive_std_exp" + shape).c_str(), bm_naive);
        b->Args({n, d})->Unit(benchmark::kMillisecond)->UseRealTime();
        if (n > 1024) b->Iterations(1);
      } else {
        benchmark::RegisterBenchmark(("naive_std_exp" + shape).c_str(), bm_skipped,
                                     "skipped: naive loop too slow here (>= ~4 s)");
      }
      // the CPU engine on all cores, validation off (the timed loop is the engine alone)
      benchmark::RegisterBenchmark(("cpu" + shape).c_str(), bm_pool, backend::cpu)
          ->Args({n, d, 0, 0})
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
      // one core, for the per-core comparison with the exp2 bound
      if (n >= 16384)
        benchmark::RegisterBenchmark(("cpu_1thread" + shape).c_str(), bm_pool, backend::cpu)
            ->Args({n, d, 1, 0})
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
    }
  }
  // The validation pass (check_finite = true, the default) is O(n + m): show that it is free.
  benchmark::RegisterBenchmark("cpu_check_finite/n=m:16384/d:1", bm_pool, backend::cpu)
      ->Args({16384, 1, 0, 1})
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  // Direct against dot form, d = 1, 3, 16, 64 (bandwidths at which every row takes the dot form).
  for (const auto& [d, h] :
       {std::pair<std::int64_t, std::int64_t>{1, 3}, {3, 4}, {16, 12}, {64, 40}}) {
    for (const std::int64_t dot : {0, 1}) {
      const std::string name = std::string(dot != 0 ? "cpu_dot_form" : "cpu_direct_form") +
                               "_1thread/n=m:16384/d:" + std::to_string(d) +
                               "/h:" + std::to_string(h);
      benchmark::RegisterBenchmark(name.c_str(), bm_pool_forms)
          ->Args({16384, d, h, dot})
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
  }
  benchmark::RegisterBenchmark("exp2_bound", bm_exp2_bound, false)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime()
      ->Threads(1)
      ->Threads(static_cast<int>(hardware_threads()));
  benchmark::RegisterBenchmark("exp2_bound_poly5", bm_exp2_bound, true)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime()
      ->Threads(1);
  benchmark::RegisterBenchmark("fma_bound", bm_fma_bound)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime()
      ->Threads(1);
  benchmark::RegisterBenchmark("exp2_sum_dot_d1_inner_loop", bm_exp2_sum_dot)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime()
      ->Threads(1);
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("exp2 clone", clone_label());
  benchmark::AddCustomContext("engine clone", attnpool::detail::cpu_engine_clone());
  benchmark::AddCustomContext("hardware threads", std::to_string(hardware_threads()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
