// attnpool-demo: the attention-pooling notebook, end to end, without Python.
//
//   attnpool-demo --out DIR [--seed S] [--backend B]
//
// Writes the notebook's five figures into DIR: the token attention heatmap, the data, average
// pooling, the Nadaraya-Watson fit (h = 1) and its 100 x 100 weight matrix. Then the book's next
// section, four more: the leave-one-out cross-validation error against the bandwidth with the
// selected h, then the parametric pooling trained to the minimum of the same error (its fit
// beside the book's 5-epoch SGD run, its weights, and both runs' loss against that minimum). The random numbers come from
// std::mt19937_64, so the points differ from the notebook's torch draws but follow the same
// distributions.
#include <attnpool/attnpool.hpp>
#include <attnpool/learn.hpp>
#include <attnpool/render.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <span>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace ar = attnpool::render;

constexpr const char* kUsage =
    "usage: attnpool-demo --out DIR [--seed S] [--backend B]\n"
    "  --out DIR     directory for the nine PNG files (created if missing)\n"
    "  --seed S      random seed, an unsigned 64-bit integer (default 0)\n"
    "  --backend B   automatic, reference, cpu, cuda_fused or cuda_unfused (default automatic);\n"
    "                training and bandwidth selection run on cpu when B is a cuda backend\n";

struct usage_error {
  std::string message;
};

struct args {
  fs::path out;
  std::uint64_t seed = 0;
  attnpool::backend backend = attnpool::backend::automatic;
};

args parse_args(int argc, char** argv) {
  args a;
  bool have_out = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view value;
    bool inline_value = false;
    if (const auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      inline_value = true;
    }
    const auto take_value = [&]() -> std::string_view {
      if (inline_value) return value;
      if (i + 1 >= argc) throw usage_error{std::string(arg) + " needs a value"};
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (arg == "--out") {
      const std::string_view v = take_value();
      if (v.empty()) throw usage_error{"--out must not be empty"};
      a.out = std::string(v);
      have_out = true;
    } else if (arg == "--seed") {
      const std::string_view v = take_value();
      const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), a.seed);
      if (v.empty() || ec != std::errc() || end != v.data() + v.size()) {
        throw usage_error{"--seed must be an unsigned 64-bit integer, got '" + std::string(v) +
                          "'"};
      }
    } else if (arg == "--backend") {
      const std::string b(take_value());
      try {
        a.backend = attnpool::parse_backend(b.c_str());
      } catch (const attnpool::invalid_argument& e) {
        throw usage_error{std::string("--backend: ") + e.what()};
      }
    } else {
      throw usage_error{"unknown argument '" + std::string(argv[i]) + "'"};
    }
  }
  if (!have_out) throw usage_error{"--out DIR is required"};
  return a;
}

// Creates DIR if needed and proves that a file can be written there, so that a bad --out fails
// before any work rather than after it.
void prepare_out_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    throw usage_error{"--out '" + dir.string() + "' is not a usable directory" +
                      (ec ? ": " + ec.message() : std::string())};
  }
  const fs::path probe = dir / ".attnpool-demo-write-test";
  {
    std::ofstream f(probe);
    if (!f) throw usage_error{"--out '" + dir.string() + "' is not writable"};
  }
  fs::remove(probe, ec);
}

class step_timer {
 public:
  explicit step_timer(const char* what) : what_(what), start_(std::chrono::steady_clock::now()) {}
  void done(const std::string& detail) const {
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_)
            .count();
    std::printf("  %-34s %8.1f ms  %s\n", what_, ms, detail.c_str());
    std::fflush(stdout);
  }

 private:
  const char* what_;
  std::chrono::steady_clock::time_point start_;
};

// The notebook's three line figures share this: the true curve, then the samples as markers,
// then (optionally) a prediction, in matplotlib's colour-cycle order.
void save_curve_figure(const fs::path& path, const std::vector<float>& x_curve,
                       const std::vector<float>& y_curve, const std::vector<float>& x,
                       const std::vector<float>& y, const std::vector<float>* y_hat) {
  ar::figure fig;  // 6.4 x 4.8 in at 100 dpi, like plt.plot
  ar::axes& ax = fig.add_subplot();
  ax.plot(x_curve, y_curve);
  ax.plot(x, y, "o");
  if (y_hat != nullptr) ax.plot(x_curve, *y_hat);
  fig.save_png(path);
}

int run(const args& a) {
  prepare_out_dir(a.out);
  const attnpool::backend backend = attnpool::resolve_backend(a.backend);
  std::printf("attnpool-demo: seed %llu, backend %s (asked for %s), writing to %s\n",
              static_cast<unsigned long long>(a.seed), attnpool::to_string(backend),
              attnpool::to_string(a.backend), a.out.string().c_str());
  std::mt19937_64 rng(a.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  attnpool::options opts;
  opts.backend = a.backend;
  attnpool::pool_params params;
  params.bandwidth = 1.0;

  {  // 1. A made-up self-attention matrix over the words of a sentence.
    const step_timer t("attention_tokens.png");
    // The notebook splits ' I love deep ...' on spaces, so its first token is empty and matplotlib
    // shifts the labels by one; here each word labels its own row and column.
    const std::vector<std::string> words = {"I",    "love", "deep",    "learning",
                                            "more", "than", "machine", "learning"};
    const std::size_t n = words.size();
    std::vector<float> w(n * n);
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j)
        w[i * n + j] = (i == j ? 1.0f : 0.0f) + 0.1f * normal(rng);
    }
    ar::figure fig(10, 10);
    ar::axes& ax = fig.add_subplot();
    ar::matshow_options show;
    show.cmap = &ar::colormap::bone();
    show.row_labels = words;
    show.column_labels = words;
    ax.matshow(attnpool::const_view(w.data(), n, n), show);
    fig.save_png(a.out / "attention_tokens.png");
    t.done("8 x 8 = eye(8) + 0.1 N(0, 1), 'bone'");
  }

  // 2. Training data: 100 sorted x in [0, 10), y = x + sin(x) + N(0, 1).
  constexpr std::size_t kN = 100;
  std::vector<float> x(kN), y(kN), x_curve(kN), y_curve(kN);
  {
    const step_timer t("data");
    std::uniform_real_distribution<float> uniform(0.0f, 10.0f);
    for (float& v : x) v = uniform(rng);
    std::sort(x.begin(), x.end());
    for (std::size_t i = 0; i < kN; ++i) y[i] = x[i] + std::sin(x[i]) + normal(rng);
    for (std::size_t i = 0; i < kN; ++i) {
      x_curve[i] = static_cast<float>(i) * 0.1f;  // torch.arange(0, 10, 0.1)
      y_curve[i] = x_curve[i] + std::sin(x_curve[i]);
    }
    t.done("100 samples of y = x + sin(x) + N(0, 1)");
  }
  {
    const step_timer t("data.png");
    save_curve_figure(a.out / "data.png", x_curve, y_curve, x, y, nullptr);
    t.done("true curve and samples");
  }

  std::vector<float> y_avg(kN);
  {
    const step_timer t("average_pool");
    attnpool::average_pool(attnpool::const_view(y.data(), kN, 1),
                           attnpool::mutable_view(y_avg.data(), kN, 1), opts);
    char buf[64];
    std::snprintf(buf, sizeof buf, "mean of y = %.4f", static_cast<double>(y_avg[0]));
    t.done(buf);
  }
  {
    const step_timer t("average_pooling.png");
    save_curve_figure(a.out / "average_pooling.png", x_curve, y_curve, x, y, &y_avg);
    t.done("plus the mean prediction");
  }

  std::vector<float> y_nw;
  {
    const step_timer t("pool (Nadaraya-Watson, h = 1)");
    y_nw = attnpool::pool(x_curve, x, y, params, opts);
    double sse = 0;
    for (std::size_t i = 0; i < kN; ++i) sse += std::pow(y_nw[i] - y_curve[i], 2);
    char buf[96];
    std::snprintf(buf, sizeof buf, "100 queries x 100 keys, RMS error vs truth %.4f",
                  std::sqrt(sse / kN));
    t.done(buf);
  }
  {
    const step_timer t("nadaraya_watson.png");
    save_curve_figure(a.out / "nadaraya_watson.png", x_curve, y_curve, x, y, &y_nw);
    t.done("plus the kernel-regression prediction");
  }

  std::vector<float> weights;
  {
    const step_timer t("attention_weights");
    weights = attnpool::attention_weights(x_curve, x, 1, params, opts);
    t.done("100 x 100, rows sum to 1");
  }
  {
    const step_timer t("nadaraya_watson_weights.png");
    ar::figure fig(10, 10);
    ar::axes& ax = fig.add_subplot();
    ar::matshow_options show;
    show.cmap = &ar::colormap::bone();
    ax.matshow(attnpool::const_view(weights.data(), kN, kN), show);
    // The notebook's MultipleLocator(1): a tick on every row and column. Its labels would
    // overlap, so the renderer labels every 5th (tick_spec::thin_labels).
    ar::tick_spec every_row;
    every_row.step = 1;
    ax.set_xticks(every_row);
    ax.set_yticks(every_row);
    fig.save_png(a.out / "nadaraya_watson_weights.png");
    t.done("'bone', query rows x key columns");
  }

  // ---- The book's next section: parametric attention pooling, and choosing h by leave-one-out
  // cross-validation. The learning functions run on the host engines only (learn.hpp).
  attnpool::options learn_opts = opts;
  const bool on_gpu =
      backend == attnpool::backend::cuda_fused || backend == attnpool::backend::cuda_unfused;
  if (on_gpu || a.backend == attnpool::backend::automatic) {
    learn_opts.backend = attnpool::backend::cpu;
  }
  const std::string learn_note =
      on_gpu ? std::string(" [on cpu: ") + attnpool::to_string(backend) + " has no learning yet]"
             : std::string(" [on ") + attnpool::to_string(learn_opts.backend) + "]";
  const attnpool::const_view xv(x.data(), kN, 1), yv(y.data(), kN, 1);

  // 64 bandwidths, log-spaced over [0.05, 20].
  constexpr std::size_t kGrid = 64;
  constexpr double kHMin = 0.05, kHMax = 20.0;
  std::vector<double> grid(kGrid), cv;
  for (std::size_t k = 0; k < kGrid; ++k) {
    grid[k] = kHMin * std::pow(kHMax / kHMin, static_cast<double>(k) / (kGrid - 1));
  }
  {
    const step_timer t("loo_cv_error");
    cv = attnpool::loo_cv_error(xv, yv, grid, learn_opts);
    t.done("64 bandwidths, log-spaced in [0.05, 20]" + learn_note);
  }
  attnpool::bandwidth_selection sel;
  {
    const step_timer t("select_bandwidth");
    attnpool::bandwidth_search search;
    search.grid_size = kGrid;
    search.h_min = kHMin;
    search.h_max = kHMax;
    sel = attnpool::select_bandwidth(xv, yv, search, learn_opts);
    char buf[128];
    std::snprintf(buf, sizeof buf, "h = %.4f, CV error %.4f, %zu evaluations%s", sel.bandwidth,
                  sel.cv_error, sel.evaluations, sel.at_boundary ? " (at the grid's end)" : "");
    t.done(buf + learn_note);
  }
  {
    const step_timer t("bandwidth_cv.png");
    ar::figure fig;
    ar::axes& ax = fig.add_subplot();
    ax.set_xscale(ar::axis_scale::log);
    ax.plot(grid, cv, "-", "Leave-one-out CV error");
    char chosen[64];
    std::snprintf(chosen, sizeof chosen, "Selected h = %.3f", sel.bandwidth);
    const double hx[] = {sel.bandwidth}, hy[] = {sel.cv_error};
    ax.plot(hx, hy, "o", chosen);
    ax.set_xlabel("Bandwidth h");
    ax.set_ylabel("CV error");
    ax.legend();
    fig.save_png(a.out / "bandwidth_cv.png");
    t.done("log x axis, selected h marked");
  }
  // Training minimises the same leave-one-out loss as the selection above, and reaches its
  // minimum (quasi-Newton on ln w, the mean loss); the book's own run, SGD on the summed loss,
  // stops near h = 0.001 on this data, a nearest-neighbour staircase, and is drawn beside it.
  attnpool::parametric_fit fit, book_fit;
  {
    const step_timer t("train_parametric");
    attnpool::train_options train;
    train.seed = a.seed;
    fit = attnpool::train_parametric(xv, yv, train, learn_opts);
    char buf[192];
    std::snprintf(buf, sizeof buf,
                  "quasi-Newton: w = %.4f (h = %.4f), mean loss %.4f -> %.4f in %zu iterations",
                  fit.w[0], 1 / std::abs(fit.w[0]), fit.loss.front(), fit.final_loss,
                  fit.loss.size());
    t.done(buf + learn_note);
  }
  {
    const step_timer t("train_parametric (book)");
    attnpool::train_options train = attnpool::train_options::book();  // SGD, lr 0.5, 5 epochs
    train.seed = a.seed;
    book_fit = attnpool::train_parametric(xv, yv, train, learn_opts);
    char buf[160];
    std::snprintf(buf, sizeof buf, "5 epochs, lr 0.5: w = %.4f (h = %.4f), loss %.2f -> %.2f",
                  book_fit.w[0], 1 / std::abs(book_fit.w[0]), book_fit.loss.front(),
                  book_fit.final_loss);
    t.done(buf + learn_note);
  }
  // A scalar w is the Gaussian kernel with h = 1 / |w|.
  attnpool::pool_params trained = params, book_trained = params;
  trained.bandwidth = 1 / std::abs(fit.w[0]);
  book_trained.bandwidth = 1 / std::abs(book_fit.w[0]);
  const std::vector<float> y_book = attnpool::pool(x_curve, x, y, book_trained, opts);
  std::vector<float> y_trained;
  {
    const step_timer t("pool (trained h)");
    y_trained = attnpool::pool(x_curve, x, y, trained, opts);
    double sse = 0;
    for (std::size_t i = 0; i < kN; ++i) sse += std::pow(y_trained[i] - y_curve[i], 2);
    char buf[96];
    std::snprintf(buf, sizeof buf, "RMS error vs truth %.4f", std::sqrt(sse / kN));
    t.done(buf);
  }
  {
    const step_timer t("parametric_fit.png");
    ar::figure fig;
    ar::axes& ax = fig.add_subplot();
    ax.plot(x_curve, y_curve, "-", "Truth");
    ax.plot(x, y, "o", "Training data");
    char fixed[64], learned[64];
    std::snprintf(fixed, sizeof fixed, "Fixed kernel (h = %g)", params.bandwidth);
    std::snprintf(learned, sizeof learned, "Trained (h = %.3f)", trained.bandwidth);
    ax.plot(x_curve, y_nw, "-", fixed);
    ax.plot(x_curve, y_trained, "-", learned);
    char book[80];
    std::snprintf(book, sizeof book, "Book preset, SGD 5 epochs (h = %.3f)",
                  book_trained.bandwidth);
    ax.plot(x_curve, y_book, "-", book);
    ax.set_xlabel("x");
    ax.set_ylabel("y");
    ax.legend();
    fig.save_png(a.out / "parametric_fit.png");
    t.done("truth, samples, fixed, trained and book-preset fits");
  }
  {
    const step_timer t("parametric_weights.png");
    const std::vector<float> w = attnpool::attention_weights(x_curve, x, 1, trained, opts);
    ar::figure fig;
    ar::axes& ax = fig.add_subplot();
    ar::matshow_options show;
    show.cmap = &ar::colormap::bone();
    ax.matshow(attnpool::const_view(w.data(), kN, kN), show);
    ax.colorbar();
    ax.set_xlabel("Sorted training inputs");
    ax.set_ylabel("Sorted testing inputs");
    fig.save_png(a.out / "parametric_weights.png");
    t.done("100 x 100 with the trained h, 'bone'");
  }
  {
    const step_timer t("loss.png");
    const std::size_t longest = std::max(fit.loss.size(), book_fit.loss.size());
    std::vector<double> iteration(longest);  // 1, 2, ...: the x of both runs
    for (std::size_t e = 0; e < longest; ++e) iteration[e] = static_cast<double>(e + 1);
    // The book's run minimises the summed loss: per point, it stops far above the minimum.
    std::vector<double> book_loss = book_fit.loss;
    for (double& l : book_loss) l /= static_cast<double>(kN);
    ar::figure fig;
    ar::axes& ax = fig.add_subplot();
    ax.plot(std::span(iteration).first(fit.loss.size()), fit.loss, "o-",
            "Training loss (mean leave-one-out error)");
    ax.plot(std::span(iteration).first(book_loss.size()), book_loss, "o-",
            "Book preset, SGD (summed loss / n)");
    // The minimum that select_bandwidth found over h: where training should end.
    const double ends[] = {1.0, static_cast<double>(longest)},
                 minimum[] = {sel.cv_error, sel.cv_error};
    ax.plot(ends, minimum, "-", "Leave-one-out minimum (select_bandwidth)");
    ar::tick_spec every_epoch;  // whole epochs only, as the book's Animator shows them
    every_epoch.step = 1;
    ax.set_xticks(every_epoch);
    ax.set_xlabel("iteration");
    ax.set_ylabel("loss");
    ax.legend();
    fig.save_png(a.out / "loss.png");
    t.done("mean leave-one-out squared error, the CV minimum as a reference line");
  }

  std::printf("attnpool-demo: wrote 9 figures to %s\n", a.out.string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_args(argc, argv));
  } catch (const usage_error& e) {
    std::fprintf(stderr, "attnpool-demo: %s\n%s", e.message.c_str(), kUsage);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attnpool-demo: %s\n", e.what());
    return 1;
  }
}
