// Helpers of the GPU tests: device copies of test problems (pad elements included, so that the
// NaN in them reaches the device too), NaN-poisoned outputs, and runners for the device-pointer
// API. Every test starts with ATTNPOOL_REQUIRE_DEVICE(): without a GPU it skips, visibly.
#pragma once

#include <attnpool/cuda.hpp>
#include <attnpool/error.hpp>
#include <attnpool/reference.hpp>

#include "src/cuda/host.hpp"
#include "test_support.hpp"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#define ATTNPOOL_REQUIRE_DEVICE()                                                \
  do {                                                                           \
    if (::attnpool::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

namespace attnpool::test {

inline void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(e));
}

/// Owning device copy of a host float buffer (byte for byte, pads included).
class device_array {
 public:
  explicit device_array(std::size_t count) : count_(count) {
    if (count_ > 0) cuda_ok(cudaMalloc(&ptr_, count_ * sizeof(float)), "cudaMalloc");
  }
  explicit device_array(const std::vector<float>& host) : device_array(host.size()) {
    upload(host);
  }
  device_array(const device_array&) = delete;
  device_array& operator=(const device_array&) = delete;
  ~device_array() {
    if (ptr_ != nullptr) static_cast<void>(cudaFree(ptr_));
  }
  void upload(const std::vector<float>& host) {
    if (count_ > 0)
      cuda_ok(cudaMemcpy(ptr_, host.data(), count_ * sizeof(float), cudaMemcpyHostToDevice),
              "upload");
  }
  std::vector<float> download() const {
    std::vector<float> host(count_);
    if (count_ > 0)
      cuda_ok(cudaMemcpy(host.data(), ptr_, count_ * sizeof(float), cudaMemcpyDeviceToHost),
              "download");
    return host;
  }
  float* data() const { return ptr_; }

 private:
  float* ptr_ = nullptr;
  std::size_t count_ = 0;
};

/// Device workspace of `bytes` (cudaMalloc: 256-byte aligned).
class device_workspace {
 public:
  explicit device_workspace(std::size_t bytes) : bytes_(bytes) {
    if (bytes_ > 0) cuda_ok(cudaMalloc(&ptr_, bytes_), "cudaMalloc(workspace)");
  }
  device_workspace(const device_workspace&) = delete;
  device_workspace& operator=(const device_workspace&) = delete;
  ~device_workspace() {
    if (ptr_ != nullptr) static_cast<void>(cudaFree(ptr_));
  }
  void* data() const { return ptr_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

/// A problem's inputs on the device, with the same leading dimensions and NaN pads.
struct device_problem {
  device_array q, k, v;
  const problem& p;
  explicit device_problem(const problem& prob) : q(prob.q), k(prob.k), v(prob.v), p(prob) {}
  const_view queries() const { return {q.data(), p.n, p.d, p.d + p.pad}; }
  const_view keys() const { return {k.data(), p.m, p.d, p.d + p.pad}; }
  const_view values() const { return {v.data(), p.m, p.dv, p.dv + p.pad}; }
};

/// An n x dv output with ld = dv + out_pad, NaN everywhere before the run.
struct poisoned_output {
  std::size_t n, dv, ld;
  std::vector<float> host;
  device_array dev;
  poisoned_output(std::size_t n_, std::size_t dv_, std::size_t out_pad)
      : n(n_), dv(dv_), ld(dv_ + out_pad), host(n_ * (dv_ + out_pad)), dev(host.size()) {
    poison(host);
    dev.upload(host);
  }
  mutable_view view() const { return {dev.data(), n, dv, ld}; }
  /// Copies the result back and checks that no pad element was written (still NaN).
  const std::vector<float>& fetch() {
    host = dev.download();
    std::size_t touched = 0;
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t c = dv; c < ld; ++c) touched += std::isnan(host[i * ld + c]) ? 0 : 1;
    EXPECT_EQ(touched, 0u) << "pad elements of the output were written";
    return host;
  }
};

/// Runs the fused path through the device-pointer API with the given split-K override, on a
/// workspace sized by the matching query; returns the host copy of the output (ld = out.ld).
inline std::vector<float> run_fused(const problem& p, const pool_params& params, int splits,
                                    std::size_t out_pad = 2, bool check_finite = true) {
  const device_problem dp(p);
  poisoned_output out(p.n, p.dv, out_pad);
  const cuda::detail::fused_tuning tuning{splits};
  device_workspace ws(cuda::detail::fused_workspace_size(p.n, p.m, p.d, p.dv, tuning, params));
  options opts;
  opts.backend = backend::cuda_fused;
  opts.check_finite = check_finite;
  opts.workspace = ws.data();
  opts.workspace_bytes = ws.bytes();
  cuda::detail::fused_pool(dp.queries(), dp.keys(), dp.values(), out.view(), params, opts, tuning);
  cuda_ok(cudaDeviceSynchronize(), "sync");
  return out.fetch();
}

/// Runs cuda::pool with the given backend and its workspace query.
inline std::vector<float> run_pool(const problem& p, const pool_params& params, backend which,
                                   std::size_t out_pad = 2) {
  const device_problem dp(p);
  poisoned_output out(p.n, p.dv, out_pad);
  device_workspace ws(cuda::pool_workspace_size(p.n, p.m, p.d, p.dv, params, which));
  options opts;
  opts.backend = which;
  opts.workspace = ws.data();
  opts.workspace_bytes = ws.bytes();
  cuda::pool(dp.queries(), dp.keys(), dp.values(), out.view(), params, opts);
  cuda_ok(cudaDeviceSynchronize(), "sync");
  return out.fetch();
}

}  // namespace attnpool::test
