// The packed partial states that cross between ranks, and their merge. A packed state of r rows
// is nccl::pool's (and cuda::packed_partial's) layout, [max: r][sum: r][acc: r x dv], r (dv + 2)
// floats; MPI counts it in units of one row's dv + 2 floats (row_type), so that the counts stay
// ints up to 2^31 - 1 rows.
#pragma once

#include <attnpool/batched.hpp>
#include <attnpool/mpi.hpp>
#include <attnpool/types.hpp>

#include <mpi.h>

#include <cstddef>

namespace attnpool::mpi::detail {

// An MPI datatype of dv + extra contiguous floats, freed on destruction.
class row_type {
 public:
  explicit row_type(std::size_t dv, int extra = 2);
  ~row_type();
  row_type(const row_type&) = delete;
  row_type& operator=(const row_type&) = delete;
  MPI_Datatype get() const { return type_; }

 private:
  MPI_Datatype type_ = MPI_DATATYPE_NULL;
};

// Rows [rows.begin, rows.end) of st, packed into dst (rows.size() (dv + 2) floats).
void pack_rows(const partial_states& st, row_span rows, float* dst);

// `shards` packed states of `rows` rows each, one after another from base.
const_partials packed_blocks(const float* base, int shards, std::size_t rows, std::size_t dv);

// Rows [r0, r1) of every shard of in.
const_partials rows_of(const const_partials& in, std::size_t r0, std::size_t r1);

// The first row (of in.acc.rows) that no shard saw a key for, or in.acc.rows if none.
std::size_t first_empty_row(const const_partials& in);

// Merges the shards in order 0, 1, ..., S - 1 (merge_partials' arithmetic, so bitwise its result)
// and writes the normalised rows into out (in.acc.rows x dv); a row no shard saw a key for is NaN.
void merge_rows(const const_partials& in, mutable_view out);

// invalid_argument: query row `row` has no key inside the kernel's support on any rank.
[[noreturn]] void throw_empty(const char* fn, const pool_params& params, std::size_t row);

}  // namespace attnpool::mpi::detail
