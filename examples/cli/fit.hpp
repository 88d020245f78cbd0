/// \file
/// `attnpool fit`: Nadaraya-Watson regression on the user's own files.
#pragma once

#include <attnpool/types.hpp>

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnpool::cli {

/// A bad command line: the tool prints the message and a hint, and exits with status 2.
class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The parsed options of `attnpool fit` (see kFitUsage in main.cpp for their meaning).
struct fit_args {
  std::filesystem::path train;
  std::vector<std::string> x;  ///< input columns of the training file (d >= 1)
  std::vector<std::string> y;  ///< output columns (dv >= 1)
  std::optional<std::filesystem::path> query;
  std::vector<std::string> query_x;          ///< input columns of the query file (default: x)
  /// --bandwidth H or H1,H2,...: one h, or one per --x column; empty: chosen by a rule.
  std::vector<double> bandwidth;
  /// --bandwidth auto (false, the default): leave-one-out cross-validation
  /// (attnpool::select_bandwidth); --bandwidth silverman (true): Silverman's rule of thumb.
  bool silverman = false;
  /// --bandwidth auto-iso: leave-one-out selection of one h for every column (auto selects one
  /// per column where there are several).
  bool auto_iso = false;
  /// --kernel: the weighting kernel (auto and silverman bandwidths assume the Gaussian).
  attnpool::kernel kernel = attnpool::kernel::gaussian;
  std::optional<std::filesystem::path> out;  ///< empty: standard output
  std::optional<std::filesystem::path> plot;
  std::optional<std::filesystem::path> heatmap;
  std::string cmap = "viridis";
  attnpool::backend backend = attnpool::backend::automatic;
  unsigned threads = 0;
};

/// Runs the fit and writes the outputs (see main.cpp's usage text). Returns the exit status.
/// \throws usage_error, input_error, output_error or attnpool::error.
int run_fit(const fit_args& args);

/// The largest heatmap, in weights: 4096 x 4096 floats are 64 MiB, and more cells than a
/// figure's pixels would only be resampled away.
inline constexpr double kMaxHeatmapCells = 4096.0 * 4096.0;

}  // namespace attnpool::cli
