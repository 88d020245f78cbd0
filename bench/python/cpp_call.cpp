// attnpool_py_cpp_call: the C++ side of bench/python/overhead.py. Times attnpool::pool on the
// same shapes and settings the Python call uses (random data, d = dv = 1, backend cpu) and
// prints the median wall time of one call in nanoseconds.
//
//   attnpool_py_cpp_call N M REPS THREADS
#include <attnpool/pool.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: attnpool_py_cpp_call N M REPS THREADS\n");
    return 2;
  }
  const std::size_t n = std::strtoull(argv[1], nullptr, 10), m = std::strtoull(argv[2], nullptr, 10);
  const int reps = std::atoi(argv[3]);
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> u(0.0f, 5.0f);
  std::vector<float> q(n), k(m), v(m), out(n);
  for (auto& x : q) x = u(gen);
  for (auto& x : k) x = u(gen);
  for (auto& x : v) x = u(gen);
  attnpool::options opts;
  opts.backend = attnpool::backend::cpu;
  opts.threads = static_cast<unsigned>(std::atoi(argv[4]));
  std::vector<double> ns;
  for (int r = 0; r < reps + 1; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    attnpool::pool({q.data(), n, 1}, {k.data(), m, 1}, {v.data(), m, 1}, {out.data(), n, 1}, {},
                   opts);
    const auto t1 = std::chrono::steady_clock::now();
    if (r > 0) ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
  }
  std::sort(ns.begin(), ns.end());
  std::printf("%.1f\n", ns[ns.size() / 2]);
  return 0;
}
