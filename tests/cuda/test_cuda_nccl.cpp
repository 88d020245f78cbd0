// attnpool::nccl::pool with one rank (ncclCommInitAll over device 0): the all-gather and the
// rank-ordered merge run for real, and the result must be bitwise the single-shard device
// pipeline (cuda::pool_partial + cuda::merge_partials), which is bitwise cuda::pool, and within
// tolerance of the fp64 reference. A separate executable so that only it needs libnccl.so.2 at
// run time. Without a GPU every case skips with "no CUDA device".
#include <attnpool/cuda.hpp>
#include <attnpool/nccl.hpp>
#include <attnpool/reference.hpp>

#include "cuda_test_support.hpp"

#include <gtest/gtest.h>
#include <nccl.h>

#include <cstring>
#include <string>
#include <vector>

namespace attnpool::test {
namespace {

// One communicator of one rank on device 0, destroyed with the test.
class one_rank {
 public:
  one_rank() {
    int dev = 0;
    ok_ = ncclCommInitAll(&comm_, 1, &dev) == ncclSuccess;
  }
  one_rank(const one_rank&) = delete;
  one_rank& operator=(const one_rank&) = delete;
  ~one_rank() {
    if (comm_ != nullptr) static_cast<void>(ncclCommDestroy(comm_));
  }
  bool ok() const { return ok_; }
  ncclComm_t get() const { return comm_; }

 private:
  ncclComm_t comm_ = nullptr;
  bool ok_ = false;
};

std::vector<float> run_nccl(ncclComm_t comm, const problem& p, const pool_params& params) {
  const device_problem dp(p);
  poisoned_output out(p.n, p.dv, 2);
  device_workspace ws(nccl::pool_workspace_size(p.n, p.m, p.d, p.dv, 1, params));
  options o;
  o.workspace = ws.data();
  o.workspace_bytes = ws.bytes();
  nccl::pool(comm, dp.queries(), dp.keys(), dp.values(), out.view(), params, o);
  cuda_ok(cudaDeviceSynchronize(), "sync");
  return out.fetch();
}

TEST(nccl_pool, null_communicator_is_named) {
  // Checked before anything touches a device.
  const std::vector<float> buf(8, 0.5f);
  std::vector<float> out(2);
  try {
    nccl::pool(nullptr, {buf.data(), 2, 1}, {buf.data(), 3, 1}, {buf.data(), 3, 1},
               {out.data(), 2, 1}, {}, {});
    ADD_FAILURE() << "expected invalid_argument";
  } catch (const invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("comm is null"), std::string::npos) << e.what();
  }
}

TEST(nccl_pool, one_rank_matches_reference_and_single_shard_bitwise) {
  ATTNPOOL_REQUIRE_DEVICE();
  const one_rank comm;
  ASSERT_TRUE(comm.ok()) << "ncclCommInitAll over device 0 failed";
  for (std::size_t n : {1, 7, 129, 4097}) {
    for (kernel kern : {kernel::gaussian, kernel::epanechnikov}) {
      const problem p = make_problem(n, 4097, 3, 2, fresh_seed());
      pool_params params{0.2};
      params.kernel = kern;
      params.empty = empty_support::nan;
      SCOPED_TRACE(describe(p, 0.2) + " kernel=" + to_string(kern));
      const std::vector<float> got = run_nccl(comm.get(), p, params);
      expect_matches_reference(p, params, got.data(), p.dv + 2,
                               reference::pool(p.queries(), p.keys(), p.values(), params));
      const std::vector<float> again = run_nccl(comm.get(), p, params);
      EXPECT_EQ(0, std::memcmp(got.data(), again.data(), got.size() * sizeof(float)))
          << "not deterministic";
      // One rank = one shard: bitwise cuda::pool (tests/cuda/test_cuda_batched.cpp shows the
      // single-shard pipeline is).
      const std::vector<float> whole = run_pool(p, params, backend::cuda_fused, 2);
      EXPECT_EQ(0, std::memcmp(got.data(), whole.data(), got.size() * sizeof(float)))
          << "one rank is not bitwise cuda::pool";
    }
  }
}

TEST(nccl_pool, too_small_a_workspace_is_named) {
  ATTNPOOL_REQUIRE_DEVICE();
  const one_rank comm;
  ASSERT_TRUE(comm.ok());
  const problem p = make_problem(7, 50, 1, 1, fresh_seed());
  const device_problem dp(p);
  poisoned_output out(p.n, p.dv, 0);
  device_workspace ws(256);
  options o;
  o.workspace = ws.data();
  o.workspace_bytes = ws.bytes();
  try {
    nccl::pool(comm.get(), dp.queries(), dp.keys(), dp.values(), out.view(), {}, o);
    ADD_FAILURE() << "expected invalid_argument";
  } catch (const invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("nccl::pool_workspace_size"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace attnpool::test
