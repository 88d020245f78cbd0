// Learning benchmarks, CPU side:
//   cpu_ratio/*         the CPU engine's ratios at n = m = 2^14, d = dv = 1, one run: backward
//                       (all four gradients) against the forward (goal <= 3x), and masked
//                       (leave_one_out, valid_length) against unmasked, forward and backward
//                       (goal <= 1.15x). valid_length counts are m - (i * 7919 mod 1024), so the
//                       masked rows do nearly the unmasked work (random counts would halve it).
//                       cpu_ratio_backward_rows: dq alone, the backward's row pass only.
//   forward / backward  pool() and pool_backward() (all four gradients) at n = m = 2^14, 2^16,
//                       d = dv = 1: the goal is backward <= 2.5x forward (for the GPU;
//                       the CPU ratio is recorded in bench/RESULTS.md)
//   select_bandwidth    64 bandwidths plus refinement at n = 1e4 and 1e5, d = dv = 1
//   select_per_dimension  select_bandwidth per dimension at n = 500 and 2000, d = 16: columns
//                       on scales 0.1 to 100, y a sum of sines of the first 8 (the rest
//                       irrelevant); counters: evaluations and the CV error reached
// The data are the notebook's: x uniform on [0, 5), y = 2 sin x + x^0.8 + N(0, 0.5^2), fixed
// seed. Counters: pairs/s (n * m per call; for select_bandwidth, n^2 * evaluations).
//
// Run: build/bench/bench_learn --benchmark_counters_tabular=true
//      build/bench/bench_learn --benchmark_filter=cpu_ratio --benchmark_repetitions=5
//          --benchmark_report_aggregates_only=true      (the ratios, medians)
#include <attnpool/learn.hpp>
#include <attnpool/pool.hpp>

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace {

struct data {
  std::vector<float> x, y, dout;
};

data make(std::size_t n) {
  std::mt19937 rng(20261126u);
  std::uniform_real_distribution<float> u(0.0f, 5.0f);
  std::normal_distribution<float> noise(0.0f, 0.5f);
  data s{std::vector<float>(n), std::vector<float>(n), std::vector<float>(n)};
  for (std::size_t i = 0; i < n; ++i) {
    s.x[i] = u(rng);
    s.y[i] = 2.0f * std::sin(s.x[i]) + std::pow(s.x[i], 0.8f) + noise(rng);
    s.dout[i] = noise(rng);
  }
  return s;
}

attnpool::options cpu() {
  attnpool::options o;
  o.backend = attnpool::backend::cpu;
  o.check_finite = false;
  return o;
}

// Silverman's h for the notebook's data at this n (about what a user would run).
double notebook_h(std::size_t n) { return 1.06 * 1.44 * std::pow(static_cast<double>(n), -0.2); }

// ---- CPU ratios: backward / forward and masked / unmasked ----------------------------------

// range(0): 0 unmasked, 1 leave_one_out, 2 valid_length (nearly full rows, see the top).
attnpool::pool_params ratio_params(std::size_t n, std::int64_t which,
                                   std::vector<std::size_t>& lens) {
  attnpool::pool_params p{notebook_h(n)};
  if (which == 1) p.mask = attnpool::mask::leave_one_out;
  if (which == 2) {
    lens.resize(n);
    for (std::size_t i = 0; i < n; ++i) lens[i] = n - (i * 7919) % 1024;
    p.mask = attnpool::mask::valid_length;
    p.valid_lens = lens;
  }
  return p;
}

void set_pairs(benchmark::State& state, std::size_t n) {
  state.counters["pairs/s"] = benchmark::Counter(
      static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
}

constexpr std::size_t kRatioN = std::size_t{1} << 14;

// One cpu_ratio case: call(data, params) per iteration on the notebook's data, n = m = kRatioN.
template <class Call>
void ratio_case(benchmark::State& state, Call call) {
  const data s = make(kRatioN);
  std::vector<std::size_t> lens;
  const attnpool::pool_params p = ratio_params(kRatioN, state.range(0), lens);
  for (auto _ : state) call(s, p);
  set_pairs(state, kRatioN);
}

void cpu_ratio_forward(benchmark::State& state) {
  constexpr std::size_t n = kRatioN;
  std::vector<float> out(n);
  ratio_case(state, [&](const data& s, const attnpool::pool_params& p) {
    attnpool::pool({s.x.data(), n, 1}, {s.x.data(), n, 1}, {s.y.data(), n, 1},
                   {out.data(), n, 1}, p, cpu());
    benchmark::DoNotOptimize(out.data());
  });
}

void cpu_ratio_backward(benchmark::State& state) {
  constexpr std::size_t n = kRatioN;
  std::vector<float> dq(n), dk(n), dv(n);
  double dh = 0.0;
  ratio_case(state, [&](const data& s, const attnpool::pool_params& p) {
    attnpool::pool_backward({s.x.data(), n, 1}, {s.x.data(), n, 1}, {s.y.data(), n, 1},
                            {s.dout.data(), n, 1},
                            {{dq.data(), n, 1}, {dk.data(), n, 1}, {dv.data(), n, 1}, &dh}, p,
                            cpu());
    benchmark::DoNotOptimize(dq.data());
  });
}

// dq alone: the backward's row pass (the recomputed forward, D and dq) without the key pass, so
// that the run shows what each of the two passes over the pairs costs.
void cpu_ratio_backward_rows(benchmark::State& state) {
  constexpr std::size_t n = kRatioN;
  std::vector<float> dq(n);
  attnpool::pool_gradients g;
  g.queries = {dq.data(), n, 1};
  ratio_case(state, [&](const data& s, const attnpool::pool_params& p) {
    attnpool::pool_backward({s.x.data(), n, 1}, {s.x.data(), n, 1}, {s.y.data(), n, 1},
                            {s.dout.data(), n, 1}, g, p, cpu());
    benchmark::DoNotOptimize(dq.data());
  });
}

BENCHMARK(cpu_ratio_forward)->ArgName("mask")->DenseRange(0, 2)->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(cpu_ratio_backward)->ArgName("mask")->DenseRange(0, 2)->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(cpu_ratio_backward_rows)->ArgName("mask")->DenseRange(0, 2)
    ->Unit(benchmark::kMillisecond)->UseRealTime();

void forward(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const data s = make(n);
  std::vector<float> out(n);
  for (auto _ : state) {
    attnpool::pool({s.x.data(), n, 1}, {s.x.data(), n, 1}, {s.y.data(), n, 1},
                   {out.data(), n, 1}, {notebook_h(n)}, cpu());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["pairs/s"] = benchmark::Counter(
      static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
}

void backward(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const data s = make(n);
  std::vector<float> dq(n), dk(n), dv(n);
  double dh = 0.0;
  for (auto _ : state) {
    attnpool::pool_backward({s.x.data(), n, 1}, {s.x.data(), n, 1}, {s.y.data(), n, 1},
                            {s.dout.data(), n, 1},
                            {{dq.data(), n, 1}, {dk.data(), n, 1}, {dv.data(), n, 1}, &dh},
                            {notebook_h(n)}, cpu());
    benchmark::DoNotOptimize(dq.data());
  }
  state.counters["pairs/s"] = benchmark::Counter(
      static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
}

void select(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const data s = make(n);
  std::size_t evals = 0;
  for (auto _ : state) {
    const auto r = attnpool::select_bandwidth({s.x.data(), n, 1}, {s.y.data(), n, 1}, {}, cpu());
    evals = r.evaluations;
    benchmark::DoNotOptimize(r.bandwidth);
  }
  state.counters["evaluations"] = static_cast<double>(evals);
  state.counters["pairs/s"] = benchmark::Counter(
      static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(evals) *
          static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
}

// n x d columns on the scales 0.1, 1, 10, 100 in turn; y depends on the first d / 2, each sine
// weaker than the last, so the bandwidths it wants differ from column to column.
data make_anisotropic(std::size_t n, std::size_t d) {
  std::mt19937_64 rng(12345);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::normal_distribution<double> noise(0.0, 0.3);
  data s{std::vector<float>(n * d), std::vector<float>(n), {}};
  for (std::size_t i = 0; i < n; ++i) {
    double y = 0.0;
    for (std::size_t c = 0; c < d; ++c) {
      const double t = u(rng);
      s.x[i * d + c] = static_cast<float>(std::pow(10.0, static_cast<double>(c % 4) - 1.0) * t);
      if (c < d / 2)
        y += std::sin(2.0 * M_PI * t * static_cast<double>(1 + c % 3)) / static_cast<double>(1 + c);
    }
    s.y[i] = static_cast<float>(y + noise(rng));
  }
  return s;
}

void select_per_dimension(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto d = static_cast<std::size_t>(state.range(1));
  const data s = make_anisotropic(n, d);
  attnpool::bandwidth_search search;
  search.per_dimension = true;
  attnpool::bandwidth_selection r;
  for (auto _ : state) {
    r = attnpool::select_bandwidth({s.x.data(), n, d}, {s.y.data(), n, 1}, search, cpu());
    benchmark::DoNotOptimize(r.cv_error);
  }
  state.counters["evaluations"] = static_cast<double>(r.evaluations);
  state.counters["cv"] = r.cv_error;
  state.counters["cv_isotropic"] = r.isotropic_cv_error;
}

BENCHMARK(forward)->Arg(1 << 14)->Arg(1 << 16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(backward)->Arg(1 << 14)->Arg(1 << 16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(select)->Arg(10000)->Arg(100000)->Unit(benchmark::kMillisecond)->UseRealTime()
    ->Iterations(1);
BENCHMARK(select_per_dimension)
    ->Args({500, 16})
    ->Args({2000, 16})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
