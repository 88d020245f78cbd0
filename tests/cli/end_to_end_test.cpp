// The attnpool binary end to end: files written into a fresh directory, the tool run through the
// shell, its exit status, stdout, stderr and outputs checked. Bad inputs must give the message
// with file:line:col, exit status 1, and leave no output file (and no temporary) behind.
#include <attnpool/learn.hpp>
#include <attnpool/pool.hpp>
#include <attnpool/version.hpp>

#include <test_support.hpp>

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <csignal>
#include <cstring>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;

struct result {
  int status = -1;  // exit status; -1 when killed by a signal (a crash)
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

class cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("attnpool-cli-e2e-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // Runs `ENV attnpool ARGS` inside the test directory.
  result run(const std::string& args, const std::string& env = "") {
    const std::string cmd = "cd '" + dir_.string() + "' && " + env + " '" ATTNPOOL_CLI_EXE "' " +
                            args + " >.stdout 2>.stderr";
    const int status = std::system(cmd.c_str());
    result r;
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(dir_ / ".stdout");
    r.err = slurp(dir_ / ".stderr");
    fs::remove(dir_ / ".stdout");
    fs::remove(dir_ / ".stderr");
    return r;
  }
  fs::path write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
    return dir_ / name;
  }
  // The directory's file names, to prove that nothing (no temporary either) was left behind.
  std::set<std::string> files() const {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.insert(e.path().filename().string());
    return names;
  }
  fs::path dir_;
};

// "a,b\n1,2\n" -> {{"a","b"},{"1","2"}}; enough for the tool's own unquoted output.
std::vector<std::vector<std::string>> read_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> fields;
    std::istringstream ls(line);
    for (std::string f; std::getline(ls, f, ',');) fields.push_back(f);
    rows.push_back(fields);
  }
  return rows;
}

std::string fmt(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
  return buf;
}

// The notebook's data: x uniform in [0, 5), y = 2 sin x + x^0.8 + N(0, 0.5).
struct data_1d {
  std::vector<float> x, y;
  std::string csv;
};
data_1d make_1d(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0, 5);
  std::normal_distribution<float> noise(0, 0.5f);
  data_1d d;
  d.csv = "x,y\n";
  for (std::size_t i = 0; i < n; ++i) {
    const float x = u(rng);
    const float y = 2 * std::sin(x) + std::pow(x, 0.8f) + noise(rng);
    d.x.push_back(x);
    d.y.push_back(y);
    d.csv += fmt(x) + "," + fmt(y) + "\n";
  }
  return d;
}

[[maybe_unused]] bool is_png(const fs::path& p) {
  return slurp(p).starts_with("\x89PNG\r\n\x1a\n");
}

// ---- --version, --help, usage errors ----------------------------------------------------------

TEST_F(cli, Version) {
  const result r = run("--version");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, std::string("attnpool ") + ATTNPOOL_VERSION_STRING + "\n");
}

TEST_F(cli, Help) {
  const result top = run("--help");
  EXPECT_EQ(top.status, 0);
  EXPECT_NE(top.out.find("usage: attnpool <command>"), std::string::npos) << top.out;
  EXPECT_NE(top.out.find("Examples:"), std::string::npos);
  const result fit = run("fit --help");
  EXPECT_EQ(fit.status, 0);
  for (const char* want : {"usage: attnpool fit --train FILE --x COLS --y COLS", "Silverman",
                           "(4 / ((d + 2) n))^(1 / (d + 4))", "leave-one-out", "CUDA_VISIBLE_DEVICES",
                           "--threads", "--backend", "Examples:", "Exit status"}) {
    EXPECT_NE(fit.out.find(want), std::string::npos) << "missing '" << want << "'";
  }
}

TEST_F(cli, UsageErrorsExitWithTwo) {
  write("t.csv", "x,y\n1,2\n2,3\n");
  const struct {
    const char* args;
    const char* message;
  } cases[] = {
      {"", "attnpool: no command given\nTry 'attnpool --help'.\n"},
      {"frobnicate", "attnpool: unknown command 'frobnicate'\n"},
      {"fit --train t.csv --x x", "attnpool: --y COLS is required (the output columns)\n"},
      {"fit --x x --y y", "attnpool: --train FILE is required\n"},
      {"fit --train t.csv --x x --y y --bogus", "attnpool: unknown option '--bogus'\n"},
      {"fit --train t.csv --x x --y y --bandwidth -1",
       "attnpool: --bandwidth must be a finite number > 0 (or a list of them, one per --x "
       "column), 'auto', 'auto-iso' or 'silverman', got '-1'\n"},
      {"fit --train t.csv --x x --y y --bandwidth=nan",
       "attnpool: --bandwidth must be a finite number > 0 (or a list of them, one per --x "
       "column), 'auto', 'auto-iso' or 'silverman', got 'nan'\n"},
      {"fit --train t.csv --x x --y y --bandwidth 0.5,",
       "attnpool: --bandwidth must be a finite number > 0 (or a list of them, one per --x "
       "column), 'auto', 'auto-iso' or 'silverman', got '0.5,'\n"},
      {"fit --train t.csv --x x --y y --backend gpu", "attnpool: --backend: backend must be"},
      {"fit --train t.csv --x x --y y --threads many",
       "attnpool: --threads must be a thread count (0 = all), got 'many'\n"},
      {"fit --train t.csv --x x --y y --device -1",
       "attnpool: --device must be a device index (0, 1, ...), got '-1'\n"},
      {"fit --train t.csv --x x,,y --y y", "attnpool: --x: empty column name in 'x,,y'\n"},
      {"fit --train t.csv --x x,x --y y", "attnpool: --x: column 'x' is named twice\n"},
      {"fit --train t.csv --x x --y y --x x", "attnpool: --x is given twice\n"},
      {"fit --train t.csv --x x --y y --out", "attnpool: --out needs a value\n"},
      {"fit --train t.csv --x x,y --y y --plot p.png",
       "attnpool: --plot draws one input column against the outputs; --x names 2 columns"},
      {"fit --train t.csv --x x --y y --out a.png --plot a.png",
       "attnpool: --out a.png and --plot a.png are the same file; each output needs its own\n"},
      {"fit --train t.csv --x x --y y --plot -",
       "attnpool: --plot -: a PNG is not sent to standard output; give a file name\n"},
      {"fit --train t.csv --x x --y y --query-x x", "attnpool: --query-x needs --query\n"},
      {"fit --train t.csv --x x --y y --kernel cosine", "attnpool: --kernel: kernel must be"},
      {"fit --train t.csv --x x --y y --kernel boxcar",
       "attnpool: --kernel boxcar needs --bandwidth H: auto and silverman choose h for the "
       "Gaussian\n"},
  };
  for (const auto& c : cases) {
    const result r = run(c.args);
    EXPECT_EQ(r.status, 2) << c.args;
    EXPECT_EQ(r.err.rfind(c.message, 0), 0u) << c.args << "\n" << r.err;
  }
  EXPECT_EQ(files(), (std::set<std::string>{"t.csv"}));
}

TEST_F(cli, DeviceIndexesAnExistingCudaVisibleDevices) {
  write("t.csv", "x,y\n1,2\n2,3\n");
  const result r = run("fit --train t.csv --x x --y y --device 2", "CUDA_VISIBLE_DEVICES=5,7");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(
      r.err.rfind("attnpool: --device 2: CUDA_VISIBLE_DEVICES='5,7' lists only 2 device(s)", 0), 0u)
      << r.err;
  // On the cpu backend the device is irrelevant and the run succeeds.
  EXPECT_EQ(run("fit --train t.csv --x x --y y --device 1 --backend cpu --bandwidth 1",
                "CUDA_VISIBLE_DEVICES=5,7")
                .status,
            0);
}

// ---- good runs --------------------------------------------------------------------------------

TEST_F(cli, OneDimensionalFitMatchesTheLibrary) {
  const std::uint64_t seed = attnpool::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) +
               " (replay with ATTNPOOL_TEST_SEED=" + std::to_string(seed) + ")");
  const data_1d train = make_1d(100, seed);
  write("train.csv", train.csv);
  std::string grid = "x\n";
  std::vector<float> q;
  for (int i = 0; i < 50; ++i) {
    q.push_back(0.1f * static_cast<float>(i));
    grid += fmt(q.back()) + "\n";
  }
  write("grid.csv", grid);

  const result r =
      run("fit --train train.csv --x x --y y --query grid.csv --bandwidth 0.7 --backend cpu "
          "--threads 2 --out pred.csv");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");  // a fixed bandwidth prints nothing; no progress bar off a terminal
  EXPECT_EQ(r.out, "");

  attnpool::options opts;
  opts.backend = attnpool::backend::cpu;
  opts.threads = 2;  // as the tool ran, so that even a thread-dependent split would agree
  const std::vector<float> expected = attnpool::pool(q, train.x, train.y, {.bandwidth = 0.7}, opts);
  const auto rows = read_csv(slurp(dir_ / "pred.csv"));
  ASSERT_EQ(rows.size(), q.size() + 1);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"x", "y_hat"}));
  for (std::size_t i = 0; i < q.size(); ++i) {
    ASSERT_EQ(rows[i + 1].size(), 2u);
    EXPECT_EQ(rows[i + 1][0], fmt(q[i]));
    // %.9g round-trips float32 exactly, so the file holds the library's very numbers.
    EXPECT_EQ(std::strtof(rows[i + 1][1].c_str(), nullptr), expected[i]) << "row " << i;
  }
  EXPECT_EQ(files(), (std::set<std::string>{"train.csv", "grid.csv", "pred.csv"}));
}

// Inputs far from the origin compared with their spread: x = 1e6 + U(0, 1), where float32's
// spacing is 0.0625. The tool centres x in double before rounding, so its fit at h = 0.05 matches
// an fp64 computation on the decimal data; pooling the float32-rounded data as given does not
// (checked too, so that the data stays a case the centring is needed for).
TEST_F(cli, LargeOffsetsKeepTheirDigits) {
  const std::uint64_t seed = attnpool::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) +
               " (replay with ATTNPOOL_TEST_SEED=" + std::to_string(seed) + ")");
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const auto text = [](double v) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return std::string(buf);
  };
  std::vector<double> kx(400), ky(400), qx(60);
  std::string csv = "x,y\n", grid = "x\n";
  for (std::size_t j = 0; j < kx.size(); ++j) {
    const double t = u(rng);
    kx[j] = std::strtod(text(1e6 + t).c_str(), nullptr);
    ky[j] = std::strtod(text(std::sin(6.0 * t) + 0.1 * u(rng)).c_str(), nullptr);
    csv += text(kx[j]) + "," + text(ky[j]) + "\n";
  }
  for (std::size_t i = 0; i < qx.size(); ++i) {
    qx[i] = std::strtod(text(1e6 + (static_cast<double>(i) + 0.5) / 60.0).c_str(), nullptr);
    grid += text(qx[i]) + "\n";
  }
  write("train.csv", csv);
  write("grid.csv", grid);
  const double h = 0.05;
  const result r = run("fit --train train.csv --x x --y y --query grid.csv --bandwidth 0.05 "
                       "--backend cpu --out pred.csv");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto rows = read_csv(slurp(dir_ / "pred.csv"));
  ASSERT_EQ(rows.size(), qx.size() + 1);

  // The fp64 answer on the decimal data, and each output's error over sum_j w_j |y_j|.
  const auto rel_error = [&](std::size_t i, double got) {
    double mx = -INFINITY;
    for (const double k : kx) mx = std::max(mx, -(qx[i] - k) * (qx[i] - k) / (2 * h * h));
    double sw = 0, swy = 0, swa = 0;
    for (std::size_t j = 0; j < kx.size(); ++j) {
      const double w = std::exp(-(qx[i] - kx[j]) * (qx[i] - kx[j]) / (2 * h * h) - mx);
      sw += w;
      swy += w * ky[j];
      swa += w * std::fabs(ky[j]);
    }
    return std::fabs(got - swy / sw) / (swa / sw);
  };
  double worst = 0.0;
  for (std::size_t i = 0; i < qx.size(); ++i) {
    ASSERT_EQ(rows[i + 1].size(), 2u);
    worst = std::max(worst, rel_error(i, std::strtod(rows[i + 1][1].c_str(), nullptr)));
  }
  std::vector<float> qf(qx.begin(), qx.end()), kf(kx.begin(), kx.end()), yf(ky.begin(), ky.end());
  attnpool::options opts;
  opts.backend = attnpool::backend::cpu;
  const std::vector<float> rounded = attnpool::pool(qf, kf, yf, {.bandwidth = h}, opts);
  double worst_rounded = 0.0;
  for (std::size_t i = 0; i < qx.size(); ++i)
    worst_rounded = std::max(worst_rounded, rel_error(i, rounded[i]));
  std::printf("x = 1e6 + U(0, 1), h = 0.05: max error %.3g centred (the tool), %.3g rounded as "
              "given\n", worst, worst_rounded);
  EXPECT_LT(worst, 1e-5);
  EXPECT_GT(worst_rounded, 1e-3);
}

TEST_F(cli, KernelOptionMatchesTheLibrary) {
  const std::uint64_t seed = attnpool::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) +
               " (replay with ATTNPOOL_TEST_SEED=" + std::to_string(seed) + ")");
  const data_1d train = make_1d(100, seed);
  write("train.csv", train.csv);
  write("grid.csv", "x\n1\n2.5\n4\n");
  const std::vector<float> q = {1.0f, 2.5f, 4.0f};
  attnpool::options opts;
  opts.backend = attnpool::backend::cpu;
  for (const char* name : {"laplacian", "epanechnikov", "tricube"}) {
    const result r = run(std::string("fit --train train.csv --x x --y y --query grid.csv ") +
                         "--bandwidth 1.5 --backend cpu --kernel " + name);
    ASSERT_EQ(r.status, 0) << name << ": " << r.err;
    const std::vector<float> expected = attnpool::pool(
        q, train.x, train.y, {.bandwidth = 1.5, .kernel = attnpool::parse_kernel(name)}, opts);
    const auto rows = read_csv(r.out);
    ASSERT_EQ(rows.size(), q.size() + 1) << name;
    for (std::size_t i = 0; i < q.size(); ++i)
      EXPECT_EQ(std::strtof(rows[i + 1][1].c_str(), nullptr), expected[i]) << name << " row " << i;
  }
  // A compact kernel narrower than the gaps: the empty query is an error, and nothing is written.
  write("far.csv", "x\n100\n");
  const result r = run("fit --train train.csv --x x --y y --query far.csv --bandwidth 0.5 "
                       "--kernel boxcar --backend cpu --out pred.csv");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("query row 0 has no key inside the support of the boxcar kernel"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "pred.csv"));
}

TEST_F(cli, AutoBandwidthIsLeaveOneOutSelection) {
  const data_1d train = make_1d(64, 11);
  write("train.csv", train.csv);
  const result r = run("fit --train train.csv --x x --y y --backend cpu");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string prefix = "attnpool: --bandwidth auto: h = ";
  EXPECT_EQ(r.err.rfind(prefix, 0), 0u) << r.err;
  EXPECT_NE(r.err.find("(leave-one-out cross-validation on the cpu: error "), std::string::npos)
      << r.err;
  const double h = std::strtod(r.err.c_str() + prefix.size(), nullptr);
  // The library's own choice on the same data.
  attnpool::options opts;
  opts.backend = attnpool::backend::cpu;
  const auto sel = attnpool::select_bandwidth({train.x.data(), 64, 1}, {train.y.data(), 64, 1},
                                              {}, opts);
  EXPECT_NEAR(h, sel.bandwidth, 1e-5 * sel.bandwidth);  // printed with %.6g
  const auto rows = read_csv(r.out);
  ASSERT_EQ(rows.size(), 65u);
  const std::vector<float> expected =
      attnpool::pool(train.x, train.x, train.y, {.bandwidth = h}, opts);
  for (std::size_t i = 0; i < 64; ++i) {
    // h went through %.6g on stderr, so allow the effect of a 1e-6 relative change in h.
    EXPECT_NEAR(std::strtod(rows[i + 1][1].c_str(), nullptr), expected[i], 1e-4) << "row " << i;
  }
}

// Two inputs on scales 5 and 500: --bandwidth takes one h per column, auto selects one per
// column (its leave-one-out error below auto-iso's single h), and a list of the wrong length is
// an error naming both counts.
TEST_F(cli, BandwidthPerInputColumn) {
  std::mt19937 rng(20261203);
  std::uniform_real_distribution<double> ua(0.0, 5.0), ub(0.0, 500.0);
  std::normal_distribution<double> noise(0.0, 0.1);
  std::ostringstream csv;
  csv << "a,b,y\n";
  std::vector<float> x, y;
  for (int i = 0; i < 120; ++i) {
    const double a = ua(rng), b = ub(rng), t = std::sin(a) + b / 500.0 + noise(rng);
    csv << a << "," << b << "," << t << "\n";
    x.push_back(static_cast<float>(a));
    x.push_back(static_cast<float>(b));
    y.push_back(static_cast<float>(t));
  }
  write("train.csv", csv.str());

  const result given = run("fit --train train.csv --x a,b --y y --bandwidth 0.5,200 --backend cpu");
  ASSERT_EQ(given.status, 0) << given.err;
  const std::vector<double> hs = {0.5, 200.0};
  attnpool::options opts;
  opts.backend = attnpool::backend::reference;
  std::vector<float> expected(120);
  attnpool::pool({x.data(), 120, 2}, {x.data(), 120, 2}, {y.data(), 120, 1},
                 {expected.data(), 120, 1}, {.bandwidths = hs}, opts);
  const auto rows = read_csv(given.out);
  ASSERT_EQ(rows.size(), 121u);
  for (std::size_t i = 0; i < 120; ++i)
    EXPECT_NEAR(std::strtod(rows[i + 1][2].c_str(), nullptr), expected[i], 1e-5) << "row " << i;

  // The printed leave-one-out errors: per column, then one h.
  const auto cv_error = [](const std::string& err) {
    const std::size_t at = err.find("error ");
    return at == std::string::npos ? -1.0 : std::strtod(err.c_str() + at + 6, nullptr);
  };
  const result per = run("fit --train train.csv --x a,b --y y --backend cpu");
  ASSERT_EQ(per.status, 0) << per.err;
  EXPECT_EQ(per.err.rfind("attnpool: --bandwidth auto: h = ", 0), 0u) << per.err;
  EXPECT_NE(per.err.find(", one h per --x column"), std::string::npos) << per.err;
  const result iso = run("fit --train train.csv --x a,b --y y --bandwidth auto-iso --backend cpu");
  ASSERT_EQ(iso.status, 0) << iso.err;
  EXPECT_EQ(iso.err.rfind("attnpool: --bandwidth auto-iso: h = ", 0), 0u) << iso.err;
  EXPECT_GT(cv_error(per.err), 0.0) << per.err;
  EXPECT_LT(cv_error(per.err), 0.5 * cv_error(iso.err)) << per.err << iso.err;

  const result wrong = run("fit --train train.csv --x a,b --y y --bandwidth 1,2,3");
  EXPECT_EQ(wrong.status, 1);
  EXPECT_NE(wrong.err.find("--bandwidth lists 3 bandwidths but --x names 2 columns"),
            std::string::npos)
      << wrong.err;
}

TEST_F(cli, SilvermanBandwidthAtTheTrainingPointsToStdout) {
  const data_1d train = make_1d(64, 11);
  write("train.csv", train.csv);
  const result r = run("fit --train train.csv --x x --y y --backend cpu --bandwidth silverman");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string prefix = "attnpool: --bandwidth silverman: h = ";
  EXPECT_EQ(r.err.rfind(prefix, 0), 0u) << r.err;
  EXPECT_NE(r.err.find("(Silverman's rule of thumb: n = 64, d = 1, sigma = "), std::string::npos);
  const double h = std::strtod(r.err.c_str() + prefix.size(), nullptr);
  const auto rows = read_csv(r.out);
  ASSERT_EQ(rows.size(), 65u);
  attnpool::options opts;
  opts.backend = attnpool::backend::cpu;
  const std::vector<float> expected =
      attnpool::pool(train.x, train.x, train.y, {.bandwidth = h}, opts);
  for (std::size_t i = 0; i < 64; ++i) {
    // h went through %.6g on stderr, so allow the effect of a 1e-6 relative change in h.
    EXPECT_NEAR(std::strtod(rows[i + 1][1].c_str(), nullptr), expected[i], 1e-4) << "row " << i;
  }
}

TEST_F(cli, SeveralInputsAndOutputsFromNpy) {
  // A float64 .npy with columns x1, x2, y1, y2 (named 0..3), and a CSV query with other names.
  const std::vector<double> data = {0, 0, 1, 10, 1, 0, 2, 20, 0, 1, 3, 30, 1, 1, 4, 40};
  std::string npy = std::string("\x93NUMPY\x01\x00", 8);
  std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 4), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  npy += static_cast<char>(header.size() & 0xff);
  npy += static_cast<char>(header.size() >> 8);
  npy += header;
  for (const double v : data) {
    const auto bits = std::bit_cast<std::uint64_t>(v);
    for (int b = 0; b < 8; ++b) npy += static_cast<char>((bits >> (8 * b)) & 0xff);
  }
  write("train.npy", npy);
  write("q.csv", "a,b\n0.5,0.5\n0,0\n");
  const result r =
      run("fit --train train.npy --x 0,1 --y 2,3 --query q.csv --query-x a,b --bandwidth 0.25 "
          "--backend reference --out pred.csv");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto rows = read_csv(slurp(dir_ / "pred.csv"));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"a", "b", "2_hat", "3_hat"}));
  // The centre is equidistant from all four corners: the plain means 2.5 and 25.
  EXPECT_EQ(rows[1], (std::vector<std::string>{"0.5", "0.5", "2.5", "25"}));
  // At (0, 0): the two adjacent corners weigh a = exp(-1 / (2 h^2)) = exp(-8), the far one a^2.
  const double a = std::exp(-8.0);
  EXPECT_NEAR(std::strtod(rows[2][2].c_str(), nullptr),
              (1 + 2 * a + 3 * a + 4 * a * a) / (1 + 2 * a + a * a), 1e-6);
}

TEST_F(cli, PlotAndHeatmap) {
  write("train.csv", make_1d(40, 3).csv);
#if ATTNPOOL_CLI_RENDER
  const result r =
      run("fit --train train.csv --x x --y y --bandwidth 0.5 --backend cpu --out pred.csv "
          "--plot fit.png --heatmap weights.png --cmap bone");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(is_png(dir_ / "fit.png"));
  EXPECT_TRUE(is_png(dir_ / "weights.png"));
  EXPECT_EQ(files(), (std::set<std::string>{"train.csv", "pred.csv", "fit.png", "weights.png"}));
  const result bad_cmap = run("fit --train train.csv --x x --y y --heatmap w2.png --cmap jet");
  EXPECT_EQ(bad_cmap.status, 2);
  EXPECT_EQ(bad_cmap.err.rfind("attnpool: --cmap must be viridis, bone or gray; got 'jet'", 0), 0u);
#else
  const result r = run("fit --train train.csv --x x --y y --plot fit.png");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("built without the PNG renderer"), std::string::npos);
#endif
}

// ---- bad input: message with file:line:col, status 1, no output, old outputs untouched ----------

TEST_F(cli, BadInputsLeaveNoOutput) {
  const struct {
    const char* name;
    const char* text;
    const char* message;
  } cases[] = {
      {"nonnumber.csv", "x,y\n1,2\n3,abc\n",
       "nonnumber.csv:3:2: column 'y': 'abc' is not a number"},
      {"missing.csv", "x1,x2,z\n1,2,3\n",
       "missing.csv:1:1: no column 'x'; the columns are: x1, x2, z"},
      {"empty.csv", "",
       "empty.csv:1:1: the file is empty; expected a header line with column names"},
      {"nan.csv", "x,y\n1,2\n2,NaN\n",
       "nan.csv:3:2: column 'y': 'NaN' is not finite; the data must be finite"},
      {"fields.csv", "x,y\n1,2\n3,4,5\n",
       "fields.csv:3:3: expected 2 fields as in the header, found 3"},
      {"header.csv", "x,y\n", "header.csv:1:1: no data rows after the header"},
      {"quote.csv", "x,y\n1,\"2\n", "quote.csv:2:2: unterminated quoted field"},
      {"trunc.npy", "\x93NUMPY\x01", "trunc.npy: truncated .npy file: the version is cut off"},
  };
  for (const auto& c : cases) {
    write(c.name, c.text);
    write("pred.csv", "previous results\n");
    const result r = run(std::string("fit --train ") + c.name + " --x x --y y --out pred.csv" +
                         (ATTNPOOL_CLI_RENDER ? " --plot fit.png --heatmap w.png" : ""));
    EXPECT_EQ(r.status, 1) << c.name;
    EXPECT_EQ(r.err.rfind(std::string("attnpool: ") + c.message, 0), 0u) << c.name << "\n" << r.err;
    EXPECT_EQ(slurp(dir_ / "pred.csv"), "previous results\n") << c.name;
    EXPECT_EQ(files(), (std::set<std::string>{c.name, "pred.csv"})) << c.name;
    fs::remove(dir_ / c.name);
  }
}

TEST_F(cli, BadQueryFile) {
  write("train.csv", make_1d(10, 1).csv);
  write("grid.csv", "x\n1\n\n  \ninf\n");
  const result r = run("fit --train train.csv --x x --y y --query grid.csv --out pred.csv");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err,
            "attnpool: grid.csv:5:1: column 'x': 'inf' is not finite; the data must be finite\n");
  const result missing = run("fit --train train.csv --x x --y y --query nope.csv --out pred.csv");
  EXPECT_EQ(missing.status, 1);
  EXPECT_EQ(missing.err, "attnpool: nope.csv: cannot open: No such file or directory\n");
  EXPECT_EQ(files(), (std::set<std::string>{"train.csv", "grid.csv"}));
}

TEST_F(cli, SilvermanBandwidthWithoutSpreadIsRefused) {
  write("train.csv", "x,y\n2,1\n2,3\n");
  const result r = run("fit --train train.csv --x x --y y --out pred.csv --bandwidth silverman");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("every training point is equal"), std::string::npos) << r.err;
  EXPECT_EQ(files(), (std::set<std::string>{"train.csv"}));
}

TEST_F(cli, AutoBandwidthWithoutSpreadStillGivesAPositiveH) {
  // Every h fits equally well; leave-one-out selection takes the largest grid point, never 0.
  write("train.csv", "x,y\n2,1\n2,3\n");
  const result r = run("fit --train train.csv --x x --y y --backend cpu");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string prefix = "attnpool: --bandwidth auto: h = ";
  ASSERT_EQ(r.err.rfind(prefix, 0), 0u) << r.err;
  EXPECT_GT(std::strtod(r.err.c_str() + prefix.size(), nullptr), 0.0);
  EXPECT_NE(r.err.find("the minimum is at the end of the grid"), std::string::npos) << r.err;
  const auto rows = read_csv(r.out);
  ASSERT_EQ(rows.size(), 3u);
  for (std::size_t i = 1; i < 3; ++i) EXPECT_EQ(rows[i][1], "2");
}

TEST_F(cli, UnwritableOutputFailsBeforeWork) {
  write("train.csv", make_1d(10, 1).csv);
  const result r = run("fit --train train.csv --x x --y y --out no/such/dir/pred.csv");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err,
            "attnpool: no/such/dir/pred.csv: cannot create a file in 'no/such/dir': No such file "
            "or directory\n");
}

TEST_F(cli, HeatmapSizeLimit) {
  // 4097 x 4097 weights is one row and one column too many; refused before any work.
  std::string big = "x,y\n";
  for (int i = 0; i < 4097; ++i) big += std::to_string(i % 100) + ",1\n";
  write("train.csv", big);
  const result r =
      run("fit --train train.csv --x x --y y --bandwidth 1 --out pred.csv --heatmap w.png");
#if ATTNPOOL_CLI_RENDER
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err,
            "attnpool: --heatmap: 4097 queries x 4097 training points are more weights than the "
            "4096 x 4096 a heatmap may show; use fewer queries (--query)\n");
#else
  EXPECT_EQ(r.status, 2);  // no renderer: --heatmap itself is refused
#endif
  EXPECT_EQ(files(), (std::set<std::string>{"train.csv"}));
}

TEST_F(cli, FailedRunLeavesNoOutput) {
  // A CUDA backend on a machine without one fails inside the library, after the outputs were
  // claimed: their temporaries must be gone and the old file untouched.
  if (attnpool::cuda_available())
    GTEST_SKIP() << "a CUDA device is present; cuda_fused would succeed";
  write("train.csv", make_1d(10, 1).csv);
  write("pred.csv", "old\n");
  const result r = run("fit --train train.csv --x x --y y --backend cuda_fused --out pred.csv");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("attnpool: "), std::string::npos);
  EXPECT_EQ(slurp(dir_ / "pred.csv"), "old\n");
  EXPECT_EQ(files(), (std::set<std::string>{"train.csv", "pred.csv"}));
}

// ---- outputs compared as files, inputs read with bounds -------------------------------------

TEST_F(cli, AnOutputThatIsAnInputIsRefused) {
  write("t.csv", "x,y\n1,2\n2,3\n");
  write("q.csv", "x\n1.5\n");
  fs::create_symlink("t.csv", dir_ / "link.csv");
  fs::create_hard_link(dir_ / "q.csv", dir_ / "hard.csv");
  const std::string fit = "fit --train t.csv --x x --y y --bandwidth 1 --query q.csv ";
  const struct {
    std::string args, message;
  } cases[] = {
      {fit + "--out t.csv", "--out t.csv is the --train t.csv file"},
      {fit + "--out ./sub/../t.csv", "--out ./sub/../t.csv is the --train t.csv file"},
      {fit + "--out link.csv", "--out link.csv is the --train t.csv file"},
      {fit + "--out hard.csv", "--out hard.csv is the --query q.csv file"},
#if ATTNPOOL_CLI_RENDER
      {fit + "--out p.csv --plot link.csv", "--plot link.csv is the --train t.csv file"},
      {fit + "--out p.csv --heatmap q.csv", "--heatmap q.csv is the --query q.csv file"},
#endif
  };
  fs::create_directory(dir_ / "sub");
  for (const auto& c : cases) {
    const result r = run(c.args);
    EXPECT_EQ(r.status, 2) << c.args;
    EXPECT_EQ(r.err.rfind("attnpool: " + c.message + "; an output must not replace an input\n", 0),
              0u)
        << c.args << "\n"
        << r.err;
  }
  // Standard output appended to the training file is an output that is an input too.
  const int status = std::system(("cd '" + dir_.string() + "' && '" ATTNPOOL_CLI_EXE "' " + fit +
                                  ">> t.csv 2>.stderr")
                                     .c_str());
  EXPECT_EQ(WEXITSTATUS(status), 2);
  EXPECT_EQ(slurp(dir_ / ".stderr").rfind("attnpool: standard output is the --train t.csv file", 0),
            0u);
  fs::remove(dir_ / ".stderr");
  EXPECT_EQ(slurp(dir_ / "t.csv"), "x,y\n1,2\n2,3\n");
  EXPECT_EQ(slurp(dir_ / "q.csv"), "x\n1.5\n");
  EXPECT_EQ(files(), (std::set<std::string>{"t.csv", "q.csv", "link.csv", "hard.csv", "sub"}));
}

TEST_F(cli, TwoOutputsThatAreOneFileAreRefused) {
#if ATTNPOOL_CLI_RENDER
  write("t.csv", "x,y\n1,2\n2,3\n");
  fs::create_symlink("a.png", dir_ / "to_a.png");  // dangling: a.png does not exist yet
  fs::create_directory(dir_ / "d");
  fs::create_directory_symlink("d", dir_ / "dlink");
  const std::string fit = "fit --train t.csv --x x --y y --bandwidth 1 ";
  const struct {
    std::string args, message;
  } cases[] = {
      {fit + "--out a.png --plot to_a.png", "--out a.png and --plot to_a.png are the same file"},
      {fit + "--plot d/f.png --heatmap dlink/f.png",
       "--plot d/f.png and --heatmap dlink/f.png are the same file"},
      {fit + "--plot /dev/stdout", "standard output and --plot /dev/stdout are the same file"},
  };
  for (const auto& c : cases) {
    const result r = run(c.args);
    EXPECT_EQ(r.status, 2) << c.args;
    EXPECT_EQ(r.err.rfind("attnpool: " + c.message + "; each output needs its own\n", 0), 0u)
        << c.args << "\n"
        << r.err;
  }
  EXPECT_EQ(files(), (std::set<std::string>{"t.csv", "to_a.png", "d", "dlink"}));
  EXPECT_TRUE(fs::is_empty(dir_ / "d"));
  // The null device is the one file that several outputs may share.
  EXPECT_EQ(run(fit + "--out /dev/null --plot /dev/null --heatmap /dev/null").status, 0);
#else
  GTEST_SKIP() << "needs --plot (ATTNPOOL_RENDER=OFF)";
#endif
}

TEST_F(cli, DanglingLinkLongNameAndDash) {
  write("t.csv", "x,y\n1,2\n2,3\n");
  const std::string fit = "fit --train t.csv --x x --y y --bandwidth 1 ";
  // A dangling link stays a link: the file it names is created.
  fs::create_symlink("real.csv", dir_ / "link.csv");
  ASSERT_EQ(run(fit + "--out link.csv").status, 0);
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(dir_ / "link.csv")));
  EXPECT_TRUE(slurp(dir_ / "real.csv").starts_with("x,y_hat\n"));
  // A 250-byte name is valid (the limit is 255); its temporary name must fit too.
  const std::string long_name = std::string(246, 'n') + ".csv";
  const result r = run(fit + "--out " + long_name);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(dir_ / long_name).starts_with("x,y_hat\n"));
  // "-" is standard output; ./- is a file named "-".
  const result dash = run(fit + "--out -");
  EXPECT_EQ(dash.status, 0) << dash.err;
  EXPECT_TRUE(dash.out.starts_with("x,y_hat\n")) << dash.out;
  EXPECT_EQ(files(), (std::set<std::string>{"t.csv", "link.csv", "real.csv", long_name}));
  EXPECT_EQ(run(fit + "--out ./-").status, 0);
  EXPECT_TRUE(fs::exists(dir_ / "-"));
}

TEST_F(cli, DevicesAreRefusedAsInputs) {
  write("t.csv", "x,y\n1,2\n2,3\n");
  for (const char* dev : {"/dev/zero", "/dev/null"}) {
    const result r = run(std::string("fit --train ") + dev + " --x x --y y --out pred.csv");
    EXPECT_EQ(r.status, 1) << dev;
    EXPECT_EQ(r.err, std::string("attnpool: ") + dev +
                         ": cannot read: it is a character device; expected a regular file (or a "
                         "pipe)\n");
    const result q = run(std::string("fit --train t.csv --x x --y y --query ") + dev);
    EXPECT_EQ(q.status, 1) << dev;
    EXPECT_NE(q.err.find(std::string(dev) + ": cannot read: it is a character device"),
              std::string::npos);
  }
  EXPECT_EQ(files(), (std::set<std::string>{"t.csv"}));
}

// ---- signals, full disks, file-size limits ----------------------------------------------------

// The tool, started by fork and exec in the test directory with chosen signals ignored (as nohup
// and a shell's background job do) and an optional file-size limit; its stdout and stderr go to
// .stdout and .stderr unless `stdout_fd` is given.
pid_t spawn(const fs::path& dir, const std::vector<std::string>& args,
            const std::vector<int>& ignored = {}, rlim_t file_size_limit = RLIM_INFINITY,
            int stdout_fd = -1) {
  std::vector<std::string> argv_storage = {ATTNPOOL_CLI_EXE};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  // The child: only async-signal-safe calls until exec.
  if (::chdir(dir.c_str()) != 0) ::_exit(126);
  for (const int sig : ignored) ::signal(sig, SIG_IGN);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (file_size_limit != RLIM_INFINITY) {
    const rlimit lim{file_size_limit, file_size_limit};
    ::setrlimit(RLIMIT_FSIZE, &lim);
  }
  const int out = stdout_fd >= 0 ? stdout_fd : ::open(".stdout", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int err = ::open(".stderr", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ::dup2(out, 1);
  ::dup2(err, 2);
  ::execv(argv[0], argv.data());
  ::_exit(127);
}

// Waits until the directory holds a file whose name starts with `prefix` (at most 20 s).
bool wait_for_file(const fs::path& dir, const std::string& prefix) {
  for (int i = 0; i < 2000; ++i) {
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().filename().string().starts_with(prefix)) return true;
    }
    ::usleep(10000);
  }
  return false;
}

TEST_F(cli, NoTemporaryIsLeftBehindOnASignal) {
  // The training "file" is a FIFO nobody writes to: the tool has claimed its outputs (their
  // temporaries exist) and waits in open(), where each signal finds it.
  ASSERT_EQ(::mkfifo((dir_ / "train.fifo").c_str(), 0600), 0);
  const std::vector<std::string> args = {"fit",         "--train", "train.fifo", "--x",  "x",
                                         "--y",         "y",       "--bandwidth", "1",   "--out",
                                         "pred.csv"};
  for (const int sig : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGALRM, SIGUSR1, SIGUSR2,
                        SIGXCPU, SIGVTALRM, SIGPROF, SIGRTMIN}) {
    SCOPED_TRACE(std::string("signal ") + std::to_string(sig) + " (" + strsignal(sig) + ")");
    const pid_t pid = spawn(dir_, args);
    ASSERT_GT(pid, 0);
    ASSERT_TRUE(wait_for_file(dir_, ".pred.csv.tmp-"));
    ASSERT_EQ(::kill(pid, sig), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    // The process still ends by the signal (its parent sees why), with the temporary removed.
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == sig) << "status " << status;
    fs::remove(dir_ / ".stdout");
    fs::remove(dir_ / ".stderr");
    EXPECT_EQ(files(), (std::set<std::string>{"train.fifo"}));
  }
}

TEST_F(cli, InheritedIgnoredSignalsStayIgnored) {
  // nohup ignores SIGHUP; a non-interactive shell starts background jobs with SIGINT and SIGQUIT
  // ignored. The tool must not undo that: it survives them and finishes its work.
  ASSERT_EQ(::mkfifo((dir_ / "train.fifo").c_str(), 0600), 0);
  const pid_t pid = spawn(dir_,
                          {"fit", "--train", "train.fifo", "--x", "x", "--y", "y", "--bandwidth",
                           "1", "--out", "pred.csv"},
                          {SIGHUP, SIGINT, SIGQUIT});
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(wait_for_file(dir_, ".pred.csv.tmp-"));
  for (const int sig : {SIGHUP, SIGINT, SIGQUIT}) ASSERT_EQ(::kill(pid, sig), 0);
  ::usleep(100000);
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, WNOHANG), 0) << "the tool died of an ignored signal";
  {
    std::ofstream fifo(dir_ / "train.fifo");  // lets the blocked open() go on
    fifo << "x,y\n1,2\n2,3\n";
  }
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status << ": "
                                                             << slurp(dir_ / ".stderr");
  EXPECT_TRUE(slurp(dir_ / "pred.csv").starts_with("x,y_hat\n"));
  fs::remove(dir_ / ".stdout");
  fs::remove(dir_ / ".stderr");
  EXPECT_EQ(files(), (std::set<std::string>{"train.fifo", "pred.csv"}));
}

TEST_F(cli, FileSizeLimitAndFullDiskAreErrors) {
  // Under a 4 KiB file-size limit the 40 KiB prediction file cannot be written: the tool must
  // say so and remove its temporary, not die of SIGXFSZ and leave 4 KiB of it behind.
  write("train.csv", make_1d(2000, 5).csv);
  write("pred.csv", "old\n");
  const pid_t pid = spawn(dir_,
                          {"fit", "--train", "train.csv", "--x", "x", "--y", "y", "--bandwidth",
                           "0.5", "--backend", "cpu", "--out", "pred.csv"},
                          {}, 4096);
  ASSERT_GT(pid, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << "status " << status;
  EXPECT_EQ(slurp(dir_ / ".stderr"), "attnpool: pred.csv: write failed: File too large\n");
  fs::remove(dir_ / ".stdout");
  fs::remove(dir_ / ".stderr");
  EXPECT_EQ(slurp(dir_ / "pred.csv"), "old\n");
  EXPECT_EQ(files(), (std::set<std::string>{"train.csv", "pred.csv"}));
  // Standard output under the same limit.
  const pid_t to_stdout = spawn(dir_,
                                {"fit", "--train", "train.csv", "--x", "x", "--y", "y",
                                 "--bandwidth", "0.5", "--backend", "cpu"},
                                {}, 4096);
  ASSERT_EQ(::waitpid(to_stdout, &status, 0), to_stdout);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << "status " << status;
  EXPECT_EQ(slurp(dir_ / ".stderr"), "attnpool: standard output: write failed: File too large\n");
  // A full disk (/dev/full), for the CSV and the PNG writers.
  const result full = run("fit --train train.csv --x x --y y --bandwidth 0.5 --out /dev/full");
  EXPECT_EQ(full.status, 1);
  EXPECT_EQ(full.err, "attnpool: /dev/full: write failed: No space left on device\n");
#if ATTNPOOL_CLI_RENDER
  const result png = run("fit --train train.csv --x x --y y --bandwidth 0.5 --out /dev/null "
                         "--plot /dev/full");
  EXPECT_EQ(png.status, 1);
  EXPECT_NE(png.err.find("/dev/full': No space left on device"), std::string::npos) << png.err;
#endif
}

TEST_F(cli, ClosedStandardOutput) {
  // A reader that went away: with SIGPIPE at its default the tool ends by it, as `| head` expects;
  // with SIGPIPE ignored the write fails with EPIPE, which is an error with a message.
  write("train.csv", make_1d(20000, 6).csv);  // about 400 KB of predictions, past a pipe's buffer
  for (const bool ignore : {false, true}) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    ::close(fds[0]);
    const pid_t pid = spawn(dir_,
                            {"fit", "--train", "train.csv", "--x", "x", "--y", "y", "--bandwidth",
                             "0.5", "--backend", "cpu"},
                            ignore ? std::vector<int>{SIGPIPE} : std::vector<int>{}, RLIM_INFINITY,
                            fds[1]);
    ::close(fds[1]);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    if (ignore) {
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << "status " << status;
      EXPECT_EQ(slurp(dir_ / ".stderr"), "attnpool: standard output: write failed: Broken pipe\n");
    } else {
      EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGPIPE) << "status " << status;
    }
  }
}

}  // namespace
