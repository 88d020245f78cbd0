// The installed MPI component links (the rows a rank owns need no MPI_Init).
#include <attnpool/mpi.hpp>

bool mpi_rows_ok() {
  const attnpool::mpi::row_span r = attnpool::mpi::row_range(10, 4, 3);
  return r.begin == 7 && r.end == 10;
}
