// Strong scaling of mpi::pool: n = m = 2^16, d = 3, dv = 1, the keys split evenly over the
// ranks, each rank on the CPU engine with `threads` threads; both exchanges. Run under mpirun:
//
//   mpirun -np 1 build/bench/bench_mpi --threads=1     (and --threads=2)
//   mpirun -np 2 build/bench/bench_mpi --threads=1
//
// Google Benchmark on every rank with a fixed iteration count (so that every rank makes the
// same collective calls); each iteration's time is the slowest rank's (MPI_Allreduce MAX after
// a barrier), and only rank 0 reports. Counters: pairs/s, and the bytes rank 0 sent and received
// per query, counted from the element counts handed to MPI (exchange_stats), beside the formula
// of docs/scaling.md. Results: bench/RESULTS.md.
#include <attnpool/mpi.hpp>

#include <benchmark/benchmark.h>
#include <mpi.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr std::size_t kN = std::size_t{1} << 16, kM = std::size_t{1} << 16, kD = 3, kDv = 1;
unsigned g_threads = 1;

struct data {
  std::vector<float> q, k, v, out;
};

// Every rank draws the whole problem from one seed and keeps its key rows.
const data& get_data(int rank, int ranks) {
  static const data d = [&] {
    data r;
    std::mt19937 rng(20261202u);
    std::uniform_real_distribution<float> unit(0.0f, 1.0f);
    r.q.resize(kN * kD);
    for (float& x : r.q) x = unit(rng);
    std::vector<float> k(kM * kD), v(kM * kDv);
    for (float& x : k) x = unit(rng);
    for (float& x : v) x = unit(rng);
    const attnpool::mpi::row_span mine = attnpool::mpi::row_range(kM, ranks, rank);
    r.k.assign(k.begin() + static_cast<std::ptrdiff_t>(mine.begin * kD),
               k.begin() + static_cast<std::ptrdiff_t>(mine.end * kD));
    r.v.assign(v.begin() + static_cast<std::ptrdiff_t>(mine.begin * kDv),
               v.begin() + static_cast<std::ptrdiff_t>(mine.end * kDv));
    r.out.resize(kN * kDv);
    return r;
  }();
  return d;
}

void BM_mpi_pool(benchmark::State& state) {
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  auto& d = const_cast<data&>(get_data(rank, ranks));
  attnpool::mpi::exchange_options how;
  how.exchange = static_cast<attnpool::mpi::exchange>(state.range(0));
  attnpool::options opts;
  opts.backend = attnpool::backend::cpu;
  opts.threads = g_threads;
  const std::size_t m_local = d.k.size() / kD;
  attnpool::mpi::exchange_stats stats;
  for (auto _ : state) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    stats = attnpool::mpi::pool(MPI_COMM_WORLD, {d.q.data(), kN, kD}, {d.k.data(), m_local, kD},
                                {d.v.data(), m_local, kDv}, {d.out.data(), kN, kDv},
                                attnpool::pool_params{0.1}, opts, how);
    double t = MPI_Wtime() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    state.SetIterationTime(t);
  }
  const double S = ranks, n = kN, state_bytes = (kDv + 2) * 4.0, out_bytes = kDv * 4.0;
  const bool ag = stats.used == attnpool::mpi::exchange::all_gather;
  state.SetLabel(std::string(attnpool::mpi::to_string(stats.used)) + ", " +
                 std::to_string(ranks) + " ranks x " + std::to_string(g_threads) + " threads");
  state.counters["pairs/s"] = benchmark::Counter(static_cast<double>(kN * kM),
                                                 benchmark::Counter::kIsIterationInvariantRate);
  state.counters["sent/q"] = static_cast<double>(stats.bytes_sent) / n;
  state.counters["recv/q"] = static_cast<double>(stats.bytes_received) / n;
  // docs/scaling.md: all-gather (S - 1)(dv + 2) 4 bytes each way per query; query-partitioned
  // (S - 1) / S (dv + 2) 4 for the states plus (S - 1) / S dv 4 for the gathered rows.
  state.counters["formula/q"] =
      ag ? (S - 1) * state_bytes : (S - 1) / S * state_bytes + (S - 1) / S * out_bytes;
}

BENCHMARK(BM_mpi_pool)
    ->Arg(static_cast<int>(attnpool::mpi::exchange::all_gather))
    ->Arg(static_cast<int>(attnpool::mpi::exchange::query_partitioned))
    ->Iterations(3)
    ->Repetitions(3)
    ->ReportAggregatesOnly(true)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

class null_reporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0)
      g_threads = static_cast<unsigned>(std::atoi(argv[i] + 10));
    else
      args.push_back(argv[i]);
  }
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (rank == 0) {
    benchmark::RunSpecifiedBenchmarks();
  } else {
    null_reporter quiet;
    benchmark::RunSpecifiedBenchmarks(&quiet);
  }
  benchmark::Shutdown();
  MPI_Finalize();
}
