// mpi::nccl_communicator (attnpool/mpi.hpp): one GPU per rank of a node, rank 0's ncclUniqueId
// broadcast over MPI, ncclCommInitRank. Built where NCCL is (ATTNPOOL_HAS_NCCL); nccl_stub.cpp
// elsewhere.
#include <attnpool/error.hpp>
#include <attnpool/mpi.hpp>

#include "src/mpi/mpi_check.hpp"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>
#include <tuple>
#include <utility>

namespace attnpool::mpi {
namespace {

constexpr const char* kFn = "mpi::nccl_communicator";

// The node-local rank and size: the ranks that share memory with this one.
std::pair<int, int> local_rank_of(MPI_Comm comm) {
  MPI_Comm node = MPI_COMM_NULL;
  ATTNPOOL_MPI_TRY(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  int rank = 0, size = 1;
  const int rc_rank = MPI_Comm_rank(node, &rank), rc_size = MPI_Comm_size(node, &size);
  MPI_Comm_free(&node);
  ATTNPOOL_MPI_TRY(rc_rank);
  ATTNPOOL_MPI_TRY(rc_size);
  return {rank, size};
}

}  // namespace

nccl_communicator::nccl_communicator(MPI_Comm comm) {
  int ranks = 0, rank = 0;
  ATTNPOOL_MPI_TRY(MPI_Comm_size(comm, &ranks));
  ATTNPOOL_MPI_TRY(MPI_Comm_rank(comm, &rank));
  std::tie(local_rank_, local_ranks_) = local_rank_of(comm);

  // Every rank picks its device and rank 0 makes the id; then one MPI_Allreduce says whether
  // all of that worked everywhere, before anyone enters ncclCommInitRank (which waits for all).
  std::string problem;
  int devices = 0;
  cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess || devices == 0) {
    problem = ::attnpool::detail::concat("no CUDA device is visible (cudaGetDeviceCount: ",
                                         e == cudaSuccess ? "0 devices" : cudaGetErrorName(e), ")");
  } else {
    device_ = local_rank_ % devices;
    e = cudaSetDevice(device_);
    if (e != cudaSuccess)
      problem =
          ::attnpool::detail::concat("cudaSetDevice(", device_, ") failed: ", cudaGetErrorName(e));
  }
  ncclUniqueId id{};
  if (problem.empty() && rank == 0) {
    const ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess)
      problem = ::attnpool::detail::concat("ncclGetUniqueId failed: ", ncclGetErrorString(r));
  }
  int failed = problem.empty() ? 0 : ranks - rank;
  ATTNPOOL_MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, comm));
  if (failed != 0)
    throw cuda_error(
        ::attnpool::detail::concat(kFn, ": rank ", ranks - failed, " of ", ranks, " failed",
                                   problem.empty() ? "" : "; on this rank: ", problem));
  ATTNPOOL_MPI_TRY(MPI_Bcast(&id, static_cast<int>(sizeof id), MPI_BYTE, 0, comm));
  ncclComm_t c = nullptr;
  const ncclResult_t r = ncclCommInitRank(&c, ranks, id, rank);
  if (r != ncclSuccess)
    throw cuda_error(::attnpool::detail::concat(kFn, ": ncclCommInitRank(", ranks, " ranks, rank ",
                                                rank, ", device ", device_,
                                                ") failed: ", ncclGetErrorString(r)));
  comm_ = c;
}

nccl_communicator::~nccl_communicator() {
  if (comm_ != nullptr) ncclCommDestroy(comm_);  // never throws; its status has no one to go to
}

nccl_communicator::nccl_communicator(nccl_communicator&& other) noexcept
    : comm_(std::exchange(other.comm_, nullptr)),
      device_(other.device_),
      local_rank_(other.local_rank_),
      local_ranks_(other.local_ranks_) {}

nccl_communicator& nccl_communicator::operator=(nccl_communicator&& other) noexcept {
  if (this != &other) {
    if (comm_ != nullptr) ncclCommDestroy(comm_);
    comm_ = std::exchange(other.comm_, nullptr);
    device_ = other.device_;
    local_rank_ = other.local_rank_;
    local_ranks_ = other.local_ranks_;
  }
  return *this;
}

}  // namespace attnpool::mpi
