// The progress bar and the chunked pool call behind it.
#include "progress.hpp"

#include <algorithm>
#include <cmath>

namespace attnpool::cli {

progress_bar::progress_bar(std::FILE* stream, bool enabled, std::chrono::duration<double> delay)
    : stream_(stream), enabled_(enabled), delay_(delay), start_(std::chrono::steady_clock::now()) {}

void progress_bar::update(std::size_t done, std::size_t total) {
  if (!enabled_ || total == 0) return;
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start_;
  if (elapsed < delay_) return;
  constexpr int kWidth = 30;
  const double frac = std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
  const int filled = static_cast<int>(frac * kWidth);
  char bar[kWidth + 1];
  for (int i = 0; i < kWidth; ++i) bar[i] = i < filled ? '#' : '.';
  bar[kWidth] = '\0';
  const double secs = elapsed.count();
  // The rows are alike, so time per row is steady: the rest takes about as long per row.
  const double left = frac > 0 ? secs * (1.0 - frac) / frac : 0.0;
  std::fprintf(stream_, "\rattnpool: [%s] %3d%%  %zu/%zu rows  %.1f s, ~%.0f s left   ", bar,
               static_cast<int>(frac * 100.0), done, total, secs, std::ceil(left));
  std::fflush(stream_);
  drawn_ = true;
}

void progress_bar::finish() {
  if (!drawn_) return;
  std::fputc('\n', stream_);
  std::fflush(stream_);
}

std::size_t chunk_rows_for(std::size_t n, bool show_progress) noexcept {
  if (!show_progress || n == 0) return std::max<std::size_t>(n, 1);
  constexpr std::size_t kMinRows = 1024;
  return std::max((n + 99) / 100, std::min(n, kMinRows));
}

void pool_in_chunks(const_view queries, const_view keys, const_view values, mutable_view out,
                    const pool_params& params, const options& opts, std::size_t chunk_rows,
                    const std::function<void(std::size_t)>& after_chunk) {
  chunk_rows = std::max<std::size_t>(chunk_rows, 1);
  const std::size_t n = queries.rows;
  for (std::size_t i = 0; i < n; i += chunk_rows) {
    const std::size_t rows = std::min(chunk_rows, n - i);
    pool(const_view(queries.row(i), rows, queries.cols, queries.ld), keys, values,
         mutable_view(out.row(i), rows, out.cols, out.ld), params, opts);
    if (after_chunk) after_chunk(i + rows);
  }
  if (n == 0) pool(queries, keys, values, out, params, opts);  // validation of the shapes
}

}  // namespace attnpool::cli
