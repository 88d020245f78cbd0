// attnpool::nccl::pool (attnpool/nccl.hpp): local partial states, one ncclAllGather of the
// packed states, and the rank-ordered merge, all on the caller's stream.
#include <attnpool/cuda.hpp>
#include <attnpool/error.hpp>
#include <attnpool/nccl.hpp>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace attnpool::nccl {
namespace {

// Alignment of the workspace's second part (the same 256 bytes that cudaMalloc guarantees and
// the device-pointer API requires).
constexpr std::size_t kAlign = 256;

constexpr std::size_t align_up(std::size_t x) {
  return (x + kAlign - 1) / kAlign * kAlign;
}

[[noreturn]] void throw_nccl(ncclResult_t status, ncclComm_t comm, const char* call,
                             const char* file, int line) {
  const char* last = comm != nullptr ? ncclGetLastError(comm) : nullptr;
  throw cuda_error(
      detail::concat(file, ":", line, ": ", call, " failed: ", ncclGetErrorString(status),
                     last != nullptr && *last != '\0' ? " (" : "", last != nullptr ? last : "",
                     last != nullptr && *last != '\0' ? ")" : ""));
}

#define ATTNPOOL_NCCL_TRY(comm, call)                                       \
  do {                                                                      \
    const ncclResult_t attnpool_nccl_status_ = (call);                      \
    if (attnpool_nccl_status_ != ncclSuccess)                               \
      throw_nccl(attnpool_nccl_status_, (comm), #call, __FILE__, __LINE__); \
  } while (0)

std::size_t gathered_bytes(std::size_t n, std::size_t dv, int ranks) {
  const std::size_t per_rank = cuda::packed_partial_floats(n, dv);
  ATTNPOOL_EXPECTS(ranks >= 1, "nccl::pool_workspace_size: ranks must be >= 1, got ", ranks);
  ATTNPOOL_EXPECTS(
      per_rank == 0 || static_cast<std::size_t>(ranks) <= SIZE_MAX / sizeof(float) / per_rank,
      "nccl::pool_workspace_size: ranks * n * (dv + 2) floats overflow size_t");
  return align_up(static_cast<std::size_t>(ranks) * per_rank * sizeof(float));
}

}  // namespace

std::size_t pool_workspace_size(std::size_t n, std::size_t m_local, std::size_t d, std::size_t dv,
                                int ranks, const pool_params& params) {
  return gathered_bytes(n, dv, ranks) +
         cuda::pool_partial_workspace_size(n, m_local, d, dv, params);
}

void pool(ncclComm* comm, const_view q, const_view k, const_view v, mutable_view out,
          const pool_params& params, const options& opts) {
  constexpr const char* fn = "nccl::pool";
  ATTNPOOL_EXPECTS(comm != nullptr, fn, ": comm is null; create it with ncclCommInitRank or ",
                   "ncclCommInitAll");
  int ranks = 0, rank = 0;
  ATTNPOOL_NCCL_TRY(comm, ncclCommCount(comm, &ranks));
  ATTNPOOL_NCCL_TRY(comm, ncclCommUserRank(comm, &rank));
  const std::size_t n = q.rows, dv = v.cols;
  const std::size_t gathered = gathered_bytes(n, dv, ranks);
  const std::size_t required = pool_workspace_size(n, k.rows, q.cols, dv, ranks, params);
  ATTNPOOL_EXPECTS(opts.workspace_bytes >= required && opts.workspace != nullptr, fn,
                   ": options.workspace (", opts.workspace, ", ", opts.workspace_bytes,
                   " bytes) must hold nccl::pool_workspace_size(...) = ", required, " bytes");
  ATTNPOOL_EXPECTS(reinterpret_cast<std::uintptr_t>(opts.workspace) % kAlign == 0, fn,
                   ": options.workspace must be ", kAlign, "-byte aligned, got ", opts.workspace);
  auto* all = static_cast<float*>(opts.workspace);
  const std::size_t per_rank = cuda::packed_partial_floats(n, dv);
  float* mine = all + static_cast<std::size_t>(rank) * per_rank;

  options local = opts;
  local.workspace = static_cast<std::byte*>(opts.workspace) + gathered;
  local.workspace_bytes = opts.workspace_bytes - gathered;
  if (k.rows == 0) {
    // A rank without keys (m < ranks) still joins the all-gather, or the others would wait in
    // it for ever: it sends the merge's identity, max = -inf, sum = 0, acc = 0. The copy is
    // from pageable memory, so it is staged before cudaMemcpyAsync returns.
    ATTNPOOL_EXPECTS(v.rows == 0 && v.cols == out.cols && q.rows == out.rows, fn,
                     ": an empty key shard needs values 0 x ", out.cols, ", got ", v.rows, " x ",
                     v.cols, ", and out with the queries' ", q.rows, " rows, got ", out.rows);
    std::vector<float> identity(per_rank, 0.0f);
    std::fill_n(identity.begin(), n, -std::numeric_limits<float>::infinity());
    const cudaError_t e =
        cudaMemcpyAsync(mine, identity.data(), per_rank * sizeof(float), cudaMemcpyHostToDevice,
                        static_cast<cudaStream_t>(opts.stream));
    if (e != cudaSuccess)
      throw cuda_error(detail::concat(fn, ": cudaMemcpyAsync of the empty shard's state failed: ",
                                      cudaGetErrorName(e)));
  } else {
    cuda::pool_partial(q, k, v, cuda::packed_partial(mine, n, dv), params, local);
  }
  if (n == 0) return;
  // In place: rank r's send buffer is slot r of the receive buffer (NCCL's in-place rule).
  ATTNPOOL_NCCL_TRY(comm, ncclAllGather(mine, all, per_rank, ncclFloat, comm, opts.stream));
  cuda::merge_partials(cuda::packed_partials(all, static_cast<std::size_t>(ranks), n, dv), out,
                       params, local);
}

}  // namespace attnpool::nccl
