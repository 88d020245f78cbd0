// Packing, viewing and merging the exchanged partial states (states.hpp).
#include "src/mpi/states.hpp"

#include <attnpool/detail/merge_states.hpp>
#include <attnpool/error.hpp>
#include <attnpool/mpi.hpp>

#include "src/mpi/mpi_check.hpp"

#include <algorithm>
#include <limits>

namespace attnpool::mpi::detail {

row_type::row_type(std::size_t dv, int extra) {
  ATTNPOOL_MPI_TRY(MPI_Type_contiguous(static_cast<int>(dv) + extra, MPI_FLOAT, &type_));
  ATTNPOOL_MPI_TRY(MPI_Type_commit(&type_));
}

row_type::~row_type() {
  if (type_ != MPI_DATATYPE_NULL) MPI_Type_free(&type_);  // a destructor never throws
}

void pack_rows(const partial_states& st, row_span rows, float* dst) {
  const std::size_t r = rows.size(), dv = st.dv;
  std::copy_n(st.max.data() + rows.begin, r, dst);
  std::copy_n(st.sum.data() + rows.begin, r, dst + r);
  std::copy_n(st.acc.data() + rows.begin * dv, r * dv, dst + 2 * r);
}

const_partials packed_blocks(const float* base, int shards, std::size_t rows, std::size_t dv) {
  const std::size_t block = rows * (dv + 2);
  return {base,
          base + rows,
          const_view{base + 2 * rows, rows, dv},
          static_cast<std::size_t>(shards),
          block,
          block,
          1};
}

const_partials rows_of(const const_partials& in, std::size_t r0, std::size_t r1) {
  const_partials out = in;
  out.max += r0 * in.state_step;
  out.sum += r0 * in.state_step;
  out.acc = {in.acc.row(r0), r1 - r0, in.acc.cols, in.acc.ld};
  return out;
}

std::size_t first_empty_row(const const_partials& in) {
  for (std::size_t i = 0; i < in.acc.rows; ++i) {
    bool seen = false;
    for (std::size_t s = 0; s < in.shards && !seen; ++s)
      seen = in.max[s * in.state_stride + i * in.state_step] !=
             -std::numeric_limits<float>::infinity();
    if (!seen) return i;
  }
  return in.acc.rows;
}

void merge_rows(const const_partials& in, mutable_view out) {
  ::attnpool::detail::merge_states(
      in.shards,
      [&](std::size_t s, std::size_t i) {
        const std::size_t at = s * in.state_stride + i * in.state_step;
        return ::attnpool::detail::shard_row{in.max[at], in.sum[at],
                                             in.acc.data + s * in.acc_stride + i * in.acc.ld};
      },
      out);
}

void throw_empty(const char* fn, const pool_params& params, std::size_t row) {
  throw invalid_argument(::attnpool::detail::concat(
      fn, ": query row ", row, " has no key inside the support of the ", to_string(params.kernel),
      " kernel on any rank (every weight would be 0/0); use a larger bandwidth, a kernel with "
      "full support, or params.empty = empty_support::nan"));
}

}  // namespace attnpool::mpi::detail
