// attnpool-mpi: Nadaraya-Watson over training data sharded across MPI ranks. Each rank reads
// its own shard of the keys and values (its own .npy file, or its row range of one file), every
// rank reads the queries, attnpool::mpi::pool merges the shards' states, and rank 0 writes the
// predictions. Without files it fits the notebook's y = x + sin(x), 10^5 samples, as a demo.
//
//   mpirun -np 4 attnpool-mpi --keys x.npy --values y.npy --queries q.npy --out pred.npy --bandwidth 0.5
//   mpirun -np 4 attnpool-mpi --keys x_{rank}.npy --values y_{rank}.npy --queries q.npy --out p.npy
#include <attnpool/mpi.hpp>

#include <mpi.h>

#include "npy.hpp"

#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {

struct shard {
  std::vector<float> data;
  npy::shape dims;
};

// Rank r's rows: the file itself if the path names {rank}, else rows [m r / S, m (r + 1) / S).
shard read_shard(std::string path, int rank, int ranks) {
  if (const auto at = path.find("{rank}"); at != std::string::npos) {
    npy::reader f(path.replace(at, 6, std::to_string(rank)));
    return {f.rows(0, f.dims.rows), f.dims};
  }
  npy::reader f(path);
  const attnpool::mpi::row_span mine = attnpool::mpi::row_range(f.dims.rows, ranks, rank);
  return {f.rows(mine.begin, mine.end), {mine.size(), f.dims.cols}};
}

// The demo's shard: samples m r / S ... of y = x + sin(x) + noise, seeded by the sample's index.
void demo_shard(shard& x, shard& y, shard& q, int rank, int ranks) {
  const std::size_t m = 100000;
  const attnpool::mpi::row_span mine = attnpool::mpi::row_range(m, ranks, rank);
  for (std::size_t j = mine.begin; j < mine.end; ++j) {
    std::mt19937_64 rng(j);
    const float xj = std::uniform_real_distribution<float>(0.0f, 10.0f)(rng);
    x.data.push_back(xj);
    y.data.push_back(xj + std::sin(xj) + std::normal_distribution<float>(0.0f, 1.0f)(rng));
  }
  x.dims = y.dims = {mine.size(), 1};
  for (int i = 0; i < 100; ++i) q.data.push_back(0.1f * static_cast<float>(i));
  q.dims = {100, 1};
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  std::map<std::string, std::string> arg{{"--bandwidth", "0.5"}, {"--exchange", "automatic"}};
  for (int i = 1; i + 1 < argc; i += 2) arg[argv[i]] = argv[i + 1];
  try {
    shard x, y, q;
    if (arg.count("--keys")) {
      x = read_shard(arg["--keys"], rank, ranks);
      y = read_shard(arg["--values"], rank, ranks);
      npy::reader fq(arg["--queries"]);
      q = {fq.rows(0, fq.dims.rows), fq.dims};
    } else {
      demo_shard(x, y, q, rank, ranks);
    }
    attnpool::mpi::exchange_options how;
    if (arg["--exchange"] == "all_gather") how.exchange = attnpool::mpi::exchange::all_gather;
    if (arg["--exchange"] == "query_partitioned")
      how.exchange = attnpool::mpi::exchange::query_partitioned;
    std::vector<float> pred(q.dims.rows * y.dims.cols);
    const auto stats = attnpool::mpi::pool(
        MPI_COMM_WORLD, {q.data.data(), q.dims.rows, q.dims.cols},
        {x.data.data(), x.dims.rows, x.dims.cols}, {y.data.data(), y.dims.rows, y.dims.cols},
        {pred.data(), q.dims.rows, y.dims.cols}, attnpool::pool_params{std::stod(arg["--bandwidth"])});
    if (rank == 0) {
      std::printf("%d ranks, %s exchange, %zu bytes sent by rank 0\n", ranks,
                  attnpool::mpi::to_string(stats.used), stats.bytes_sent);
      if (arg.count("--out")) npy::write(arg["--out"], pred, {q.dims.rows, y.dims.cols});
      for (std::size_t i = 0; i < pred.size() && i < 100; i += 25)
        std::printf("query %zu: prediction %.4f\n", i, pred[i]);
    }
  } catch (const std::exception& e) {
    // attnpool's errors arrive on every rank alike; anything else may be this rank's alone.
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
}
