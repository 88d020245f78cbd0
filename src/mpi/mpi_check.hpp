// Every MPI status attnpool sees is checked: a call that returns anything but MPI_SUCCESS (which
// it only does where the communicator's error handler is MPI_ERRORS_RETURN; the default one
// aborts the job first) becomes an attnpool::error naming the call, file:line and MPI's string.
#pragma once

#include <attnpool/error.hpp>

#include <mpi.h>

namespace attnpool::mpi::detail {

[[noreturn]] inline void throw_mpi(int status, const char* call, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(status, text, &len) != MPI_SUCCESS) len = 0;
  throw ::attnpool::error(::attnpool::detail::concat(
      file, ":", line, ": ", call, " failed: ", len > 0 ? text : "unknown MPI error", " (", status,
      ")"));
}

}  // namespace attnpool::mpi::detail

#define ATTNPOOL_MPI_TRY(call)                                                             \
  do {                                                                                     \
    const int attnpool_mpi_status_ = (call);                                               \
    if (attnpool_mpi_status_ != MPI_SUCCESS)                                               \
      ::attnpool::mpi::detail::throw_mpi(attnpool_mpi_status_, #call, __FILE__, __LINE__); \
  } while (0)
