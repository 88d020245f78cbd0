// The partial states of a rank's key shard under a mask (valid_length, leave_one_out), with the
// keys numbered globally. Built on the unmasked pool_partial: every mask of the family shows
// row i the keys [0, limit_i) minus at most one key, so each block of the shard's keys is, for
// a row, all of it, none of it, or at most two key ranges; rows that see the same ranges are
// computed together and the pieces merged into the row's running state in key order.
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
// opts.check_finite is applied once to the whole data; the pieces run without it.
partial_states masked_states(const_view q, const_view k, const_view v, const pool_params& params,
                             const options& opts, key_numbering keys);

}  // namespace attnpool::mpi::detail
