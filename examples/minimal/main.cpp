// The notebook's case in one main(): 100 noisy samples of y = x + sin(x), fitted by
// Nadaraya-Watson with the Gaussian kernel (h = 1), on the CPU and then on the GPU if there is
// one. Build it against an installed attnpool with find_package(attnpool CONFIG) and
// target_link_libraries(app PRIVATE attnpool::attnpool).
#include <attnpool/attnpool.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace {

// Fits the samples (x, y) on `which` and prints a few predictions and the RMS error of all 100
// predictions against the noise-free curve.
void fit(attnpool::backend which, const std::vector<float>& x, const std::vector<float>& y) {
  std::vector<float> queries(100), truth(100);
  for (std::size_t i = 0; i < queries.size(); ++i) {
    queries[i] = 0.1f * static_cast<float>(i);  // 0, 0.1, ..., 9.9, as the notebook's x_curve
    truth[i] = queries[i] + std::sin(queries[i]);
  }
  attnpool::pool_params params;  // Gaussian kernel
  params.bandwidth = 1.0;
  attnpool::options opts;
  opts.backend = which;
  const std::vector<float> pred = attnpool::pool(queries, x, y, params, opts);
  double sse = 0;
  for (std::size_t i = 0; i < pred.size(); ++i) sse += std::pow(pred[i] - truth[i], 2);
  std::printf("%s:\n", attnpool::to_string(which));
  for (const std::size_t i : {0u, 25u, 50u, 75u, 99u})
    std::printf("  x = %.1f  prediction %7.4f  truth %7.4f\n", queries[i], pred[i], truth[i]);
  std::printf("  RMS error vs x + sin(x): %.4f\n",
              std::sqrt(sse / static_cast<double>(pred.size())));
}

}  // namespace

int main() {
  std::mt19937_64 rng(0);  // fixed seed: the same samples on every run
  std::uniform_real_distribution<float> uniform(0.0f, 10.0f);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  std::vector<float> x(100), y(100);
  for (float& v : x) v = uniform(rng);
  std::sort(x.begin(), x.end());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] + std::sin(x[i]) + noise(rng);

  fit(attnpool::backend::cpu, x, y);
  if (attnpool::cuda_available()) {
    fit(attnpool::backend::cuda_fused, x, y);
  } else {
    std::printf("no usable CUDA device (or attnpool built without CUDA): GPU fit skipped\n");
  }
}
