/// \file
/// Long runs in pieces: attnpool::pool over blocks of query rows, with a progress bar.
#pragma once

#include <attnpool/pool.hpp>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <functional>

namespace attnpool::cli {

/// A one-line progress bar on a terminal. It stays silent for the first `delay` (short runs
/// print nothing) and entirely when disabled, which the tool does when stderr is not a terminal
/// so that logs and pipes never receive carriage returns.
class progress_bar {
 public:
  progress_bar(std::FILE* stream, bool enabled,
               std::chrono::duration<double> delay = std::chrono::seconds(2));
  /// Redraws the bar for `done` of `total` units, if enabled and the delay has passed.
  void update(std::size_t done, std::size_t total);
  /// Ends the bar's line, if one was drawn.
  void finish();
  /// True once a bar has been drawn.
  [[nodiscard]] bool drawn() const noexcept { return drawn_; }

 private:
  std::FILE* stream_;
  bool enabled_;
  std::chrono::duration<double> delay_;
  std::chrono::steady_clock::time_point start_;
  bool drawn_ = false;
};

/// Query rows per attnpool::pool call when a progress bar is wanted: about 1% of the rows, but
/// at least 1024 (or all of them) so that each call still gives the CPU threads or the GPU
/// enough rows to fill them. Without a bar the whole run is one call.
std::size_t chunk_rows_for(std::size_t n, bool show_progress) noexcept;

/// attnpool::pool on rows [i, i + chunk_rows) of `queries` and `out` in turn, calling
/// `after_chunk(rows_done)` after each block. Rows are independent, so the result equals one
/// call on all rows. Throws as attnpool::pool; rows of finished blocks are then already written.
void pool_in_chunks(const_view queries, const_view keys, const_view values, mutable_view out,
                    const pool_params& params, const options& opts, std::size_t chunk_rows,
                    const std::function<void(std::size_t)>& after_chunk);

}  // namespace attnpool::cli
