// mpi::pool under mpirun -np 1..4 (tests/mpi/CMakeLists.txt): every rank builds the same
// problem from rank 0's seed, takes its own, uneven shard of the keys and pools; the result must
// be bitwise merge_partials over the same shards in one process, within the fp64 oracle's
// tolerance, bitwise the same on every rank and from run to run, for both exchanges. Invalid
// input on one rank must reach every rank as the same exception (ctest's TIMEOUT catches a hang).
#include <attnpool/batched.hpp>
#include <attnpool/cuda.hpp>
#include <attnpool/error.hpp>
#include <attnpool/mpi.hpp>
#include <attnpool/pool.hpp>
#include <attnpool/reference.hpp>

#include <mpi.h>

#include <gtest/gtest.h>

#include "test_support.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

using attnpool::const_view;
using attnpool::mutable_view;
using attnpool::mpi::exchange;
using attnpool::test::make_problem;
using attnpool::test::problem;

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int s = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

// Rank 0's fresh seed, so that every rank builds the same data; printed on rank 0.
std::uint64_t shared_seed() {
  std::uint64_t seed = attnpool::test::fresh_seed();
  MPI_Bcast(&seed, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  return seed;
}

// Uneven key shards: rank r gets a share proportional to r + 1, and with `last_empty` the last
// rank (of several) gets none. Returns the S + 1 key offsets.
std::vector<std::size_t> key_split(std::size_t m, int ranks, bool last_empty = false) {
  const int holders = last_empty && ranks > 1 ? ranks - 1 : ranks;
  const std::size_t weight = static_cast<std::size_t>(holders) * (holders + 1) / 2;
  std::vector<std::size_t> off(static_cast<std::size_t>(ranks) + 1, m);
  std::size_t acc = 0;
  off[0] = 0;
  for (int r = 0; r < holders; ++r) {
    acc += static_cast<std::size_t>(r) + 1;
    off[static_cast<std::size_t>(r) + 1] = m * acc / weight;
  }
  return off;
}

const_view rows(const_view a, std::size_t r0, std::size_t r1) {
  return {a.data + r0 * a.ld, r1 - r0, a.cols, a.ld};
}

attnpool::options cpu1() {
  attnpool::options o;
  o.backend = attnpool::backend::cpu;
  o.threads = 1;  // several ranks share two cores
  return o;
}

// The single-process answer over the same shards: pool_partial per shard, merge_partials.
std::vector<float> merged_in_one_process(const problem& p, const std::vector<std::size_t>& off,
                                         const attnpool::pool_params& params) {
  std::vector<attnpool::partial_states> parts;
  for (std::size_t s = 0; s + 1 < off.size(); ++s) {
    if (off[s] == off[s + 1]) continue;  // an empty shard is the merge's identity
    parts.push_back(attnpool::pool_partial(p.queries(), rows(p.keys(), off[s], off[s + 1]),
                                           rows(p.values(), off[s], off[s + 1]), params, cpu1()));
  }
  std::vector<float> out(p.n * p.dv);
  attnpool::merge_partials(parts, {out.data(), p.n, p.dv}, params);
  return out;
}

// Whether every rank holds the same bytes as rank 0.
bool same_on_every_rank(const std::vector<float>& a) {
  std::vector<float> root = a;
  MPI_Bcast(root.data(), static_cast<int>(root.size() * sizeof(float)), MPI_BYTE, 0,
            MPI_COMM_WORLD);
  int same = std::memcmp(root.data(), a.data(), a.size() * sizeof(float)) == 0 ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &same, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return same == 1;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Runs mpi::pool on this rank's shard into a NaN-poisoned out with ld = dv + 1 (so that a
// skipped or stray write shows) and returns the dense rows it wrote.
std::vector<float> run(const problem& p, const std::vector<std::size_t>& off,
                       const attnpool::pool_params& params,
                       const attnpool::mpi::exchange_options& how,
                       attnpool::mpi::exchange_stats* stats = nullptr) {
  const auto r = static_cast<std::size_t>(world_rank());
  const attnpool::mpi::row_span mine = attnpool::mpi::row_range(p.n, world_size(), world_rank());
  const std::size_t out_rows = how.distributed ? mine.size() : p.n, ld = p.dv + 1;
  std::vector<float> out(out_rows * ld, std::numeric_limits<float>::quiet_NaN());
  const auto st = attnpool::mpi::pool(
      MPI_COMM_WORLD, p.queries(), rows(p.keys(), off[r], off[r + 1]),
      rows(p.values(), off[r], off[r + 1]), {out.data(), out_rows, p.dv, ld}, params, cpu1(), how);
  if (stats != nullptr) *stats = st;
  std::vector<float> dense(out_rows * p.dv);
  for (std::size_t i = 0; i < out_rows; ++i)
    for (std::size_t c = 0; c < p.dv; ++c) dense[i * p.dv + c] = out[i * ld + c];
  return dense;
}

attnpool::mpi::exchange_options with(exchange e, bool distributed = false) {
  attnpool::mpi::exchange_options how;
  how.exchange = e;
  how.distributed = distributed;
  return how;
}

// Runs f on every rank and expects every rank to throw invalid_argument whose message holds
// `words`.
template <class F>
void expect_everyone_rejects(F&& f, const std::string& words) {
  bool threw = false;
  try {
    f();
  } catch (const attnpool::invalid_argument& x) {
    threw = true;
    EXPECT_NE(std::string(x.what()).find(words), std::string::npos) << x.what();
  }
  EXPECT_TRUE(threw) << "rank " << world_rank() << " did not throw";
  int all = threw ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  EXPECT_EQ(all, 1) << "some rank did not throw";
}

// ---- results --------------------------------------------------------------------------------

// Every size of the suite, both exchanges, uneven shards and (with several ranks) an empty one.
TEST(MpiPool, MatchesMergedShardsAndTheReference) {
  const std::uint64_t seed = shared_seed();
  double worst = 0.0;
  for (std::size_t n : {1, 7, 129}) {
    for (std::size_t m : {1, 7, 129, 4097}) {
      for (std::size_t dv : {1, 3}) {
        const std::size_t d = m % 2 == 0 ? 1 : 3;
        const problem p = make_problem(n, m, d, dv, seed + n * 7919 + m * 31 + dv);
        for (double h : {0.05, 1.0}) {
          for (bool last_empty : {false, true}) {
            const attnpool::pool_params params{h};
            SCOPED_TRACE(attnpool::test::describe(p, h) + " ranks=" + std::to_string(world_size()) +
                         (last_empty ? " (last rank without keys)" : ""));
            const auto off = key_split(m, world_size(), last_empty);
            const auto want = merged_in_one_process(p, off, params);
            const auto ref = attnpool::reference::pool(p.queries(), p.keys(), p.values(), params);
            for (exchange e : {exchange::all_gather, exchange::query_partitioned}) {
              SCOPED_TRACE(attnpool::mpi::to_string(e));
              const auto got = run(p, off, params, with(e));
              EXPECT_TRUE(bitwise_equal(got, want)) << "not bitwise merge_partials";
              EXPECT_TRUE(same_on_every_rank(got)) << "ranks disagree";
              EXPECT_TRUE(bitwise_equal(run(p, off, params, with(e)), got)) << "not repeatable";
              worst = std::max(worst, attnpool::test::expect_matches_reference(
                                          p, params, got.data(), p.dv, ref));
            }
          }
        }
      }
    }
  }
  if (world_rank() == 0)
    std::printf("ranks %d: worst error %.3g of the tolerance (seed %llu)\n", world_size(), worst,
                static_cast<unsigned long long>(seed));
}

// Distributed results are the replicated result's rows of this rank, for both exchanges.
TEST(MpiPool, DistributedRowsAreTheReplicatedRows) {
  const problem p = make_problem(129, 1000, 3, 2, shared_seed());
  const attnpool::pool_params params{0.3};
  const auto off = key_split(p.m, world_size());
  const auto all = run(p, off, params, with(exchange::all_gather));
  const auto mine = attnpool::mpi::row_range(p.n, world_size(), world_rank());
  const std::vector<float> want(all.begin() + static_cast<std::ptrdiff_t>(mine.begin * p.dv),
                                all.begin() + static_cast<std::ptrdiff_t>(mine.end * p.dv));
  for (exchange e : {exchange::all_gather, exchange::query_partitioned}) {
    SCOPED_TRACE(attnpool::mpi::to_string(e));
    EXPECT_TRUE(bitwise_equal(run(p, off, params, with(e, true)), want));
  }
}

// A compact kernel with rows that no rank sees a key for: NaN under empty_support::nan, the same
// error on every rank under empty_support::error (with query_partitioned the row is owned by one
// rank only).
TEST(MpiPool, EmptySupport) {
  problem p = make_problem(7, 50, 1, 1, shared_seed());
  p.q[3 * (p.d + p.pad)] = 40.0f;  // query row 3 far from every key
  attnpool::pool_params params{0.2};
  params.kernel = attnpool::kernel::tricube;
  const auto off = key_split(p.m, world_size());
  for (exchange e : {exchange::all_gather, exchange::query_partitioned}) {
    SCOPED_TRACE(attnpool::mpi::to_string(e));
    params.empty = attnpool::empty_support::nan;
    const auto got = run(p, off, params, with(e));
    EXPECT_TRUE(std::isnan(got[3]));
    EXPECT_TRUE(bitwise_equal(got, merged_in_one_process(p, off, params)));
    params.empty = attnpool::empty_support::error;
    try {
      run(p, off, params, with(e));
      ADD_FAILURE() << "expected invalid_argument";
    } catch (const attnpool::invalid_argument& x) {
      EXPECT_NE(std::string(x.what()).find("query row 3"), std::string::npos) << x.what();
    }
  }
}

// ---- masks over the global key numbering --------------------------------------------------

// valid_length: valid_lens count global keys, so a rank's shard is cut anywhere by them (a rank
// past every row's limit contributes nothing). Against the fp64 oracle with the same mask, on the
// whole key set; both exchanges must agree bitwise.
TEST(MpiPool, ValidLength) {
  const std::uint64_t seed = shared_seed();
  for (std::size_t m : {7, 129, 9000}) {
    const problem p = make_problem(65, m, 2, 2, seed + m);
    std::mt19937_64 rng(seed ^ m);
    std::vector<std::size_t> lens(p.n);
    for (std::size_t i = 0; i < p.n; ++i) lens[i] = 1 + rng() % m;
    lens[0] = 1;
    lens[p.n - 1] = m;
    attnpool::pool_params params{0.2};
    params.mask = attnpool::mask::valid_length;
    params.valid_lens = lens;
    SCOPED_TRACE(attnpool::test::describe(p, params.bandwidth));
    // The oracle on rank 0 only: every rank's result is checked to be rank 0's bits.
    const auto ref = world_rank() == 0
                         ? attnpool::reference::pool(p.queries(), p.keys(), p.values(), params)
                         : attnpool::reference::pooled{};
    for (bool last_empty : {false, true}) {
      const auto off = key_split(m, world_size(), last_empty);
      const auto a = run(p, off, params, with(exchange::all_gather));
      const auto b = run(p, off, params, with(exchange::query_partitioned));
      EXPECT_TRUE(bitwise_equal(a, b));
      EXPECT_TRUE(same_on_every_rank(a));
      if (world_rank() == 0)
        attnpool::test::expect_matches_reference(p, params, a.data(), p.dv, ref);
    }
  }
}

// leave_one_out: the queries are the keys, split over the ranks; query i skips global key i,
// which lives on one rank only (and across a block boundary for m > 4096).
TEST(MpiPool, LeaveOneOut) {
  const std::uint64_t seed = shared_seed();
  for (std::size_t m : {2, 129, 5000}) {
    problem p = make_problem(m, m, 1, 1, seed + m);
    p.q = p.k;  // the same points, with the same padding
    attnpool::pool_params params{0.05};
    params.mask = attnpool::mask::leave_one_out;
    SCOPED_TRACE(attnpool::test::describe(p, params.bandwidth));
    // The oracle on rank 0 only: every rank's result is checked to be rank 0's bits.
    const auto ref = world_rank() == 0
                         ? attnpool::reference::pool(p.queries(), p.keys(), p.values(), params)
                         : attnpool::reference::pooled{};
    for (bool last_empty : {false, true}) {
      const auto off = key_split(m, world_size(), last_empty);
      const auto a = run(p, off, params, with(exchange::all_gather));
      EXPECT_TRUE(bitwise_equal(a, run(p, off, params, with(exchange::query_partitioned))));
      EXPECT_TRUE(same_on_every_rank(a));
      if (world_rank() == 0)
        attnpool::test::expect_matches_reference(p, params, a.data(), p.dv, ref);
    }
  }
  // n must equal the number of keys over all ranks, on every rank.
  const problem p = make_problem(5, 6, 1, 1, seed);
  attnpool::pool_params params{0.5};
  params.mask = attnpool::mask::leave_one_out;
  expect_everyone_rejects([&] { run(p, key_split(6, world_size()), params, {}); }, "leave_one_out");
}

// ---- the switch and the bytes ---------------------------------------------------------------

TEST(MpiPool, AutomaticSwitchAndCountedBytes) {
  const problem p = make_problem(129, 300, 3, 3, shared_seed());
  const attnpool::pool_params params{0.5};
  const auto off = key_split(p.m, world_size());
  const std::size_t S = static_cast<std::size_t>(world_size()), state = (p.dv + 2) * sizeof(float);
  const auto mine = attnpool::mpi::row_range(p.n, world_size(), world_rank());
  attnpool::mpi::exchange_options how;
  attnpool::mpi::exchange_stats small{}, large{};
  how.all_gather_max_bytes = S * p.n * state;  // exactly fits: all-gather
  const auto a = run(p, off, params, how, &small);
  EXPECT_EQ(small.used, exchange::all_gather);
  EXPECT_EQ(small.bytes_sent, (S - 1) * p.n * state);
  EXPECT_EQ(small.bytes_received, (S - 1) * p.n * state);
  how.all_gather_max_bytes -= 1;  // one byte short: query-partitioned, except with one rank
  const auto b = run(p, off, params, how, &large);
  EXPECT_EQ(large.used, S == 1 ? exchange::all_gather : exchange::query_partitioned);
  if (S > 1) {
    const std::size_t out_row = p.dv * sizeof(float);
    EXPECT_EQ(large.bytes_sent, (p.n - mine.size()) * state + (S - 1) * mine.size() * out_row);
    EXPECT_EQ(large.bytes_received, (S - 1) * mine.size() * state + (p.n - mine.size()) * out_row);
  }
  EXPECT_TRUE(bitwise_equal(a, b)) << "the two exchanges differ";
}

// ---- failures reach every rank --------------------------------------------------------------

TEST(MpiPool, InvalidInputOnOneRankReachesEveryRank) {
  const int bad = world_size() - 1;
  problem p = make_problem(33, 100, 2, 1, shared_seed());
  const auto off = key_split(p.m, world_size());
  const attnpool::pool_params params{0.5};
  for (exchange e : {exchange::all_gather, exchange::query_partitioned}) {
    SCOPED_TRACE(attnpool::mpi::to_string(e));
    // A NaN in the bad rank's keys (options.check_finite).
    problem q = p;
    if (world_rank() == bad) q.k[off[static_cast<std::size_t>(bad)] * (q.d + q.pad)] = NAN;
    expect_everyone_rejects([&] { run(q, off, params, with(e)); },
                            "rank " + std::to_string(bad) + " of");
    // A bad bandwidth on the bad rank only.
    attnpool::pool_params bad_params = params;
    if (world_rank() == bad) bad_params.bandwidth = -1.0;
    expect_everyone_rejects([&] { run(p, off, bad_params, with(e)); }, "bandwidth");
    // A wrongly shaped out on the bad rank.
    expect_everyone_rejects(
        [&] {
          const auto r = static_cast<std::size_t>(world_rank());
          std::vector<float> out(p.n);
          attnpool::mpi::pool(MPI_COMM_WORLD, p.queries(), rows(p.keys(), off[r], off[r + 1]),
                              rows(p.values(), off[r], off[r + 1]),
                              {out.data(), world_rank() == bad ? p.n - 1 : p.n, 1}, params, cpu1(),
                              with(e));
        },
        "out must be");
  }
}

TEST(MpiPool, RanksThatDisagreeAreRejected) {
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  const int odd = world_size() - 1;
  problem p = make_problem(20, 40, 2, 1, shared_seed());
  const auto off = key_split(p.m, world_size());
  // Different queries on one rank.
  problem q = p;
  if (world_rank() == odd) q.q[0] += 0.5f;
  expect_everyone_rejects(
      [&] { run(q, off, attnpool::pool_params{0.5}, with(exchange::automatic)); }, "queries");
  // A different bandwidth on one rank (valid there, so only the agreement sees it).
  attnpool::pool_params params{0.5};
  if (world_rank() == odd) params.bandwidth = 0.25;
  expect_everyone_rejects([&] { run(p, off, params, with(exchange::automatic)); },
                          "params.bandwidth differs");
  // Different exchanges.
  expect_everyone_rejects(
      [&] {
        run(p, off, attnpool::pool_params{0.5},
            with(world_rank() == odd ? exchange::query_partitioned : exchange::all_gather));
      },
      "how.exchange differs");
}

TEST(MpiPool, ArgumentsCheckedLocally) {
  const problem p = make_problem(3, 4, 1, 1, 1);
  std::vector<float> out(3);
  EXPECT_THROW(
      attnpool::mpi::pool(MPI_COMM_NULL, p.queries(), p.keys(), p.values(), {out.data(), 3, 1}),
      attnpool::invalid_argument);
  EXPECT_THROW(attnpool::mpi::row_range(3, 2, 2), attnpool::invalid_argument);
  const auto r = attnpool::mpi::row_range(10, 3, 1);
  EXPECT_EQ(r.begin, 3u);
  EXPECT_EQ(r.end, 6u);
  // The NCCL bootstrap exists in every build; without NCCL or a GPU it throws cuda_error on
  // every rank (the device check is agreed on before ncclCommInitRank).
  if (attnpool::cuda::device_count() == 0) {
    EXPECT_THROW(attnpool::mpi::nccl_communicator c(MPI_COMM_WORLD), attnpool::cuda_error);
  } else {
    try {
      const attnpool::mpi::nccl_communicator c(MPI_COMM_WORLD);
      EXPECT_NE(c.get(), nullptr);
      EXPECT_GE(c.device(), 0);
      EXPECT_LT(c.local_rank(), c.local_ranks());
    } catch (const attnpool::cuda_error& x) {
      // A build without NCCL says so; with NCCL and a GPU the bootstrap must work.
      EXPECT_NE(std::string(x.what()).find("built without NCCL"), std::string::npos) << x.what();
    }
  }
}

}  // namespace

// GoogleTest on every rank; only rank 0 prints the progress, every rank prints its failures.
class failures_only : public ::testing::EmptyTestEventListener {
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (r.failed())
      std::fprintf(stderr, "[rank %d] %s:%d: %s\n", world_rank(),
                   r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
  }
};

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  if (world_rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new failures_only);
  }
  int rc = RUN_ALL_TESTS();
  MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return rc;
}
