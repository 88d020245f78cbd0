// attnpool::mpi::pool (attnpool/mpi.hpp): the local shard's partial states (pool_partial), the
// agreement that every rank may go on (agree.hpp), the exchange of the states (exchange.hpp)
// and the rank-ordered merge.
#include <attnpool/batched.hpp>
#include <attnpool/detail/online_softmax.hpp>
#include <attnpool/error.hpp>
#include <attnpool/mpi.hpp>

#include "src/mpi/agree.hpp"
#include "src/mpi/masked.hpp"
#include "src/mpi/mpi_check.hpp"
#include "src/mpi/states.hpp"

#include <algorithm>
#include <bit>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <vector>

namespace attnpool::mpi {
namespace {

constexpr const char* kFn = "mpi::pool";

// A hash of a view's elements row by row (its padding is not part of the data).
std::uint64_t hash_view(const_view a) {
  std::uint64_t h = detail::hash_bytes(&a.rows, sizeof a.rows);
  for (std::size_t i = 0; i < a.rows; ++i)
    h = detail::hash_bytes(a.row(i), a.cols * sizeof(float), h);
  return h;
}

// The local part: every check pool_partial makes, then its states (masked.hpp under a mask).
// A rank without keys runs the same checks on the queries and parameters against one zero key
// (so that it rejects what the others reject) and contributes the merge's identity.
partial_states local_states(const_view q, const_view k, const_view v, mutable_view out,
                            std::size_t out_rows, const pool_params& params, const options& opts,
                            detail::key_numbering keys) {
  const std::size_t dv = v.cols;
  ATTNPOOL_EXPECTS(dv >= 1, kFn, ": values_local.cols (dv) must be >= 1, got ", dv);
  ATTNPOOL_EXPECTS(v.rows == k.rows, kFn, ": values_local.rows must equal keys_local.rows (",
                   k.rows, "), got ", v.rows);
  ATTNPOOL_EXPECTS(out.rows == out_rows && out.cols == dv, kFn, ": out must be ", out_rows, " x ",
                   dv, " on this rank, got ", out.rows, " x ", out.cols);
  ATTNPOOL_EXPECTS(out.ld >= out.cols, kFn, ": out.ld must be >= out.cols (", out.cols, "), got ",
                   out.ld);
  ATTNPOOL_EXPECTS(out.data != nullptr || out.rows == 0, kFn, ": out.data is null but out is ",
                   out.rows, " x ", out.cols);
  ATTNPOOL_EXPECTS(q.rows <= static_cast<std::size_t>(INT_MAX) && dv <= INT_MAX - 2, kFn,
                   ": n = ", q.rows, " and dv = ", dv, " must stay below 2^31 - 1 (MPI counts)");
  ATTNPOOL_EXPECTS(params.mask == mask::none || params.mask == mask::valid_length ||
                       params.mask == mask::leave_one_out,
                   kFn, ": unknown mask ", static_cast<int>(params.mask));
  detail::check_global_mask(params, q.rows, keys.total);
  if (k.rows > 0 && params.mask != mask::none)
    return detail::masked_states(q, k, v, params, opts, keys);
  if (k.rows > 0) return pool_partial(q, k, v, params, opts);
  pool_params plain = params;
  plain.mask = mask::none;
  plain.valid_lens = {};
  const std::vector<float> zero_key(q.cols, 0.0f), zero_value(dv, 0.0f);
  pool_partial(q, {zero_key.data(), 1, q.cols}, {zero_value.data(), 1, dv}, plain, opts);
  partial_states st;
  st.n = q.rows;
  st.dv = dv;
  st.max.assign(st.n, -std::numeric_limits<float>::infinity());
  st.sum.assign(st.n, 0.0f);
  st.acc.assign(st.n * dv, 0.0f);
  return st;
}

// Where this rank's keys sit in the global numbering: one MPI_Allgather of every rank's key
// count, made before anything can throw on one rank alone.
detail::key_numbering number_keys(MPI_Comm comm, std::size_t m_local, int ranks, int rank) {
  std::vector<unsigned long long> counts(static_cast<std::size_t>(ranks));
  const unsigned long long mine = m_local;
  ATTNPOOL_MPI_TRY(MPI_Allgather(&mine, 1, MPI_UNSIGNED_LONG_LONG, counts.data(), 1,
                                 MPI_UNSIGNED_LONG_LONG, comm));
  detail::key_numbering keys;
  for (int r = 0; r < ranks; ++r) {
    if (r == rank) keys.first = keys.total;
    keys.total += counts[static_cast<std::size_t>(r)];
  }
  return keys;
}

// Writes S packed states of `rows` rows into out (rows [0, rows) of out), after checking that no
// row is left without a key under empty_support::error.
void merge_into(const const_partials& in, mutable_view out, const pool_params& params,
                std::size_t first_global_row) {
  const std::size_t row = detail::first_empty_row(in);
  if (row != in.acc.rows && params.empty == empty_support::error)
    detail::throw_empty(kFn, params, first_global_row + row);
  detail::merge_rows(in, out);
}

}  // namespace

const char* to_string(exchange e) noexcept {
  switch (e) {
    case exchange::automatic:
      return "automatic";
    case exchange::all_gather:
      return "all_gather";
    case exchange::query_partitioned:
      return "query_partitioned";
  }
  return "unknown";
}

row_span row_range(std::size_t n, int ranks, int rank) {
  ATTNPOOL_EXPECTS(ranks >= 1 && rank >= 0 && rank < ranks, "mpi::row_range: rank must be in [0, ",
                   ranks, "), got ", rank);
  const auto s = static_cast<std::size_t>(ranks), r = static_cast<std::size_t>(rank);
  // n * r overflows only past 2^64 / ranks rows; pool() limits n to 2^31.
  return {n * r / s, n * (r + 1) / s};
}

exchange_stats pool(MPI_Comm comm, const_view q, const_view k, const_view v, mutable_view out,
                    const pool_params& params, const options& opts, const exchange_options& how) {
  int initialised = 0, finalised = 0;
  ATTNPOOL_MPI_TRY(MPI_Initialized(&initialised));
  ATTNPOOL_MPI_TRY(MPI_Finalized(&finalised));
  ATTNPOOL_EXPECTS(initialised && !finalised, kFn,
                   ": MPI is not initialised (call MPI_Init first) or already finalised");
  ATTNPOOL_EXPECTS(comm != MPI_COMM_NULL, kFn, ": comm is MPI_COMM_NULL");
  int inter = 0, ranks = 0, rank = 0;
  ATTNPOOL_MPI_TRY(MPI_Comm_test_inter(comm, &inter));
  ATTNPOOL_EXPECTS(!inter, kFn, ": comm must be an intracommunicator");
  ATTNPOOL_MPI_TRY(MPI_Comm_size(comm, &ranks));
  ATTNPOOL_MPI_TRY(MPI_Comm_rank(comm, &rank));

  const std::size_t n = q.rows, dv = v.cols;
  const row_span mine = row_range(n, ranks, rank);
  const std::size_t per_rank_floats = n * (dv + 2);
  exchange_stats stats;
  stats.used = how.exchange;
  if (stats.used == exchange::automatic)
    stats.used = ranks == 1 || static_cast<double>(ranks) * static_cast<double>(per_rank_floats) *
                                       sizeof(float) <=
                                   static_cast<double>(how.all_gather_max_bytes)
                     ? exchange::all_gather
                     : exchange::query_partitioned;

  const detail::key_numbering keys = number_keys(comm, k.rows, ranks, rank);
  // Everything that can fail on one rank alone happens here, before the next collective.
  detail::local_failure failed;
  partial_states local;
  std::uint64_t queries_hash = 0;
  try {
    ATTNPOOL_EXPECTS(how.exchange == exchange::automatic || how.exchange == exchange::all_gather ||
                         how.exchange == exchange::query_partitioned,
                     kFn, ": unknown exchange ", static_cast<int>(how.exchange));
    local = local_states(q, k, v, out, how.distributed ? mine.size() : n, params, opts, keys);
    queries_hash = hash_view(q);
  } catch (...) {
    failed = detail::capture(std::current_exception());
  }
  std::uint64_t bandwidths_hash =
      detail::hash_bytes(params.bandwidths.data(), params.bandwidths.size_bytes());
  const std::uint64_t valid_lens_hash =
      params.mask == mask::valid_length
          ? detail::hash_bytes(params.valid_lens.data(), params.valid_lens.size_bytes())
          : 0;
  const detail::field fields[] = {
      {"n = queries.rows", n},
      {"d = queries.cols", q.cols},
      {"dv = values_local.cols", dv},
      {"a hash of the queries' elements", queries_hash},
      {"params.bandwidth", std::bit_cast<std::uint64_t>(params.bandwidth), true},
      {"params.bandwidths.size()", params.bandwidths.size()},
      {"a hash of params.bandwidths", bandwidths_hash},
      {"params.kernel", static_cast<std::uint64_t>(params.kernel)},
      {"params.empty", static_cast<std::uint64_t>(params.empty)},
      {"params.mask", static_cast<std::uint64_t>(params.mask)},
      {"a hash of params.valid_lens", valid_lens_hash},
      {"how.exchange", static_cast<std::uint64_t>(how.exchange)},
      {"how.all_gather_max_bytes", how.all_gather_max_bytes},
      {"how.distributed", how.distributed ? 1u : 0u},
  };
  detail::agree(comm, kFn, failed, fields);
  if (n == 0) return stats;

  const detail::row_type rows_t(dv);
  if (stats.used == exchange::all_gather) {
    // Slot r of the gather buffer is rank r's packed state (nccl::pool's layout), in place.
    std::vector<float> all(static_cast<std::size_t>(ranks) * per_rank_floats);
    detail::pack_rows(local, {0, n}, all.data() + static_cast<std::size_t>(rank) * per_rank_floats);
    local = {};
    ATTNPOOL_MPI_TRY(MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, all.data(),
                                   static_cast<int>(n), rows_t.get(), comm));
    stats.bytes_sent = stats.bytes_received =
        static_cast<std::size_t>(ranks - 1) * per_rank_floats * sizeof(float);
    const const_partials states = detail::packed_blocks(all.data(), ranks, n, dv);
    if (!how.distributed) {
      merge_into(states, out, params, 0);
    } else {
      // Every rank holds every row, so every rank runs the same empty-row check (the same error
      // on all of them) and merges only its own rows.
      const std::size_t row = detail::first_empty_row(states);
      if (row != n && params.empty == empty_support::error) detail::throw_empty(kFn, params, row);
      detail::merge_rows(detail::rows_of(states, mine.begin, mine.end), out);
    }
    return stats;
  }

  // Query-partitioned: block t of the send buffer holds the rows rank t owns, packed; block s
  // of the receive buffer holds rank s's states of this rank's rows.
  const auto S = static_cast<std::size_t>(ranks);
  std::vector<float> send(per_rank_floats), recv(S * mine.size() * (dv + 2));
  std::vector<int> send_counts(S), send_displs(S), recv_counts(S), recv_displs(S);
  for (std::size_t t = 0; t < S; ++t) {
    const row_span theirs = row_range(n, ranks, static_cast<int>(t));
    detail::pack_rows(local, theirs, send.data() + theirs.begin * (dv + 2));
    send_counts[t] = static_cast<int>(theirs.size());
    send_displs[t] = static_cast<int>(theirs.begin);
    recv_counts[t] = static_cast<int>(mine.size());
    recv_displs[t] = static_cast<int>(t * mine.size());
    if (t != static_cast<std::size_t>(rank)) {
      stats.bytes_sent += theirs.size() * (dv + 2) * sizeof(float);
      stats.bytes_received += mine.size() * (dv + 2) * sizeof(float);
    }
  }
  local = {};
  ATTNPOOL_MPI_TRY(MPI_Alltoallv(send.data(), send_counts.data(), send_displs.data(), rows_t.get(),
                                 recv.data(), recv_counts.data(), recv_displs.data(), rows_t.get(),
                                 comm));
  send = {};
  const const_partials states = detail::packed_blocks(recv.data(), ranks, mine.size(), dv);
  // Each rank sees only its rows: the empty-row check is agreed on (the lowest such row, on
  // every rank) before anything is written or gathered.
  std::uint64_t empty_row = std::numeric_limits<std::uint64_t>::max();
  if (params.empty == empty_support::error) {
    const std::size_t row = detail::first_empty_row(states);
    if (row != mine.size()) empty_row = mine.begin + row;
    ATTNPOOL_MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, &empty_row, 1, MPI_UINT64_T, MPI_MIN, comm));
    if (empty_row != std::numeric_limits<std::uint64_t>::max())
      detail::throw_empty(kFn, params, empty_row);
  }
  if (how.distributed) {
    detail::merge_rows(states, out);
    return stats;
  }
  std::vector<float> merged(n * dv);
  detail::merge_rows(states, {merged.data() + mine.begin * dv, mine.size(), dv});
  recv = {};
  const detail::row_type out_t(dv, 0);
  for (std::size_t t = 0; t < S; ++t) {
    const row_span theirs = row_range(n, ranks, static_cast<int>(t));
    recv_counts[t] = static_cast<int>(theirs.size());
    recv_displs[t] = static_cast<int>(theirs.begin);
  }
  ATTNPOOL_MPI_TRY(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, merged.data(),
                                  recv_counts.data(), recv_displs.data(), out_t.get(), comm));
  stats.bytes_sent += (S - 1) * mine.size() * dv * sizeof(float);
  stats.bytes_received += (n - mine.size()) * dv * sizeof(float);
  for (std::size_t i = 0; i < n; ++i) std::copy_n(merged.data() + i * dv, dv, out.row(i));
  return stats;
}

}  // namespace attnpool::mpi
