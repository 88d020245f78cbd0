// The exp2 bound of bench_cpu: exp2_poly (include/attnpool/detail/online_softmax.hpp) over
// L1-resident arrays, compiled the way src/cpu/engine.cpp is (target_clones for x86-64-v4,
// x86-64-v3 and baseline, `omp simd` via -fopenmp-simd; no -march=native), so the loader picks
// the clone the engine itself runs on this CPU.
//
// This file is also built with -fno-trapping-math (bench/CMakeLists.txt). Without it GCC 12
// vectorises exp2_poly's final select (x < kExp2Floor ? 0 : r) only where AVX-512 mask registers
// let it avoid speculating trapping FP operations: the x86-64-v3 and baseline clones stay
// scalar. The bound must be the vectorised one on every ISA, so that an engine clone which is
// not vectorised shows up as far from it.
#include "exp2_bound.hpp"

#include <attnpool/detail/fast_math.hpp>
#include <attnpool/detail/online_softmax.hpp>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(ATTNPOOL_NO_MULTIVERSIONING)
#define BENCH_MULTIVERSION \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BENCH_MULTIVERSION
#endif

namespace attnpool_bench {

using attnpool::detail::exp2_poly;

BENCH_MULTIVERSION
void exp2_array(const float* x, float* y, std::size_t len) {
#pragma omp simd
  for (std::size_t j = 0; j < len; ++j) y[j] = exp2_poly(x[j]);
}

BENCH_MULTIVERSION
void exp2_poly5_array(const float* x, float* y, std::size_t len) {
#pragma omp simd
  for (std::size_t j = 0; j < len; ++j) y[j] = attnpool::detail::exp2_poly5(x[j]);
}

BENCH_MULTIVERSION
sum_dot exp2_sum_dot_array(float qx, const float* k, const float* v, std::size_t len,
                           float neg_scale, float ref) {
  float sum = 0.0f, dot = 0.0f;
#pragma omp simd reduction(+ : sum, dot)
  for (std::size_t j = 0; j < len; ++j) {
    const float diff = qx - k[j];
    const float p = exp2_poly((neg_scale * diff) * diff - ref);
    sum += p;
    dot = p * v[j] + dot;
  }
  return {sum, dot};
}

BENCH_MULTIVERSION
double fma_chains(float* out, std::size_t reps, float c, float d) {
  // GCC's vector extension: one zmm per vector on AVX-512, two ymm on AVX2, four xmm on SSE.
  using v16 = float __attribute__((vector_size(64)));
  v16 a[8];
  for (int i = 0; i < 8; ++i)
    for (int l = 0; l < 16; ++l) a[i][l] = out[i * 16 + l];
  for (std::size_t r = 0; r < reps; ++r)
    for (v16& x : a) x = x * c + d;  // contracted to one FMA per lane (-ffp-contract=fast)
  for (int i = 0; i < 8; ++i)
    for (int l = 0; l < 16; ++l) out[i * 16 + l] = a[i][l];
  return 128.0 * static_cast<double>(reps);
}

const char* clone_label() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(ATTNPOOL_NO_MULTIVERSIONING)
  // The same test GCC's target_clones resolver makes for arch=x86-64-v4 / -v3.
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return "clone x86-64-v4 (AVX-512)";
  if (__builtin_cpu_supports("x86-64-v3")) return "clone x86-64-v3 (AVX2+FMA)";
  return "clone default (SSE2)";
#else
  return "no multiversioning";
#endif
}

}  // namespace attnpool_bench
