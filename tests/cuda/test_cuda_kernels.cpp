// The kernel family on the GPU: every kernel on the fused path (the generic-score
// instantiations, split-K on and off, the generic d > 64) and the unfused path, the
// empty-support policy (error names the row, nan), and the anisotropic bandwidth, against the
// fp64 reference. Without a GPU every case skips with "no CUDA device".
#include <attnpool/cuda.hpp>
#include <attnpool/pool.hpp>
#include <attnpool/reference.hpp>

#include "cuda_test_support.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace attnpool::test {
namespace {

constexpr kernel kAllKernels[] = {kernel::gaussian, kernel::laplacian, kernel::epanechnikov,
                                  kernel::boxcar, kernel::tricube};

// snap_to_grid (test_support.hpp) also makes every product and sum of the unfused path's GEMM
// expansion exact in float32 (multiples of 1/4096 far below 2^24 of them), so its squared
// distances equal the fused path's and the reference's.

// out (ld = ld) against the oracle: NaN exactly where the oracle's rows are NaN
// (empty_support::nan), finite and within the derived tolerance elsewhere.
void expect_kernel_matches(const problem& p, const pool_params& params,
                           const std::vector<float>& out, std::size_t ld, const char* path) {
  SCOPED_TRACE(describe(p, params.bandwidth) + " kernel=" + to_string(params.kernel) + " " + path);
  expect_matches_reference(p, params, out.data(), ld,
                           reference::pool(p.queries(), p.keys(), p.values(), params));
}

pool_params params_for(kernel k, double h) {
  pool_params params{h};
  params.kernel = k;
  params.empty = empty_support::nan;  // the GPU's non-throwing policy; error is tested below
  return params;
}

TEST(cuda_kernels, fused_every_kernel_sizes_and_splits) {
  ATTNPOOL_REQUIRE_DEVICE();
  for (kernel k : kAllKernels) {
    for (std::size_t n : {1, 7, 129, 4097}) {
      for (std::size_t m : {1, 7, 129, 4097}) {
        for (std::size_t d : {1, 3, 70}) {
          if (n * m > 200000 && d != 1) continue;  // the fp64 oracle's time
          const std::size_t dv = d == 70 ? 3 : (n * m > 200000 ? 1 : 5);
          problem p = make_problem(n, m, d, dv, fresh_seed());
          if (k == kernel::boxcar) snap_to_grid(p);
          for (double h : {1.5 * std::sqrt(static_cast<double>(d)), 0.3}) {
            const pool_params params = params_for(k, h);
            for (int splits : {1, 0, 5}) {
              const std::vector<float> out = run_fused(p, params, splits);
              expect_kernel_matches(p, params, out, p.dv + 2,
                                    splits == 1 ? "fused" : "fused split-K");
            }
          }
        }
      }
    }
  }
}

TEST(cuda_kernels, unfused_every_kernel) {
  ATTNPOOL_REQUIRE_DEVICE();
  for (kernel k : kAllKernels) {
    for (std::size_t n : {1, 7, 129, 1000}) {
      for (std::size_t d : {1, 3}) {
        problem p = make_problem(n, 777, d, 2, fresh_seed());
        snap_to_grid(p);
        for (double h : {1.5 * std::sqrt(static_cast<double>(d)), 0.3}) {
          const pool_params params = params_for(k, h);
          const std::vector<float> out = run_pool(p, params, backend::cuda_unfused);
          expect_kernel_matches(p, params, out, p.dv + 2, "unfused");
        }
      }
    }
  }
}

// Query row 3 lies 10 away from every key.
problem with_lonely_row() {
  problem p = make_problem(6, 300, 2, 2, fresh_seed());
  p.q[3 * 3 + 0] = 10.0f;
  p.q[3 * 3 + 1] = 10.0f;
  return p;
}

TEST(cuda_kernels, empty_support_error_names_the_row) {
  ATTNPOOL_REQUIRE_DEVICE();
  const problem p = with_lonely_row();
  for (kernel k : {kernel::epanechnikov, kernel::boxcar, kernel::tricube}) {
    pool_params params{0.5};
    params.kernel = k;  // empty_support::error, the default
    for (backend b : {backend::cuda_fused, backend::cuda_unfused}) {
      for (int splits : {1, 4}) {
        if (b == backend::cuda_unfused && splits != 1) continue;
        try {
          if (b == backend::cuda_fused) {
            run_fused(p, params, splits);
          } else {
            run_pool(p, params, b);
          }
          ADD_FAILURE() << to_string(b) << " did not throw for an empty support";
        } catch (const invalid_argument& e) {
          EXPECT_NE(std::string(e.what()).find("row 3 has no key inside the support"),
                    std::string::npos)
              << e.what();
        }
      }
      // The host entry point too.
      std::vector<float> out(p.n * p.dv);
      options o;
      o.backend = b;
      EXPECT_THROW(
          attnpool::pool(p.queries(), p.keys(), p.values(), {out.data(), p.n, p.dv}, params, o),
          invalid_argument);
    }
    std::vector<float> w(p.n * p.m);
    options o;
    o.backend = backend::cuda_unfused;
    try {
      attnpool::attention_weights(p.queries(), p.keys(), {w.data(), p.n, p.m}, params, o);
      ADD_FAILURE() << "attention_weights did not throw for an empty support";
    } catch (const invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("row 3"), std::string::npos) << e.what();
    }
  }
}

TEST(cuda_kernels, empty_support_nan_rows) {
  ATTNPOOL_REQUIRE_DEVICE();
  const problem p = with_lonely_row();
  for (kernel k : {kernel::epanechnikov, kernel::boxcar, kernel::tricube}) {
    const pool_params params = params_for(k, 0.5);
    for (int splits : {1, 4})
      expect_kernel_matches(p, params, run_fused(p, params, splits), p.dv + 2, "fused");
    expect_kernel_matches(p, params, run_pool(p, params, backend::cuda_unfused), p.dv + 2,
                          "unfused");
  }
}

TEST(cuda_kernels, anisotropic_bandwidth) {
  ATTNPOOL_REQUIRE_DEVICE();
  for (kernel k : kAllKernels) {
    for (std::size_t d : {1, 2, 3, 6}) {
      problem p = make_problem(129, 1100, d, 2, fresh_seed());
      snap_to_grid(p);
      // Powers of two: the grid stays exact after scaling, for the unfused path's expansion and
      // the boxcar's edge alike.
      std::vector<double> hs(d);
      for (std::size_t c = 0; c < d; ++c) hs[c] = std::ldexp(1.0, static_cast<int>(c % 3) - 1);
      pool_params params = params_for(k, 99.0);
      params.bandwidths = hs;
      for (int splits : {1, 0})
        expect_kernel_matches(p, params, run_fused(p, params, splits), p.dv + 2, "fused aniso");
      expect_kernel_matches(p, params, run_pool(p, params, backend::cuda_unfused), p.dv + 2,
                            "unfused aniso");
      // General bandwidths on the fused path (exact differences, weighted in the distance).
      if (k == kernel::boxcar) continue;
      for (std::size_t c = 0; c < d; ++c) hs[c] = 0.3 + 0.7 * static_cast<double>(c);
      expect_kernel_matches(p, params, run_fused(p, params, 1), p.dv + 2, "fused aniso");
    }
  }
}

TEST(cuda_kernels, rejects_what_the_gpu_lacks) {
  ATTNPOOL_REQUIRE_DEVICE();
  const problem p = make_problem(4, 5, 70, 1, fresh_seed());
  pool_params params{1.0};
  params.kernel = kernel::boxcar;
  params.empty = empty_support::nearest;
  EXPECT_THROW(run_pool(p, params, backend::cuda_fused), invalid_argument);
  std::vector<double> hs(70, 1.0);
  pool_params aniso{1.0};
  aniso.bandwidths = hs;  // d = 70 > kMaxGpuAnisotropicDims
  EXPECT_THROW(run_pool(p, aniso, backend::cuda_unfused), invalid_argument);
}

}  // namespace
}  // namespace attnpool::test
