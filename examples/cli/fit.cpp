// `attnpool fit`: read, choose h, pool in chunks, then write every output under a temporary
// name and rename them all into place only once each one is complete.
#include "fit.hpp"

#include "bandwidth.hpp"
#include "number_text.hpp"
#include "pending_file.hpp"
#include "progress.hpp"
#include "table.hpp"

#include <attnpool/detail/centring.hpp>
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>
#include <attnpool/pool.hpp>
#if ATTNPOOL_CLI_RENDER
#include <attnpool/render.hpp>
#endif

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <unistd.h>

namespace attnpool::cli {
namespace {

namespace fs = std::filesystem;

// The pooling parameters of a chosen bandwidth: one h, or one per input column (h[0] is then
// only the isotropic field's placeholder). `h` must outlive the result, which views it.
pool_params bandwidth_params(const std::vector<double>& h, kernel k) {
  pool_params p{.bandwidth = h.front(), .kernel = k};
  if (h.size() > 1) p.bandwidths = h;
  return p;
}

// "0.5" or "0.5, 2": the bandwidth as printed on stderr and in the figures' titles.
std::string bandwidth_text(const std::vector<double>& h, const char* format) {
  std::string text;
  for (const double hc : h) {
    char buf[32];
    std::snprintf(buf, sizeof buf, format, hc);
    text += (text.empty() ? "" : ", ") + std::string(buf);
  }
  return text;
}

// A column name as a CSV field: quoted (RFC 4180) when it holds a delimiter, a quote, a line
// break or outer blanks, which our reader (and most others) would otherwise split or trim.
std::string csv_name(const std::string& name) {
  const bool needs_quotes = name.find_first_of(",\"\r\n") != std::string::npos ||
                            (!name.empty() && (name.front() == ' ' || name.front() == '\t' ||
                                               name.back() == ' ' || name.back() == '\t'));
  if (!needs_quotes) return name;
  std::string s = "\"";
  for (const char c : name) {
    if (c == '"') s += '"';
    s += c;
  }
  return s + "\"";
}

struct file_closer {
  void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};

// The predictions as CSV: the query's x columns, then <y>_hat per y, each float printed with
// %.9g, which reproduces the float32 value exactly when read back. `name` is the destination
// as the user named it, for messages: the first failed write (a full disk, a file-size limit,
// a closed pipe) ends the run with its reason.
void write_predictions(std::FILE* f, const std::string& name, const numeric_table& q,
                       const std::vector<std::string>& y, const std::vector<float>& y_hat) {
  const auto put = [&](const std::string& text) {
    if (std::fputs(text.c_str(), f) == EOF) {
      throw output_error(name + ": write failed: " + std::strerror(errno));
    }
  };
  std::string line;
  for (const std::string& col : q.names) line += csv_name(col) + ",";
  for (std::size_t c = 0; c < y.size(); ++c) {
    line += csv_name(y[c] + "_hat");
    line += c + 1 < y.size() ? ',' : '\n';
  }
  put(line);
  const std::size_t dv = y.size();
  char buf[32];
  for (std::size_t i = 0; i < q.rows; ++i) {
    line.clear();
    for (std::size_t j = 0; j < q.cols(); ++j) {
      std::snprintf(buf, sizeof buf, "%.9g,", static_cast<double>(q.at(i, j)));
      line += buf;
    }
    for (std::size_t c = 0; c < dv; ++c) {
      std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(y_hat[i * dv + c]));
      line += buf;
      line += c + 1 < dv ? ',' : '\n';
    }
    put(line);
  }
  if (std::fflush(f) != 0) throw output_error(name + ": write failed: " + std::strerror(errno));
}

std::string shown(const fs::path& p) { return printable(p.string(), 4096); }

void write_predictions_to(const pending_file& file, const numeric_table& q,
                          const std::vector<std::string>& y, const std::vector<float>& y_hat) {
  const std::string name = shown(file.destination());
  std::unique_ptr<std::FILE, file_closer> f(std::fopen(file.temp_path().c_str(), "wb"));
  if (!f) throw output_error(name + ": cannot open for writing: " + std::strerror(errno));
  write_predictions(f.get(), name, q, y, y_hat);
  // A full disk shows up at the latest here; the temporary file is then removed, not renamed.
  if (std::fclose(f.release()) != 0) {
    throw output_error(name + ": write failed: " + std::strerror(errno));
  }
}

// Outputs and inputs compared as files (device and inode, after following links), not as
// names: an output that is an input would replace the data, and two outputs that are one file
// would lose one of them. The null device is the one file several outputs may share.
void check_distinct_files(const fit_args& a) {
  struct named_file {
    std::string what;
    std::optional<file_identity> id;
  };
  const auto path_file = [](const char* option, const fs::path& p) {
    return named_file{std::string(option) + " " + shown(p), identify(p)};
  };
  std::vector<named_file> outputs;
  outputs.push_back(a.out ? path_file("--out", *a.out)
                          : named_file{"standard output", identify(STDOUT_FILENO)});
  if (a.plot) outputs.push_back(path_file("--plot", *a.plot));
  if (a.heatmap) outputs.push_back(path_file("--heatmap", *a.heatmap));
  std::vector<named_file> inputs = {path_file("--train", a.train)};
  if (a.query) inputs.push_back(path_file("--query", *a.query));
  const std::optional<file_identity> null_device = identify(fs::path("/dev/null"));
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const std::optional<file_identity>& id = outputs[i].id;
    if (!id || id == null_device) continue;
    for (const named_file& in : inputs) {
      if (in.id == id) {
        throw usage_error(outputs[i].what + " is the " + in.what +
                          " file; an output must not replace an input");
      }
    }
    for (std::size_t j = i + 1; j < outputs.size(); ++j) {
      if (outputs[j].id == id) {
        throw usage_error(outputs[i].what + " and " + outputs[j].what +
                          " are the same file; each output needs its own");
      }
    }
  }
}

#if ATTNPOOL_CLI_RENDER
namespace ar = attnpool::render;

std::string join(const std::vector<std::string>& names, const char* sep) {
  std::string s;
  for (const std::string& n : names) s += (s.empty() ? "" : sep) + n;
  return s;
}

// Training points as markers and, per output column, the prediction as a line through the
// queries sorted by x. Each y and its prediction share one colour of the tab10 cycle.
// save_png names the temporary file it failed to write; the message names the destination too.
void save_figure(const ar::figure& fig, const pending_file& file) {
  try {
    fig.save_png(file.temp_path());
  } catch (const attnpool::error& e) {
    throw output_error(shown(file.destination()) + ": " + e.what());
  }
}

void render_fit_plot(const pending_file& file, const numeric_table& train, const fit_args& a,
                     const numeric_table& q, const std::vector<float>& y_hat,
                     const std::vector<double>& h) {
  const std::size_t d = a.x.size(), dv = a.y.size();
  std::vector<std::size_t> order(q.rows);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t i, std::size_t j) { return q.at(i, 0) < q.at(j, 0); });
  ar::figure fig;
  ar::axes& ax = fig.add_subplot();
  std::vector<double> xs(train.rows), ys(train.rows), qx(q.rows), qy(q.rows);
  for (std::size_t c = 0; c < dv; ++c) {
    // Each output column gets two neighbouring tab10 colours: its points (C1, C3, ...) and its
    // fit (C0, C2, ...), so the line stays visible over its own points.
    const ar::color point_colour = ar::kTab10[(2 * c + 1) % ar::kTab10.size()];
    const ar::color line_colour = ar::kTab10[(2 * c) % ar::kTab10.size()];
    for (std::size_t i = 0; i < train.rows; ++i) {
      xs[i] = train.at(i, 0);
      ys[i] = train.at(i, d + c);
    }
    ar::line_style points;
    points.color = point_colour;
    points.draw_line = false;
    points.marker = ar::marker::circle;
    points.label = a.y[c];
    ax.plot(xs, ys, points);
    for (std::size_t r = 0; r < q.rows; ++r) {
      qx[r] = q.at(order[r], 0);
      qy[r] = y_hat[order[r] * dv + c];
    }
    ar::line_style line;
    line.color = line_colour;
    line.label = a.y[c] + "_hat";
    ax.plot(qx, qy, line);
  }
  ax.set_title("Nadaraya-Watson fit, h = " + bandwidth_text(h, "%.4g"));
  ax.set_xlabel(a.x[0]);
  ax.set_ylabel(join(a.y, ", "));
  ax.legend();
  save_figure(fig, file);
}

// The n x m weights: one row per query, one column per training point.
void render_heatmap(const pending_file& file, const numeric_table& q, const numeric_table& train_x,
                    const fit_args& a, const std::vector<double>& h, const options& opts) {
  std::vector<float> w(q.rows * train_x.rows);
  attention_weights(const_view(q.values.data(), q.rows, q.cols()),
                    const_view(train_x.values.data(), train_x.rows, train_x.cols()),
                    mutable_view(w.data(), q.rows, train_x.rows), bandwidth_params(h, a.kernel),
                    opts);
  ar::figure fig(7.2, 6.0);
  ar::axes& ax = fig.add_subplot();
  ar::matshow_options show;
  show.cmap = &ar::colormap::by_name(a.cmap);
  ax.matshow(const_view(w.data(), q.rows, train_x.rows), show);
  ax.colorbar();
  ax.set_title("attention weights, h = " + bandwidth_text(h, "%.4g"));
  ax.set_xlabel("training point (row of " + a.train.filename().string() + ")");
  ax.set_ylabel("query");
  save_figure(fig, file);
}
#endif

}  // namespace

int run_fit(const fit_args& a) {
  install_signal_handlers();
  const std::size_t d = a.x.size();
  const std::vector<std::string>& qx_names = a.query_x.empty() ? a.x : a.query_x;
  if (qx_names.size() != d) {
    throw usage_error(
        detail::concat("--query-x names ", qx_names.size(), " columns but --x names ", d));
  }
  if (a.plot && d != 1) {
    throw usage_error(
        detail::concat("--plot draws one input column against the outputs; --x names ", d,
                       " columns (use --heatmap for d > 1)"));
  }
  check_distinct_files(a);

#if ATTNPOOL_CLI_RENDER
  if (a.heatmap) {
    try {
      (void)ar::colormap::by_name(a.cmap);
    } catch (const attnpool::invalid_argument&) {
      throw usage_error("--cmap must be viridis, bone or gray; got '" + a.cmap + "'");
    }
  }
#else
  if (a.plot || a.heatmap) {
    throw usage_error(
        "this attnpool was built without the PNG renderer (ATTNPOOL_RENDER=OFF); "
        "--plot and --heatmap are unavailable");
  }
#endif
  // Claim the outputs first: an unwritable directory fails now, not after a long run.
  std::unique_ptr<pending_file> out_file, plot_file, heatmap_file;
  if (a.out) out_file = std::make_unique<pending_file>(*a.out);
  if (a.plot) plot_file = std::make_unique<pending_file>(*a.plot);
  if (a.heatmap) heatmap_file = std::make_unique<pending_file>(*a.heatmap);

  std::vector<std::string> train_cols = a.x;
  train_cols.insert(train_cols.end(), a.y.begin(), a.y.end());
  const numeric_table train = read_columns(a.train, train_cols);
  const std::size_t m = train.rows, dv = a.y.size();
  // The training table holds x and y side by side; the library takes views with a leading
  // dimension, so the values are a view into it, no copy.
  const std::size_t ld = d + dv;
  const const_view values(train.values.data() + d, m, dv, ld);
  // x columns far from the origin compared with their spread are centred on the keys' mean, in
  // double, before the float32 rounding (detail/centring.hpp), keys and queries alike; the others
  // are rounded as read. Everything that computes (the selection of h, the pooling, the
  // heatmap's weights) takes these; the outputs show the x values as read.
  const std::vector<double> shift = detail::centring_shifts(train.exact.data(), m, d,
                                                            static_cast<std::ptrdiff_t>(ld), 1);
  const auto centred = [&](const numeric_table& t, std::size_t stride) {
    numeric_table c;
    c.names = a.x;
    c.rows = t.rows;
    c.values.resize(t.rows * d);
    detail::shift_to_float(t.exact.data(), t.rows, d, static_cast<std::ptrdiff_t>(stride), 1,
                           shift.data(), c.values.data());
    return c;
  };
  const numeric_table train_xc = centred(train, ld);
  const const_view keys(train_xc.values.data(), m, d);

  // The inputs alone, densely packed: for the rule of thumb, the heatmap, and as the default
  // queries.
  numeric_table train_x;
  train_x.names = a.x;
  train_x.rows = m;
  train_x.values.resize(m * d);
  for (std::size_t i = 0; i < m; ++i) {
    std::copy_n(train.values.data() + i * ld, d, train_x.values.data() + i * d);
  }
  const numeric_table query = a.query ? read_columns(*a.query, qx_names) : train_x;
  const numeric_table query_c = a.query ? centred(query, d) : train_xc;
  const std::size_t n = query.rows;
  if (a.heatmap && static_cast<double>(n) * static_cast<double>(m) > kMaxHeatmapCells) {
    throw input_error(detail::concat("--heatmap: ", n, " queries x ", m,
                                     " training points are more weights than the 4096 x 4096 a "
                                     "heatmap may show; use fewer queries (--query)"));
  }

  // One h, or one per input column.
  std::vector<double> h;
  if (!a.bandwidth.empty()) {
    if (a.bandwidth.size() != 1 && a.bandwidth.size() != d) {
      throw input_error(detail::concat("--bandwidth lists ", a.bandwidth.size(),
                                       " bandwidths but --x names ", d,
                                       " columns: give one h, or one per column"));
    }
    h = a.bandwidth;
  } else if (!a.silverman) {
    // Leave-one-out selection runs where the pooling runs (the CPU engine, the fp64 reference or
    // the GPU's fused sweep; --backend cuda_unfused has no sweep of its own, so its selection
    // runs on cuda_fused), and says where.
    if (m < 2) {
      throw input_error(detail::concat(a.train.string(),
                                       ": --bandwidth auto needs at least 2 training points, got ",
                                       m, "; pass --bandwidth H"));
    }
    options sel_opts;
    sel_opts.backend = resolve_backend(a.backend == backend::cuda_unfused ? backend::cuda_fused
                                                                          : a.backend);
    sel_opts.threads = a.threads;
    // One h per column where there are several (statsmodels' and R np's default), unless
    // auto-iso asks for one.
    bandwidth_search search;
    search.per_dimension = d > 1 && !a.auto_iso;
    const bandwidth_selection s =
        select_bandwidth(const_view(train_xc.values.data(), m, d), values, search, sel_opts);
    h = search.per_dimension ? s.bandwidths : std::vector<double>{s.bandwidth};
    std::fprintf(stderr,
                 "attnpool: --bandwidth %s: h = %s (leave-one-out cross-validation on the %s:"
                 " error %.6g, %zu evaluations%s; isotropic grid [%.3g, %.3g]%s)\n",
                 a.auto_iso ? "auto-iso" : "auto", bandwidth_text(h, "%.6g").c_str(),
                 to_string(sel_opts.backend), s.cv_error, s.evaluations,
                 search.per_dimension ? ", one h per --x column" : "", s.grid.front(),
                 s.grid.back(), s.at_boundary ? "; the minimum is at the end of the grid" : "");
  } else {
    const bandwidth_choice c = silverman_bandwidth(train_xc, a.train.string());
    h = {c.h};
    std::fprintf(stderr,
                 "attnpool: --bandwidth silverman: h = %.6g (Silverman's rule of thumb: n = %zu, "
                 "d = %zu, sigma = %.6g)\n",
                 c.h, c.n, c.d, c.sigma);
  }

  options opts;
  opts.backend = a.backend;
  opts.threads = a.threads;
  const pool_params params = bandwidth_params(h, a.kernel);

  std::vector<float> y_hat(n * dv);
  {
    const bool tty = ::isatty(STDERR_FILENO) == 1;
    progress_bar bar(stderr, tty);
    try {
      pool_in_chunks(const_view(query_c.values.data(), n, d), keys, values,
                     mutable_view(y_hat.data(), n, dv), params, opts, chunk_rows_for(n, tty),
                     [&](std::size_t done) { bar.update(done, n); });
    } catch (...) {
      bar.finish();
      throw;
    }
    bar.finish();
  }

  // Everything is written under temporary names first; nothing is renamed until all succeeded.
  if (out_file) write_predictions_to(*out_file, query, a.y, y_hat);
#if ATTNPOOL_CLI_RENDER
  if (plot_file) render_fit_plot(*plot_file, train, a, query, y_hat, h);
  if (heatmap_file) render_heatmap(*heatmap_file, query_c, train_xc, a, h, opts);
#endif
  for (pending_file* p : {out_file.get(), plot_file.get(), heatmap_file.get()}) {
    if (p != nullptr) p->commit();
  }
  if (!a.out) write_predictions(stdout, "standard output", query, a.y, y_hat);
  return 0;
}

}  // namespace attnpool::cli
