// mpi::nccl_communicator in a build without NCCL: the API exists and says why it cannot run.
#include <attnpool/error.hpp>
#include <attnpool/mpi.hpp>

#include <utility>

namespace attnpool::mpi {

nccl_communicator::nccl_communicator(MPI_Comm) {
  throw cuda_error(
      "mpi::nccl_communicator: attnpool was built without NCCL (ATTNPOOL_NCCL needs the CUDA "
      "backends and nccl.h / libnccl)");
}

nccl_communicator::~nccl_communicator() = default;

nccl_communicator::nccl_communicator(nccl_communicator&& other) noexcept
    : comm_(std::exchange(other.comm_, nullptr)),
      device_(other.device_),
      local_rank_(other.local_rank_),
      local_ranks_(other.local_ranks_) {}

nccl_communicator& nccl_communicator::operator=(nccl_communicator&& other) noexcept {
  comm_ = std::exchange(other.comm_, nullptr);
  device_ = other.device_;
  local_rank_ = other.local_rank_;
  local_ranks_ = other.local_ranks_;
  return *this;
}

}  // namespace attnpool::mpi
