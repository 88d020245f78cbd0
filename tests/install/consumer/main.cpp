// A user's program built against the installed package: the notebook's case in a few lines.
#include <attnpool/attnpool.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

#if defined(CONSUMER_HAS_RENDER)
void draw_plot();
#endif
#if defined(CONSUMER_HAS_MPI)
bool mpi_rows_ok();
#endif

int main() {
#if defined(CONSUMER_HAS_RENDER)
  draw_plot();
#endif
  const std::vector<float> x = {0.0f, 1.0f, 2.0f}, y = {0.0f, 1.0f, 4.0f}, q = {1.0f};
  attnpool::options opts;
  opts.backend = attnpool::backend::cpu;
  const auto out = attnpool::pool(q, x, y, attnpool::pool_params{1.0}, opts);
  // Keys 0 and 2 have equal weight e^-0.5 against key 1's 1: (1 + 4 e^-0.5) / (1 + 2 e^-0.5).
  const double want = (1.0 + 4.0 * std::exp(-0.5)) / (1.0 + 2.0 * std::exp(-0.5));
  std::printf("attnpool %s: pooled %.6f, expected %.6f\n", ATTNPOOL_VERSION_STRING, out[0], want);
#if defined(CONSUMER_HAS_MPI)
  if (!mpi_rows_ok()) return 1;
#endif
  return std::fabs(out[0] - want) < 1e-5 ? 0 : 1;
}
