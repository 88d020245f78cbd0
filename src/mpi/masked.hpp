// The partial states of a rank's key shard under a mask (valid_length, leave_one_out), with the
// keys numbered globally: the masked pool_partial with valid_lens counted in the shard and the
// shard's first global key as its key_offset.
#pragma once

#include <attnpool/batched.hpp>
#include <attnpool/types.hpp>

#include <cstddef>

namespace attnpool::mpi::detail {

// This rank's keys in the global numbering: global key `first + j` is local key j; `total` keys
// over all ranks.
struct key_numbering {
  std::size_t first = 0;
  std::size_t total = 0;
};

// Checks the mask against the global numbering (invalid_argument, naming "mpi::pool"): valid_lens
// has n counts, each in [1, total]; leave_one_out needs n == total >= 2.
void check_global_mask(const pool_params& params, std::size_t n, std::size_t total);

// The states of q over k, v (this rank's shard, k.rows >= 1) under params.mask, already checked.
partial_states masked_states(const_view q, const_view k, const_view v, const pool_params& params,
                             const options& opts, key_numbering keys);

}  // namespace attnpool::mpi::detail
