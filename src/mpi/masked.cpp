// Masked partial states of one rank's shard (masked.hpp): the global mask in the shard's own
// numbering, then one masked pool_partial.
#include "src/mpi/masked.hpp"

#include <attnpool/error.hpp>

#include <algorithm>
#include <vector>

namespace attnpool::mpi::detail {
namespace {

constexpr const char* kFn = "mpi::pool";

}  // namespace

void check_global_mask(const pool_params& params, std::size_t n, std::size_t total) {
  if (params.mask == mask::valid_length) {
    ATTNPOOL_EXPECTS(params.valid_lens.size() == n, kFn,
                     ": params.valid_lens must hold one count per query row (n = ", n, "), got ",
                     params.valid_lens.size());
    for (std::size_t i = 0; i < n; ++i)
      ATTNPOOL_EXPECTS(params.valid_lens[i] >= 1 && params.valid_lens[i] <= total, kFn,
                       ": params.valid_lens[", i, "] must be in [1, ", total,
                       "] (the keys of all ranks), got ", params.valid_lens[i]);
  } else if (params.mask == mask::leave_one_out) {
    ATTNPOOL_EXPECTS(n == total && total >= 2, kFn,
                     ": mask::leave_one_out needs as many queries as keys over all ranks, at least "
                     "2 (query i skips global key i), got n = ",
                     n, " and ", total, " keys");
  }
}

partial_states masked_states(const_view q, const_view k, const_view v, const pool_params& params,
                             const options& opts, key_numbering keys) {
  if (params.mask != mask::valid_length) {
    // leave_one_out: query i skips global key i, local key i - first where this rank holds it.
    return pool_partial(q, k, v, params, opts, keys.first);
  }
  // valid_length: row i sees global keys [0, valid_lens[i]), so the shard's first
  // valid_lens[i] - first keys (none, some or all of them).
  std::vector<std::size_t> local(q.rows);
  for (std::size_t i = 0; i < q.rows; ++i) {
    const std::size_t len = params.valid_lens[i];
    local[i] = len <= keys.first ? 0 : std::min(k.rows, len - keys.first);
  }
  pool_params shard = params;
  shard.valid_lens = local;
  return pool_partial(q, k, v, shard, opts);
}

}  // namespace attnpool::mpi::detail
