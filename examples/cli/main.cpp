// attnpool: attention pooling (Nadaraya-Watson kernel regression) on the user's own CSV or .npy
// files. This file holds the command line; fit.cpp does the work. Exit status: 0 success,
// 1 bad data or a failed run, 2 a usage error.
#include "fit.hpp"
#include "number_text.hpp"
#include "pending_file.hpp"
#include "table.hpp"

#include <attnpool/error.hpp>
#include <attnpool/pool.hpp>
#include <attnpool/version.hpp>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace fs = std::filesystem;
using attnpool::cli::usage_error;

constexpr const char* kUsage =
    "usage: attnpool <command> [options]\n"
    "       attnpool --version | --help\n"
    "\n"
    "Attention pooling (Nadaraya-Watson kernel regression) on your own data: each prediction is\n"
    "a softmax-weighted average of the training outputs, with weights\n"
    "softmax_j(-||q - x_j||^2 / (2 h^2)).\n"
    "\n"
    "Commands:\n"
    "  fit    fit to training points in a CSV or .npy file and predict (attnpool fit --help)\n"
    "\n"
    "Examples:\n"
    "  attnpool fit --train train.csv --x x --y y --plot fit.png\n"
    "  attnpool fit --train train.csv --x x1,x2 --y y --query grid.csv --bandwidth auto \\\n"
    "               --out pred.csv --heatmap weights.png\n";

constexpr const char* kFitUsage =
    "usage: attnpool fit --train FILE --x COLS --y COLS [options]\n"
    "\n"
    "Nadaraya-Watson kernel regression with a Gaussian kernel: for each query q,\n"
    "  y_hat(q) = sum_j w_j y_j,   w = softmax_j(-||q - x_j||^2 / (2 h^2))\n"
    "over the training points (x_j, y_j).\n"
    "\n"
    "Files are CSV with a header line (columns chosen by name; RFC 4180 quoting, LF or CRLF) or\n"
    "NumPy .npy arrays (float32 or float64, little-endian, 1-D or 2-D, C or Fortran order; the\n"
    "columns of an .npy are named by index: 0, 1, ...). Every value used must be finite.\n"
    "An input is a regular file of at most 2 GiB, or a pipe read to its end within that limit.\n"
    "\n"
    "Required:\n"
    "  --train FILE        training points\n"
    "  --x COLS            input columns, comma-separated (d >= 1), e.g. x1,x2\n"
    "  --y COLS            output columns, comma-separated (one or more), e.g. y\n"
    "\n"
    "Options:\n"
    "  --query FILE        points to predict at (default: the training points)\n"
    "  --query-x COLS      the input columns' names in --query (default: the --x names)\n"
    "  --bandwidth H|H1,H2,...|auto|auto-iso|silverman\n"
    "                      the bandwidth h > 0, or one per --x column (0.5,2); auto (the\n"
    "                      default): the h that minimises the leave-one-out squared error of\n"
    "                      the fit on the training data (a 64-point log grid over [1e-3, 10] x\n"
    "                      the inputs' largest range in one fused sweep, refined by golden\n"
    "                      section), then with several --x columns one h per column from there\n"
    "                      (quasi-Newton on ln h); auto-iso: the single h only; both run on the\n"
    "                      CPU engine, or the reference with --backend reference;\n"
    "                      silverman: Silverman's rule of thumb\n"
    "                      h = sigma * (4 / ((d + 2) n))^(1 / (d + 4)), sigma the mean\n"
    "                      per-column sample standard deviation. The chosen h is printed to\n"
    "                      stderr.\n"
    "  --out FILE          the predictions as CSV (default, and for FILE '-': standard\n"
    "                      output): the query's input columns, then one <y>_hat column per\n"
    "                      output, printed with %.9g\n"
    "  --plot FILE         PNG of the fit (d = 1 only): training points and the prediction line\n"
    "  --heatmap FILE      PNG of the queries x training points attention weights, with a\n"
    "                      colorbar (at most 4096 x 4096 weights)\n"
    "  --kernel K          gaussian (default), laplacian, epanechnikov, boxcar or tricube; the\n"
    "                      compact ones need --bandwidth H, and a query with no training point\n"
    "                      within h is an error naming it\n"
    "  --cmap NAME         heatmap colormap: viridis (default), bone or gray\n"
    "  --backend B         automatic (default: cuda_fused where a GPU is usable, else cpu),\n"
    "                      reference, cpu, cuda_fused or cuda_unfused\n"
    "  --threads N         CPU threads for the cpu backend (default 0: all hardware threads)\n"
    "  --device I          CUDA device index. Sets CUDA_VISIBLE_DEVICES before any CUDA call; if\n"
    "                      it is already set, I indexes its list (I = 1 of \"2,3\" is device 3)\n"
    "  -h, --help          this text\n"
    "\n"
    "Output files appear only when complete: each is written under a temporary name in its\n"
    "directory and renamed into place after every output succeeded; a signal removes the\n"
    "temporaries. An output that is an input, or two outputs that are one file (compared as\n"
    "files, through links), are refused. Runs longer than about 2 s show a progress bar when\n"
    "stderr is a terminal.\n"
    "\n"
    "Exit status: 0 success, 1 bad data or a failed run, 2 a usage error.\n"
    "\n"
    "Examples:\n"
    "  # 1-D fit at the training points, with a picture\n"
    "  attnpool fit --train train.csv --x x --y y --out pred.csv --plot fit.png\n"
    "  # two inputs, predictions on a grid, the weight matrix as a heatmap\n"
    "  attnpool fit --train train.csv --x x1,x2 --y y --query grid.csv --bandwidth auto \\\n"
    "               --out pred.csv --heatmap weights.png\n"
    "  # NumPy input (column 0 is x, column 1 is y), fixed bandwidth, 4 CPU threads\n"
    "  attnpool fit --train data.npy --x 0 --y 1 --bandwidth 0.5 --backend cpu --threads 4\n";

// "a,b , c" -> {"a", "b", "c"}; names cannot contain commas.
std::vector<std::string> split_columns(std::string_view option, std::string_view list) {
  std::vector<std::string> names;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = list.find(',', start);
    std::string_view name =
        list.substr(start, comma == std::string_view::npos ? list.npos : comma - start);
    while (!name.empty() && (name.front() == ' ' || name.front() == '\t')) name.remove_prefix(1);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
    if (name.empty()) {
      throw usage_error(std::string(option) + ": empty column name in '" + std::string(list) + "'");
    }
    for (const std::string& seen : names) {
      if (seen == name) {
        throw usage_error(std::string(option) + ": column '" + seen + "' is named twice");
      }
    }
    names.emplace_back(name);
    if (comma == std::string_view::npos) return names;
    start = comma + 1;
  }
}

template <class T>
T parse_integer(std::string_view option, std::string_view text, const char* what) {
  T v{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    throw usage_error(std::string(option) + " must be " + what + ", got '" + std::string(text) +
                      "'");
  }
  return v;
}

// One h of --bandwidth's value `whole` (the message quotes all of it).
double parse_bandwidth(std::string_view text, std::string_view whole) {
  double h = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), h);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || !std::isfinite(h) ||
      !(h > 0)) {
    throw usage_error(
        "--bandwidth must be a finite number > 0 (or a list of them, one per --x column), "
        "'auto', 'auto-iso' or 'silverman', got '" +
        std::string(whole) + "'");
  }
  return h;
}

// --device I: restricts CUDA to one device through CUDA_VISIBLE_DEVICES, which the CUDA runtime
// reads once, at its first call; nothing has called into CUDA yet when this runs.
void select_cuda_device(std::string_view text) {
  const auto index = parse_integer<unsigned>("--device", text, "a device index (0, 1, ...)");
  std::string value = std::to_string(index);
  if (const char* current = std::getenv("CUDA_VISIBLE_DEVICES"); current && *current) {
    std::vector<std::string> listed;
    std::string_view rest = current;
    for (;;) {
      const std::size_t comma = rest.find(',');
      listed.emplace_back(rest.substr(0, comma));
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
    if (index >= listed.size()) {
      throw usage_error("--device " + std::to_string(index) + ": CUDA_VISIBLE_DEVICES='" + current +
                        "' lists only " + std::to_string(listed.size()) + " device(s)");
    }
    value = listed[index];
  }
  ::setenv("CUDA_VISIBLE_DEVICES", value.c_str(), 1);
}

attnpool::cli::fit_args parse_fit(int argc, char** argv) {
  attnpool::cli::fit_args a;
  std::vector<std::string> seen;
  for (int i = 2; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(kFitUsage, stdout);
      std::exit(0);
    }
    std::string_view value;
    bool inline_value = false;
    if (const auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      inline_value = true;
    }
    if (!arg.starts_with("--")) throw usage_error("unexpected argument '" + std::string(arg) + "'");
    for (const std::string& s : seen) {
      if (s == arg) throw usage_error(std::string(arg) + " is given twice");
    }
    seen.emplace_back(arg);
    const auto take = [&]() -> std::string_view {
      if (inline_value) return value;
      if (i + 1 >= argc) throw usage_error(std::string(arg) + " needs a value");
      return argv[++i];
    };
    const auto take_path = [&]() -> std::filesystem::path {
      const std::string_view v = take();
      if (v.empty()) throw usage_error(std::string(arg) + " needs a file name");
      return std::filesystem::path(std::string(v));
    };
    if (arg == "--train") {
      a.train = take_path();
    } else if (arg == "--x") {
      a.x = split_columns(arg, take());
    } else if (arg == "--y") {
      a.y = split_columns(arg, take());
    } else if (arg == "--query") {
      a.query = take_path();
    } else if (arg == "--query-x") {
      a.query_x = split_columns(arg, take());
    } else if (arg == "--bandwidth") {
      const std::string_view v = take();
      a.bandwidth.clear();
      a.silverman = v == "silverman";
      a.auto_iso = v == "auto-iso";
      if (v != "silverman" && v != "auto" && v != "auto-iso") {
        // A list, one h per --x column: "0.5,2".
        for (std::size_t b = 0;;) {
          const std::size_t e = std::min(v.find(',', b), v.size());
          a.bandwidth.push_back(parse_bandwidth(v.substr(b, e - b), v));
          if (e == v.size()) break;
          b = e + 1;
        }
      }
    } else if (arg == "--out") {
      // "-" is standard output, as for most tools (and the default); ./- names a file "-".
      if (fs::path p = take_path(); p != "-") a.out = std::move(p);
    } else if (arg == "--plot" || arg == "--heatmap") {
      fs::path p = take_path();
      if (p == "-") {
        throw usage_error(std::string(arg) +
                          " -: a PNG is not sent to standard output; give a file name");
      }
      (arg == "--plot" ? a.plot : a.heatmap) = std::move(p);
    } else if (arg == "--cmap") {
      a.cmap = std::string(take());
    } else if (arg == "--kernel") {
      const std::string k(take());
      try {
        a.kernel = attnpool::parse_kernel(k.c_str());
      } catch (const attnpool::invalid_argument& e) {
        throw usage_error(std::string("--kernel: ") + e.what());
      }
    } else if (arg == "--backend") {
      const std::string b(take());
      try {
        a.backend = attnpool::parse_backend(b.c_str());
      } catch (const attnpool::invalid_argument& e) {
        throw usage_error(std::string("--backend: ") + e.what());
      }
    } else if (arg == "--threads") {
      a.threads = parse_integer<unsigned>(arg, take(), "a thread count (0 = all)");
    } else if (arg == "--device") {
      select_cuda_device(take());
    } else {
      throw usage_error("unknown option '" + std::string(arg) + "'");
    }
  }
  if (a.train.empty()) throw usage_error("--train FILE is required");
  if (a.x.empty()) throw usage_error("--x COLS is required (the input columns)");
  if (a.y.empty()) throw usage_error("--y COLS is required (the output columns)");
  if (!a.query && !a.query_x.empty()) throw usage_error("--query-x needs --query");
  if (a.kernel != attnpool::kernel::gaussian && a.bandwidth.empty()) {
    throw usage_error(std::string("--kernel ") + attnpool::to_string(a.kernel) +
                      " needs --bandwidth H: auto and silverman choose h for the Gaussian");
  }
  return a;
}

int run(int argc, char** argv) {
  if (argc < 2) throw usage_error("no command given");
  const std::string_view command = argv[1];
  if (command == "-h" || command == "--help" || command == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (command == "--version" || command == "-V") {
    std::printf("attnpool %s\n", ATTNPOOL_VERSION_STRING);
    return 0;
  }
  if (command == "fit") return attnpool::cli::run_fit(parse_fit(argc, argv));
  throw usage_error("unknown command '" + std::string(command) + "'");
}

// The last line of defence for what reaches the terminal: the readers escape the text they quote
// from files, and this escapes whatever else a message holds (an argument's bytes, a path) and
// keeps it to one line of bounded length.
std::string message(const std::exception& e) { return attnpool::cli::printable(e.what(), 4096); }

}  // namespace

int main(int argc, char** argv) {
  const bool fit = argc >= 2 && std::string_view(argv[1]) == "fit";
  try {
    return run(argc, argv);
  } catch (const usage_error& e) {
    std::fprintf(stderr, "attnpool: %s\nTry 'attnpool %s--help'.\n", message(e).c_str(),
                 fit ? "fit " : "");
    return 2;
  } catch (const std::exception& e) {
    // input_error, output_error (already carrying file:line:col or the path) and
    // attnpool::error from the library; the outputs' destructors have removed the temporaries.
    std::fprintf(stderr, "attnpool: %s\n", message(e).c_str());
    return 1;
  }
}
