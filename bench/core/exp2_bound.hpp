// The machine's vectorised exp2 throughput, measured with the library's own exp2_poly (see
// exp2_bound.cpp for how it is compiled and why).
#pragma once

#include <cstddef>

namespace attnpool_bench {

/// y[j] = exp2_poly(x[j]) for j < len.
void exp2_array(const float* x, float* y, std::size_t len);
/// y[j] = exp2_poly5(x[j]) for j < len.
void exp2_poly5_array(const float* x, float* y, std::size_t len);

struct sum_dot {
  float sum, dot;
};
/// The CPU engine's d = 1 inner loop on one query: p_j = 2^(neg_scale (qx - k_j)^2 - ref),
/// returns {sum_j p_j, sum_j p_j v_j}.
sum_dot exp2_sum_dot_array(float qx, const float* k, const float* v, std::size_t len,
                           float neg_scale, float ref);

/// The machine's FMA throughput: `reps` rounds of a = a * c + d on 8 independent 16-float
/// vectors (128 lanes, in registers: enough chains to hide the FMA latency on two FMA pipes),
/// stored to out[0..128). Returns the FMAs done: 128 reps.
double fma_chains(float* out, std::size_t reps, float c, float d);

/// Which multiversioned clone the loader picks on this CPU ("clone x86-64-v4 (AVX-512)", ...).
const char* clone_label();

}  // namespace attnpool_bench
