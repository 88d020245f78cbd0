// Masked partial states of one rank's shard from unmasked pool_partial calls (masked.hpp).
#include "src/mpi/masked.hpp"

#include <attnpool/detail/mask.hpp>
#include <attnpool/detail/online_softmax.hpp>
#include <attnpool/error.hpp>

#include <algorithm>
#include <limits>
#include <map>
#include <utility>
#include <vector>

namespace attnpool::mpi::detail {
namespace {

using ::attnpool::detail::key_range;
using ::attnpool::detail::kNoKey;
using ::attnpool::detail::online_softmax;

constexpr const char* kFn = "mpi::pool";

// Keys per block. Rows that see a whole block share one pool_partial call over it; a row whose
// limit or skipped key falls inside a block gets calls of its own over at most two pieces of it,
// so a block costs those rows up to ~3x (the engine packs the piece's keys per call): 4096 keys
// keep that fix-up below ~20% of a block's work at n = 2^16.
constexpr std::size_t kBlock = 4096;

// The running states of every query row, and the merge of a piece's states into some of them.
struct running {
  partial_states st;

  running(std::size_t n, std::size_t dv) {
    st.n = n;
    st.dv = dv;
    st.max.assign(n, -std::numeric_limits<float>::infinity());
    st.sum.assign(n, 0.0f);
    st.acc.assign(n * dv, 0.0f);
  }

  // Row rows[t] (or t, for all rows) merges piece row t, in the order of the calls.
  void merge(const partial_states& piece, const std::vector<std::size_t>* rows) {
    const std::size_t dv = st.dv;
    for (std::size_t t = 0; t < piece.n; ++t) {
      const std::size_t i = rows != nullptr ? (*rows)[t] : t;
      online_softmax sm{st.max[i], st.sum[i]};
      const ::attnpool::detail::rescale r = sm.merge(online_softmax{piece.max[t], piece.sum[t]});
      float* acc = st.acc.data() + i * dv;
      const float* pa = piece.acc.data() + t * dv;
      for (std::size_t c = 0; c < dv; ++c) acc[c] = acc[c] * r.self + r.other * pa[c];
      st.max[i] = sm.max;
      st.sum[i] = sm.sum;
    }
  }
};

const_view key_rows(const_view a, std::size_t r0, std::size_t r1) {
  return {a.data + r0 * a.ld, r1 - r0, a.cols, a.ld};
}

}  // namespace

void check_global_mask(const pool_params& params, std::size_t n, std::size_t total) {
  if (params.mask == mask::valid_length) {
    ATTNPOOL_EXPECTS(params.valid_lens.size() == n, kFn,
                     ": params.valid_lens must hold one count per query row (n = ", n, "), got ",
                     params.valid_lens.size());
    for (std::size_t i = 0; i < n; ++i)
      ATTNPOOL_EXPECTS(params.valid_lens[i] >= 1 && params.valid_lens[i] <= total, kFn,
                       ": params.valid_lens[", i, "] must be in [1, ", total,
                       "] (the keys of all ranks), got ", params.valid_lens[i]);
  } else if (params.mask == mask::leave_one_out) {
    ATTNPOOL_EXPECTS(n == total && total >= 2, kFn,
                     ": mask::leave_one_out needs as many queries as keys over all ranks, at least "
                     "2 (query i skips global key i), got n = ",
                     n, " and ", total, " keys");
  }
}

partial_states masked_states(const_view q, const_view k, const_view v, const pool_params& params,
                             const options& opts, key_numbering keys) {
  const std::size_t n = q.rows, m = k.rows, d = q.cols, dv = v.cols;
  pool_params plain = params;
  plain.mask = mask::none;
  plain.valid_lens = {};
  // Every check pool_partial makes, once on all the data: all queries against one key, and one
  // query against all keys (the data checks look at each matrix's own elements).
  pool_partial(q, key_rows(k, 0, 1), key_rows(v, 0, 1), plain, opts);
  if (n > 0) pool_partial(key_rows(q, 0, 1), k, v, plain, opts);
  options piece_opts = opts;
  piece_opts.check_finite = false;

  // Row i's visible local keys: [0, limit) minus skip.
  std::vector<key_range> seen(n, key_range{m, kNoKey});
  for (std::size_t i = 0; i < n; ++i) {
    if (params.mask == mask::valid_length) {
      const std::size_t len = params.valid_lens[i];
      seen[i].limit = len <= keys.first ? 0 : std::min(m, len - keys.first);
    } else if (params.mask == mask::leave_one_out && i >= keys.first && i - keys.first < m) {
      seen[i].skip = i - keys.first;
    }
  }

  running run(n, dv);
  std::vector<float> gathered;
  // Keys [a, b) for the rows listed (nullptr: all rows).
  auto add = [&](const std::vector<std::size_t>* rows, std::size_t a, std::size_t b) {
    if (a >= b || (rows != nullptr && rows->empty())) return;
    const_view qv = q;
    if (rows != nullptr) {
      gathered.resize(rows->size() * d);
      for (std::size_t t = 0; t < rows->size(); ++t)
        std::copy_n(q.row((*rows)[t]), d, gathered.data() + t * d);
      qv = {gathered.data(), rows->size(), d};
    }
    run.merge(pool_partial(qv, key_rows(k, a, b), key_rows(v, a, b), plain, piece_opts), rows);
  };

  std::vector<std::size_t> whole;
  // The rows that see part of a block, by the part: (end of the visible prefix, skipped key).
  std::map<std::pair<std::size_t, std::size_t>, std::vector<std::size_t>> parts;
  for (std::size_t b0 = 0; b0 < m; b0 += kBlock) {
    const std::size_t b1 = std::min(m, b0 + kBlock);
    whole.clear();
    parts.clear();
    for (std::size_t i = 0; i < n; ++i) {
      const key_range r = seen[i];
      if (r.limit <= b0) continue;
      const bool skips = r.skips_in(b0, b1 - b0);
      if (r.limit >= b1 && !skips)
        whole.push_back(i);
      else
        parts[{std::min(r.limit, b1), skips ? r.skip : kNoKey}].push_back(i);
    }
    add(whole.size() == n ? nullptr : &whole, b0, b1);
    for (const auto& [part, rows] : parts) {
      const auto [end, skip] = part;
      if (skip == kNoKey || skip >= end) {
        add(&rows, b0, end);
      } else {
        add(&rows, b0, skip);
        add(&rows, skip + 1, end);
      }
    }
  }
  return std::move(run.st);
}

}  // namespace attnpool::mpi::detail
