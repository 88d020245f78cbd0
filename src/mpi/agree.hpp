// The one collective that every rank reaches before any exchange: it tells every rank whether
// some rank failed locally, and whether the ranks agree on the arguments that must be equal
// everywhere. Either everyone goes on, or everyone throws the same exception.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <exception>
#include <span>
#include <string>

namespace attnpool::mpi::detail {

// A value every rank must pass alike, for the agreement and its message.
struct field {
  const char* name;        // "n = queries.rows", "params.bandwidth", ...
  std::uint64_t value;     // the value, or its bits / a hash of it
  bool is_double = false;  // print value as the double whose bits it holds
};

// What went wrong on this rank before the exchange, if anything.
struct local_failure {
  bool failed = false;
  int kind = 0;  // which attnpool exception type (agree.cpp's enum)
  std::string message;
};

// Catches the exception in flight (call from a catch block) into a local_failure.
local_failure capture(std::exception_ptr e);

// Collective over comm: one MPI_Allreduce of the status word and of every field (max of the
// values and of their complements, so min and max in one call). If some rank failed, the lowest
// such rank MPI_Bcasts its exception's kind and message and every rank throws it, prefixed with
// "<fn>: rank R of S: "; else a field whose min and max differ is an invalid_argument on every
// rank naming it. Fields of a failed rank are not read.
void agree(MPI_Comm comm, const char* fn, const local_failure& mine, std::span<const field> fields);

// FNV-1a over bytes, for the fields that stand for arrays (queries, bandwidths, valid_lens).
std::uint64_t hash_bytes(const void* data, std::size_t bytes,
                         std::uint64_t h = 14695981039346656037ull);

}  // namespace attnpool::mpi::detail
