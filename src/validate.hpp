// Argument checks shared by every backend: one place decides what a valid call is, so the
// reference, the CPU engine and the CUDA paths reject exactly the same inputs with the same words.
#pragma once

#include <attnpool/error.hpp>
#include <attnpool/types.hpp>

#include <cstddef>

namespace attnpool::detail {

struct problem_shape {
  std::size_t n = 0;   // queries
  std::size_t m = 0;   // keys
  std::size_t d = 0;   // input dimension
  std::size_t dv = 0;  // value dimension
};

// Shapes, leading dimensions, null pointers, size_t overflow and the bandwidth.
// `fn` prefixes every message ("pool", "attention_weights", ...).
problem_shape check_pool_args(const char* fn, const_view queries, const_view keys,
                              const_view values, const_view out, const pool_params& params);
problem_shape check_weights_args(const char* fn, const_view queries, const_view keys,
                                 const_view weights, const pool_params& params);
void check_average_args(const char* fn, const_view values, const_view out);

// Host-memory data checks (options.check_finite): every element finite, and the coordinates
// small enough that every float32 score -||q-k||^2 * log2(e)/(2h^2) is finite.
void check_finite_host(const char* fn, const char* name, const_view a);
void check_score_range_host(const char* fn, const_view queries, const_view keys,
                            const pool_params& params);

// The largest |coordinate| for which every float32 score is finite (used by the device check).
double max_safe_coordinate(std::size_t d, double bandwidth);

// A checked product for sizes ("n * m overflows size_t").
std::size_t checked_mul(const char* fn, const char* what, std::size_t a, std::size_t b);

}  // namespace attnpool::detail
