// The renderer and the demo, end to end. CPU only.
//   figure_*      build and rasterise a figure (no file I/O)
//   png_*         encode + write a rendered figure
//   demo          the whole attnpool-demo program (all its figures), as a user runs it
#include <attnpool/pool.hpp>
#include <attnpool/render.hpp>

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace ar = attnpool::render;

namespace {

// A row-stochastic n x n weight matrix like the notebook's heatmap, from the library itself.
std::vector<float> weights(std::size_t n) {
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = 10.0f * static_cast<float>(i) / static_cast<float>(n);
  attnpool::options opts;
  opts.backend = attnpool::backend::cpu;
  return attnpool::attention_weights(x, x, 1, {1.0}, opts);
}

void figure_matshow(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const std::vector<float> w = weights(n);
  for (auto _ : state) {
    ar::figure fig(10, 10);
    ar::matshow_options opts;
    opts.cmap = &ar::colormap::bone();
    fig.add_subplot().matshow(attnpool::const_view{w.data(), n, n}, opts);
    benchmark::DoNotOptimize(fig.render());
  }
  state.counters["cells/s"] =
      benchmark::Counter(static_cast<double>(n * n), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(figure_matshow)->Arg(100)->Arg(4096)->Unit(benchmark::kMillisecond);

void figure_plot(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<double> x(n), y(n);
  std::mt19937 rng(1);
  std::normal_distribution<double> noise(0.0, 1.0);
  for (std::size_t i = 0; i < n; ++i) {
    x[i] = 10.0 * static_cast<double>(i) / static_cast<double>(n);
    y[i] = x[i] + std::sin(x[i]) + noise(rng);
  }
  for (auto _ : state) {
    ar::figure fig;
    auto& ax = fig.add_subplot();
    ax.plot(x, y);
    ax.scatter(x, y);
    benchmark::DoNotOptimize(fig.render());
  }
  state.counters["points/s"] =
      benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(figure_plot)->Arg(100)->Arg(10000)->Unit(benchmark::kMillisecond);

void png_write(benchmark::State& state) {
  const std::vector<float> w = weights(100);
  ar::figure fig(10, 10);
  fig.add_subplot().matshow(attnpool::const_view{w.data(), 100, 100});
  const auto path = std::filesystem::temp_directory_path() / "attnpool_bench_render.png";
  for (auto _ : state) fig.save_png(path);
  std::filesystem::remove(path);
}
BENCHMARK(png_write)->Unit(benchmark::kMillisecond);

// The demo binary next to this one in the build tree (ATTNPOOL_DEMO_PATH set by CMake).
void demo(benchmark::State& state) {
  const auto dir = std::filesystem::temp_directory_path() / "attnpool_bench_demo";
  const std::string cmd = std::string(ATTNPOOL_DEMO_PATH) + " --out " + dir.string() + " > /dev/null";
  for (auto _ : state) {
    if (std::system(cmd.c_str()) != 0) {
      state.SkipWithError("attnpool-demo failed");
      break;
    }
  }
  std::filesystem::remove_all(dir);
}
BENCHMARK(demo)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace

BENCHMARK_MAIN();
