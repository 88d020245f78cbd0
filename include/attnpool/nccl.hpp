/// \file
/// Keys sharded over ranks (processes or nodes) with NCCL: every rank
/// holds the same queries and its own shard of the keys, computes its shard's partial softmax
/// states, all-gathers them (n x (dv + 2) floats per rank) and merges them in one fixed order,
/// so every rank ends with the same, bitwise identical result. See docs/scaling.md.
///
/// Optional component: link attnpool::nccl (CMake option ATTNPOOL_NCCL, built where the CUDA
/// backends are and nccl.h / libnccl are found). The core library never depends on NCCL.
#pragma once

#include <attnpool/types.hpp>

#include <cstddef>

/// NCCL's communicator (ncclComm_t is `struct ncclComm*`); declared here so that this header
/// does not need nccl.h.
struct ncclComm;

namespace attnpool::nccl {

/// Bytes of device workspace that pool() needs on a rank: the all-gathered states of `ranks`
/// ranks (ranks x n x (dv + 2) floats) plus cuda::pool_partial's workspace for the local shard.
std::size_t pool_workspace_size(std::size_t n, std::size_t m_local, std::size_t d, std::size_t dv,
                                int ranks, const pool_params& params = {});

/// Attention pooling over keys sharded across the ranks of `comm`, on device pointers.
/// Collective: every rank of comm must call it with the same n, d, dv and params (its own
/// keys_local / values_local; a rank may hold no keys, m_local = 0, and then contributes the
/// merge's identity) on the device comm was created for. Enqueues cuda::pool_partial,
/// ncclAllGather and cuda::merge_partials on opts.stream; asynchronous unless
/// opts.check_finite or a compact kernel under empty_support::error (then it synchronises, like
/// cuda::pool). The merge runs in the same fixed order on every rank (merge_partials'):
/// deterministic, and bitwise the same on all.
/// A check that throws on one rank before the all-gather (bad views, non-finite local data
/// under check_finite) leaves the other ranks waiting in it: validate on every rank first, or
/// abort the communicator (ncclCommAbort) when a rank throws.
/// \param comm   an initialised communicator (ncclCommInitRank / ncclCommInitAll)
/// \param opts   backend automatic or cuda_fused; workspace sized by pool_workspace_size
/// \throws invalid_argument as cuda::pool_partial and cuda::merge_partials do, or for a null
///         comm; cuda_error for CUDA or NCCL failures (with NCCL's error string).
void pool(ncclComm* comm, const_view queries, const_view keys_local, const_view values_local,
          mutable_view out, const pool_params& params, const options& opts);

}  // namespace attnpool::nccl
