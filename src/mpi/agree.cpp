// The status and argument agreement before the exchange (agree.hpp).
#include "src/mpi/agree.hpp"

#include <attnpool/error.hpp>

#include "src/mpi/mpi_check.hpp"

#include <bit>
#include <climits>
#include <cstring>
#include <vector>

namespace attnpool::mpi::detail {
namespace {

enum kind : int { kNone = 0, kInvalidArgument = 1, kCudaError = 2, kError = 3, kOther = 4 };

[[noreturn]] void rethrow_as(int k, const std::string& message) {
  switch (k) {
    case kInvalidArgument:
      throw invalid_argument(message);
    case kCudaError:
      throw cuda_error(message);
    default:
      throw error(message);
  }
}

}  // namespace

local_failure capture(std::exception_ptr e) {
  local_failure f;
  f.failed = true;
  try {
    std::rethrow_exception(e);
  } catch (const invalid_argument& x) {
    f.kind = kInvalidArgument;
    f.message = x.what();
  } catch (const cuda_error& x) {
    f.kind = kCudaError;
    f.message = x.what();
  } catch (const error& x) {
    f.kind = kError;
    f.message = x.what();
  } catch (const std::exception& x) {
    f.kind = kOther;
    f.message = x.what();
  } catch (...) {
    f.kind = kOther;
    f.message = "unknown exception";
  }
  return f;
}

void agree(MPI_Comm comm, const char* fn, const local_failure& mine,
           std::span<const field> fields) {
  int ranks = 0, rank = 0;
  ATTNPOOL_MPI_TRY(MPI_Comm_size(comm, &ranks));
  ATTNPOOL_MPI_TRY(MPI_Comm_rank(comm, &rank));
  // Word 0: ranks - rank on a failed rank, 0 elsewhere, so that the maximum names the lowest
  // failed rank. Then each field's value and its complement: max(~x) = ~min(x).
  const std::size_t k = fields.size();
  std::vector<std::uint64_t> words(1 + 2 * k, 0);
  words[0] = mine.failed ? static_cast<std::uint64_t>(ranks - rank) : 0;
  for (std::size_t i = 0; i < k && !mine.failed; ++i) {
    words[1 + i] = fields[i].value;
    words[1 + k + i] = ~fields[i].value;
  }
  ATTNPOOL_MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, words.data(), static_cast<int>(words.size()),
                                 MPI_UINT64_T, MPI_MAX, comm));
  if (words[0] != 0) {
    const int root = ranks - static_cast<int>(words[0]);
    // The failed rank's words are zero, so the other ranks' fields cannot be compared; its
    // failure is what every rank reports.
    long long header[2] = {mine.kind, static_cast<long long>(mine.message.size())};
    ATTNPOOL_MPI_TRY(MPI_Bcast(header, 2, MPI_LONG_LONG, root, comm));
    std::string message =
        rank == root ? mine.message : std::string(static_cast<std::size_t>(header[1]), '\0');
    if (header[1] > 0)
      ATTNPOOL_MPI_TRY(
          MPI_Bcast(message.data(), static_cast<int>(header[1]), MPI_CHAR, root, comm));
    rethrow_as(static_cast<int>(header[0]),
               ::attnpool::detail::concat(fn, ": rank ", root, " of ", ranks, ": ", message));
  }
  for (std::size_t i = 0; i < k; ++i) {
    const std::uint64_t hi = words[1 + i], lo = ~words[1 + k + i];
    if (hi == lo) continue;
    if (fields[i].is_double)
      throw invalid_argument(::attnpool::detail::concat(
          fn, ": ", fields[i].name, " differs between the ranks of the communicator (from ",
          std::bit_cast<double>(lo), " to ", std::bit_cast<double>(hi),
          "); every rank must pass the same value"));
    throw invalid_argument(::attnpool::detail::concat(
        fn, ": ", fields[i].name, " differs between the ranks of the communicator (from ", lo,
        " to ", hi, "); every rank must pass the same value"));
  }
}

std::uint64_t hash_bytes(const void* data, std::size_t bytes, std::uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace attnpool::mpi::detail
