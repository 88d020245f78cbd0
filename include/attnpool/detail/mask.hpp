/// \file
/// The one rule for which keys a query sees under pool_params::mask, read by the CPU engine, the
/// CPU backward and the CUDA kernels alike (FlashAttention's `Mask` is the model). Every mask of
/// the family is, per query row i, a key range [0, limit) minus at most one skipped key, so that
/// loops apply it as a compare and a select and stay vectorised. The fp64 reference keeps its own
/// plain test (reference::key_visible) on purpose: it is the oracle this rule is tested against.
#pragma once

#include <attnpool/detail/host_device.hpp>
#include <attnpool/types.hpp>

#include <cstddef>

namespace attnpool::detail {

/// No key: a skip that matches no key index.
inline constexpr std::size_t kNoKey = ~std::size_t{0};

/// One tile's part of a row's keys, tile-relative: keys [0, limit) of the tile minus key `skip`
/// (-1: none). The fused masked agent selects on it inside a chunk and walks whole chunks that it
/// sees entirely without it.
struct tile_keys {
  int limit;  ///< <= the tile's length
  int skip;

  ATTNPOOL_HD bool sees(int j) const { return j < limit && j != skip; }

  /// The end of the run of whole chunks of `chunk` keys from j0 (a multiple of chunk) in which
  /// every key is seen: the start of the first chunk that holds the limit (or lies past it) or
  /// the skipped key. May be below j0 where the row sees nothing from j0 on.
  ATTNPOOL_HD int clean_end(int j0, int chunk) const {
    const int end = limit / chunk * chunk;
    const int skip_chunk = skip / chunk * chunk;
    return skip >= j0 && skip_chunk < end ? skip_chunk : end;
  }
};

/// The keys one query row sees: [0, limit) minus key `skip` (skip >= limit: none skipped).
struct key_range {
  std::size_t limit;
  std::size_t skip;

  ATTNPOOL_HD bool sees(std::size_t j) const { return j < limit && j != skip; }
  /// Whether the skipped key lies in [j0, j0 + len) (one unsigned compare).
  ATTNPOOL_HD bool skips_in(std::size_t j0, std::size_t len) const { return skip - j0 < len; }

  /// The part of these keys in the tile [tile0, tile0 + len), tile-relative.
  ATTNPOOL_HD tile_keys in_tile(std::size_t tile0, int len) const {
    const auto n = static_cast<std::size_t>(len);
    const std::size_t lim = limit > tile0 ? limit - tile0 : 0;
    const std::size_t s = skip - tile0;  // wraps below tile0: no key of the tile
    return {static_cast<int>(lim < n ? lim : n), s < n ? static_cast<int>(s) : -1};
  }
};

/// pool_params::mask in a form that host and device code both read: the kind, and for
/// mask::valid_length the per-row key counts (in the memory of the code that reads them).
struct mask_rule {
  attnpool::mask kind = attnpool::mask::none;
  const std::size_t* valid_lens = nullptr;  ///< valid_length: n counts, each in [1, m]

  /// The keys query row i sees among m keys.
  ATTNPOOL_HD key_range row(std::size_t i, std::size_t m) const {
    key_range r{m, kNoKey};
    if (kind == attnpool::mask::valid_length) r.limit = valid_lens[i];
    if (kind == attnpool::mask::leave_one_out) r.skip = i;
    return r;
  }

  /// The query that does not see key j because of leave_one_out (kNoKey for the other masks).
  ATTNPOOL_HD std::size_t skipped_query(std::size_t j) const {
    return kind == attnpool::mask::leave_one_out ? j : kNoKey;
  }

  /// Whether some rows see fewer than all keys (mask::valid_length).
  ATTNPOOL_HD bool by_length() const { return kind == attnpool::mask::valid_length; }

  /// Whether query i sees key j < m: the same rule as row(i, m).sees(j), read by key.
  ATTNPOOL_HD bool sees(std::size_t i, std::size_t j) const {
    return j != skipped_query(i) && !(by_length() && j >= valid_lens[i]);
  }
};

/// The rule of a call's parameters; valid_lens points into params.valid_lens (host memory).
inline mask_rule mask_rule_of(const pool_params& params) {
  return {params.mask, params.valid_lens.data()};
}

}  // namespace attnpool::detail
