/// \file
/// Keys sharded over the ranks of an MPI communicator, on CPUs or GPUs: every rank holds the
/// same queries and its own shard of the keys, computes its shard's partial softmax states
/// (pool_partial, on any backend), exchanges them and merges them in rank order, so that every
/// rank ends with the same bits. See docs/scaling.md.
///
/// Optional component: link attnpool::mpi (CMake option ATTNPOOL_MPI, built where CMake's
/// FindMPI finds an MPI with C bindings). The core library never depends on MPI.
///
/// Failures. Every rank validates its arguments and computes its shard before the first
/// exchange, and one MPI_Allreduce of a status word then tells every rank whether some rank
/// failed: if one did, every rank throws the same exception (invalid_argument or error) with the
/// lowest failing rank's message, and nobody is left waiting in a collective. A failure after
/// that point (an MPI call that returns an error under MPI_ERRORS_RETURN, memory exhaustion in
/// the merge) throws on the rank where it happened only; the others may then wait in the next
/// collective. Under MPI's default handler, MPI_ERRORS_ARE_FATAL, a failing MPI call aborts the
/// whole job instead, and a process that dies makes mpirun end the job. A program that catches
/// an attnpool::error and cannot go on should call MPI_Abort(comm, code).
#pragma once

#include <attnpool/types.hpp>

#include <mpi.h>

#include <cstddef>

/// NCCL's communicator (ncclComm_t is `struct ncclComm*`); declared here so that this header
/// does not need nccl.h.
struct ncclComm;

namespace attnpool::mpi {

/// How the shards' partial states reach the rank that merges them.
enum class exchange {
  /// all_gather while every rank's gather buffer, ranks x n x (dv + 2) floats, stays within
  /// exchange_options::all_gather_max_bytes (and always with one rank), else query_partitioned.
  automatic,
  /// Every rank receives every rank's n x (dv + 2) states (MPI_Allgather, the layout of
  /// nccl::pool) and merges all n rows. One collective; (ranks - 1) n (dv + 2) floats received.
  all_gather,
  /// Rank r owns query rows row_range(n, ranks, r): it receives only those rows' states from the
  /// other ranks (MPI_Alltoallv, (ranks - 1) / ranks of n (dv + 2) floats), merges them, and
  /// the merged rows are all-gathered back (MPI_Allgatherv) unless the caller keeps them
  /// distributed. No rank holds more than n (dv + 2) floats of states.
  query_partitioned,
};

/// The name of an exchange ("automatic", "all_gather", "query_partitioned").
const char* to_string(exchange e) noexcept;

/// How pool() exchanges and where its result lands.
struct exchange_options {
  mpi::exchange exchange = mpi::exchange::automatic;
  /// exchange::automatic picks all_gather while ranks x n x (dv + 2) x 4 bytes is at most this
  /// (4 MiB: there one collective's latency outweighs the bytes it saves), query_partitioned
  /// beyond.
  std::size_t all_gather_max_bytes = std::size_t{4} << 20;
  /// false: every rank's `out` is n x dv and receives every row. true: rank r's `out` is
  /// (row_range(n, ranks, r).end - begin) x dv and receives only those rows, whatever the
  /// exchange (with query_partitioned the final all-gather is then skipped).
  bool distributed = false;
};

/// A half-open range of query rows.
struct row_span {
  std::size_t begin = 0;
  std::size_t end = 0;
  std::size_t size() const { return end - begin; }
};

/// The query rows rank `rank` of `ranks` owns under exchange::query_partitioned and
/// exchange_options::distributed: [n rank / ranks, n (rank + 1) / ranks).
row_span row_range(std::size_t n, int ranks, int rank);

/// What one pool() call did on this rank, counted from the element counts it handed to MPI:
/// the payload this rank sent to and received from the other ranks (its own slot excluded),
/// before any relaying an MPI implementation does inside a collective.
struct exchange_stats {
  mpi::exchange used = mpi::exchange::all_gather;  ///< never automatic
  std::size_t bytes_sent = 0;
  std::size_t bytes_received = 0;
};

/// Attention pooling over keys sharded across the ranks of `comm`, in host memory.
/// Collective: every rank of comm calls it with the same queries (n x d), params and exchange
/// options, and its own keys_local (m_r x d) and values_local (m_r x dv). A rank may hold no keys
/// (m_r = 0; values_local then 0 x dv), and contributes the merge's identity. The keys are
/// numbered in rank order (rank r's first key is global key m_0 + ... + m_(r-1)), which is what
/// the masks read.
///
/// Each rank computes its shard's states with pool_partial() on opts.backend (automatic = cpu;
/// cuda_fused on a rank with a GPU: the backend may differ between ranks), exchanges them and
/// merges them in rank order with the online-softmax merge (the order of merge_partials(), so
/// that the result is bitwise that of merge_partials() over the same shards in one process,
/// bitwise the same on every rank and from run to run). It equals the unsharded pool() within
/// float32 rounding (docs/scaling.md gives the bound).
///
/// \param comm     an intracommunicator (not MPI_COMM_NULL); MPI must be initialised
/// \param queries  n x d, the same on every rank (checked: a hash of the bits is compared)
/// \param out      n x dv, or this rank's rows (see exchange_options::distributed); written only
///                 if every check on every rank passes
/// \param params   as for pool(). params.mask: none, valid_length (valid_lens[i] counts global
///                 keys, in [1, m_0 + ... + m_(S-1)]) or leave_one_out (query i skips global key
///                 i; n must equal the number of keys over all ranks). A masked shard is computed
///                 in blocks of keys by unmasked pool_partial calls, rows whose limit or skipped
///                 key falls inside a block in calls of their own (slower than the unmasked
///                 shard by up to ~20% at n = 2^16). empty_support::nearest is refused for
///                 compact kernels (a rank does not know the other ranks' keys).
/// \param opts     backend automatic, cpu or cuda_fused; threads; check_finite
/// \param how      the exchange, its switch and the result layout
/// \returns        the exchange used and the bytes this rank sent and received
/// \throws invalid_argument on every rank when some rank's arguments are invalid (the message
///         names the lowest such rank) or the ranks disagree on n, d, dv, the queries, params or
///         how; error for a failing MPI call (under MPI_ERRORS_RETURN; the message names the
///         call and MPI's error string), and whatever pool_partial throws on a rank, on every
///         rank.
exchange_stats pool(MPI_Comm comm, const_view queries, const_view keys_local,
                    const_view values_local, mutable_view out, const pool_params& params = {},
                    const options& opts = {}, const exchange_options& how = {});

/// An NCCL communicator over the ranks of an MPI communicator, for nccl::pool: rank 0 of comm
/// creates the ncclUniqueId and MPI_Bcasts it, and each rank selects one GPU by its rank among
/// the ranks on its node (MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)): local rank l takes device
/// l % (visible devices), so that `mpirun -np 8 ./app` on two 4-GPU nodes uses every GPU once.
/// The constructor is collective over comm and leaves the chosen device current on the calling
/// thread; the destructor calls ncclCommDestroy and never throws.
class nccl_communicator {
 public:
  /// \throws cuda_error where the library was built without NCCL, no CUDA device is visible,
  ///         or a CUDA / NCCL call fails (on every rank: the device choice and the unique id are
  ///         agreed with MPI_Allreduce before ncclCommInitRank, so that a rank without a GPU
  ///         does not leave the others waiting in it); error for a failing MPI call.
  explicit nccl_communicator(MPI_Comm comm);
  ~nccl_communicator();
  nccl_communicator(const nccl_communicator&) = delete;
  nccl_communicator& operator=(const nccl_communicator&) = delete;
  nccl_communicator(nccl_communicator&& other) noexcept;
  nccl_communicator& operator=(nccl_communicator&& other) noexcept;

  /// The NCCL communicator (rank and size as in the MPI communicator).
  ncclComm* get() const noexcept { return comm_; }
  /// The CUDA device this rank uses.
  int device() const noexcept { return device_; }
  /// This rank's index among the ranks on its node, and their number.
  int local_rank() const noexcept { return local_rank_; }
  int local_ranks() const noexcept { return local_ranks_; }

 private:
  ncclComm* comm_ = nullptr;
  int device_ = -1;
  int local_rank_ = 0;
  int local_ranks_ = 1;
};

}  // namespace attnpool::mpi
