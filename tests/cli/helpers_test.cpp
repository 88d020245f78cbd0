// The CLI's helpers: Silverman's bandwidth, chunked pooling, the progress bar, and outputs that
// appear only when complete.
#include <bandwidth.hpp>
#include <pending_file.hpp>
#include <progress.hpp>
#include <table.hpp>

#include <test_support.hpp>

#include <attnpool/pool.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using attnpool::cli::numeric_table;

numeric_table columns(std::size_t rows, std::size_t cols, std::vector<float> v) {
  numeric_table t;
  for (std::size_t j = 0; j < cols; ++j) t.names.push_back(std::to_string(j));
  t.rows = rows;
  t.values = std::move(v);
  return t;
}

// ---- Silverman's rule -----------------------------------------------------------------------

TEST(cli_bandwidth, SilvermanOneDimension) {
  // x = 1..5: mean 3, sample variance 2.5; h = sqrt(2.5) * (4 / (3 * 5))^(1/5).
  const auto c = attnpool::cli::silverman_bandwidth(columns(5, 1, {1, 2, 3, 4, 5}), "t.csv");
  EXPECT_DOUBLE_EQ(c.sigma, std::sqrt(2.5));
  EXPECT_DOUBLE_EQ(c.h, std::sqrt(2.5) * std::pow(4.0 / 15.0, 0.2));
  // The textbook form for d = 1: 1.06 sigma n^(-1/5) ((4/3)^(1/5) = 1.0592...).
  EXPECT_NEAR(c.h, 1.06 * c.sigma * std::pow(5.0, -0.2), 1e-3 * c.h);
  EXPECT_EQ(c.n, 5u);
  EXPECT_EQ(c.d, 1u);
}

TEST(cli_bandwidth, SilvermanTwoDimensionsAveragesTheSigmas) {
  // Column 0 = 0, 2, 4, 6 (sample sd sqrt(20/3)); column 1 = half of it (half the sd).
  const auto c =
      attnpool::cli::silverman_bandwidth(columns(4, 2, {0, 0, 2, 1, 4, 2, 6, 3}), "t.csv");
  const double s0 = std::sqrt(20.0 / 3.0);
  EXPECT_DOUBLE_EQ(c.sigma, (s0 + s0 / 2) / 2);
  EXPECT_DOUBLE_EQ(c.h, c.sigma * std::pow(4.0 / (4.0 * 4.0), 1.0 / 6.0));
}

TEST(cli_bandwidth, SilvermanNeedsSpread) {
  EXPECT_THROW(
      {
        try {
          (void)attnpool::cli::silverman_bandwidth(columns(1, 1, {3}), "t.csv");
        } catch (const attnpool::cli::input_error& e) {
          EXPECT_STREQ(e.what(),
                       "t.csv: --bandwidth silverman needs at least 2 training points, got 1; pass "
                       "--bandwidth H");
          throw;
        }
      },
      attnpool::cli::input_error);
  EXPECT_THROW((void)attnpool::cli::silverman_bandwidth(columns(3, 1, {2, 2, 2}), "t.csv"),
               attnpool::cli::input_error);
}

// ---- chunked pooling ------------------------------------------------------------------------

TEST(cli_chunks, ChunkedEqualsOneCall) {
  // Rows are independent, so any chunking gives bit-identical rows on the CPU engine; the
  // reference is compared within the project's float32 bound as well.
  for (const std::size_t n : {1u, 7u, 129u, 4097u}) {
    for (const std::size_t chunk : {1u, 3u, 1024u, 5000u}) {
      if (n > 200 && chunk < 1024) continue;  // 4097 single-row calls add time, not coverage
      const auto p = attnpool::test::make_problem(n, 57, 2, 3, attnpool::test::fresh_seed());
      SCOPED_TRACE(attnpool::test::describe(p, 0.3) + " chunk=" + std::to_string(chunk));
      attnpool::options opts;
      opts.backend = attnpool::backend::cpu;
      const attnpool::pool_params params{.bandwidth = 0.3};
      std::vector<float> whole(n * 3, -1.0f), pieces(n * 3, -2.0f);
      attnpool::pool(p.queries(), p.keys(), p.values(), {whole.data(), n, 3}, params, opts);
      std::vector<std::size_t> progress;
      attnpool::cli::pool_in_chunks(p.queries(), p.keys(), p.values(), {pieces.data(), n, 3},
                                    params, opts, chunk,
                                    [&](std::size_t done) { progress.push_back(done); });
      EXPECT_EQ(pieces, whole);
      ASSERT_FALSE(progress.empty());
      EXPECT_EQ(progress.back(), n);
      EXPECT_EQ(progress.size(), (n + chunk - 1) / chunk);
      const auto ref = attnpool::reference::pool(p.queries(), p.keys(), p.values(), params);
      for (std::size_t i = 0; i < n * 3; ++i) {
        ASSERT_LE(std::abs(pieces[i] - ref.out[i]), attnpool::test::tolerance_for(ref, i, 2))
            << "element " << i;
      }
    }
  }
}

TEST(cli_chunks, ChunkSizes) {
  using attnpool::cli::chunk_rows_for;
  EXPECT_EQ(chunk_rows_for(5000, false), 5000u);  // no bar: one call
  EXPECT_EQ(chunk_rows_for(1, true), 1u);
  EXPECT_EQ(chunk_rows_for(500, true), 500u);        // small runs: one call
  EXPECT_EQ(chunk_rows_for(50000, true), 1024u);     // at least 1024 rows per call
  EXPECT_EQ(chunk_rows_for(1000000, true), 10000u);  // ~1% of the rows
  EXPECT_EQ(chunk_rows_for(0, true), 1u);
}

// ---- progress bar -----------------------------------------------------------------------------

std::string drain(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  for (int c; (c = std::fgetc(f)) != EOF;) s += static_cast<char>(c);
  return s;
}

TEST(cli_progress, SilentWhenDisabledOrShort) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    attnpool::cli::progress_bar off(f, false, std::chrono::seconds(0));
    off.update(5, 10);
    off.finish();
    attnpool::cli::progress_bar short_run(f, true, std::chrono::hours(1));
    short_run.update(5, 10);
    short_run.finish();
    EXPECT_FALSE(short_run.drawn());
  }
  EXPECT_EQ(drain(f), "");
  std::fclose(f);
}

TEST(cli_progress, DrawsAfterTheDelay) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  attnpool::cli::progress_bar bar(f, true, std::chrono::seconds(0));
  bar.update(5, 10);
  bar.update(10, 10);
  bar.finish();
  const std::string s = drain(f);
  EXPECT_NE(s.find("\rattnpool: [###############...............]  50%  5/10 rows"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("[##############################] 100%  10/10 rows"), std::string::npos) << s;
  EXPECT_EQ(s.back(), '\n');
  std::fclose(f);
}

// ---- pending_file -----------------------------------------------------------------------------

class cli_pending_file : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("attnpool-cli-pending-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::size_t entries() const {
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir_), {}));
  }
  fs::path dir_;
};

TEST_F(cli_pending_file, CommitRenamesIntoPlace) {
  const fs::path dest = dir_ / "out.csv";
  std::ofstream(dest) << "old";
  {
    attnpool::cli::pending_file f(dest);
    EXPECT_EQ(f.temp_path().parent_path(), dir_);
    EXPECT_TRUE(fs::exists(f.temp_path()));
    std::ofstream(f.temp_path()) << "new";
    std::ifstream before(dest);
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(before), {}), "old");
    f.commit();
  }
  std::ifstream after(dest);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(after), {}), "new");
  EXPECT_EQ(entries(), 1u);
  // A new file gets 0666 minus the umask, like any file the user's programs create.
  const mode_t mask = ::umask(022);
  ::umask(mask);
  struct stat st {};
  ASSERT_EQ(::stat(dest.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0666u & ~mask);
}

TEST_F(cli_pending_file, ReplacingKeepsTheModeAndLinks) {
  const fs::path real = dir_ / "real.csv", link = dir_ / "link.csv";
  std::ofstream(real) << "old";
  fs::permissions(real, fs::perms::owner_read | fs::perms::owner_write);
  fs::create_symlink("real.csv", link);
  {
    attnpool::cli::pending_file f(link);
    EXPECT_EQ(f.temp_path().parent_path(), dir_);
    std::ofstream(f.temp_path()) << "new";
    f.commit();
  }
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(link)));
  std::ifstream after(real);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(after), {}), "new");
  EXPECT_EQ(fs::status(real).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(entries(), 2u);
}

TEST_F(cli_pending_file, DevicesAndPipesAreWrittenInPlace) {
  // Renaming over /dev/null would replace the device node; a FIFO stands in for it here, so
  // that a regression damages only the test directory.
  const fs::path fifo = dir_ / "pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::string received;
  std::thread reader([&] {
    std::ifstream in(fifo);
    received.assign(std::istreambuf_iterator<char>(in), {});
  });
  {
    attnpool::cli::pending_file f(fifo);
    EXPECT_EQ(f.temp_path(), fifo);
    std::ofstream(f.temp_path()) << "streamed";
    f.commit();
  }
  reader.join();
  EXPECT_EQ(received, "streamed");
  EXPECT_TRUE(fs::is_fifo(fifo));
  EXPECT_EQ(entries(), 1u);
  {
    attnpool::cli::pending_file abandoned(fifo);  // not committed: must not unlink the pipe
  }
  EXPECT_TRUE(fs::is_fifo(fifo));
}

TEST_F(cli_pending_file, AbandonedFilesDisappear) {
  const fs::path dest = dir_ / "out.png";
  {
    attnpool::cli::pending_file f(dest);
    std::ofstream(f.temp_path()) << "half";
  }
  EXPECT_EQ(entries(), 0u);
  EXPECT_FALSE(fs::exists(dest));
}

TEST_F(cli_pending_file, UnwritablePlacesFailEarly) {
  EXPECT_THROW(attnpool::cli::pending_file(dir_ / "no" / "such" / "dir.csv"),
               attnpool::cli::output_error);
  try {
    attnpool::cli::pending_file f(dir_);
    FAIL() << "no error";
  } catch (const attnpool::cli::output_error& e) {
    EXPECT_EQ(std::string(e.what()), dir_.string() + ": is a directory; expected a file name");
  }
  EXPECT_EQ(entries(), 0u);
}

TEST_F(cli_pending_file, DanglingLinksStayLinksAndLongNamesFit) {
  const fs::path link = dir_ / "link.csv";
  fs::create_symlink("sub/target.csv", link);
  fs::create_directory(dir_ / "sub");
  {
    attnpool::cli::pending_file f(link);
    EXPECT_EQ(f.temp_path().parent_path(), dir_ / "sub");
    std::ofstream(f.temp_path()) << "new";
    f.commit();
  }
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(link)));
  std::ifstream after(dir_ / "sub" / "target.csv");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(after), {}), "new");
  // 255 bytes is the longest name; its temporary is shortened, never refused. A cut never
  // splits a UTF-8 character (here two-byte ones).
  for (const std::string& name : {std::string(255, 'n'), std::string(127, 'n') + [] {
         std::string s;
         for (int i = 0; i < 64; ++i) s += "\xc3\xa9";
         return s;
       }()}) {
    attnpool::cli::pending_file f(dir_ / name);
    const std::string temp = f.temp_path().filename().string();
    EXPECT_LE(temp.size(), 255u);
    EXPECT_TRUE(fs::exists(f.temp_path()));
    EXPECT_NE(static_cast<unsigned char>(temp[temp.find(".tmp-") - 1]), 0xc3u) << temp;
    std::ofstream(f.temp_path()) << "long";
    f.commit();
    EXPECT_TRUE(fs::exists(dir_ / name));
  }
}

TEST_F(cli_pending_file, IdentityIsTheFileNotTheName) {
  using attnpool::cli::identify;
  std::ofstream(dir_ / "a") << "a";
  std::ofstream(dir_ / "b") << "b";
  fs::create_symlink("a", dir_ / "soft");
  fs::create_hard_link(dir_ / "a", dir_ / "hard");
  fs::create_symlink("soft", dir_ / "soft2");
  fs::create_symlink("new", dir_ / "dangling");
  const auto id = [&](const fs::path& p) { return identify(p); };
  ASSERT_TRUE(id(dir_ / "a"));
  EXPECT_EQ(id(dir_ / "a"), id(dir_ / "soft"));
  EXPECT_EQ(id(dir_ / "a"), id(dir_ / "soft2"));
  EXPECT_EQ(id(dir_ / "a"), id(dir_ / "hard"));
  fs::create_directory(dir_ / "x");
  EXPECT_EQ(id(dir_ / "a"), id(dir_ / "." / "x" / ".." / "a"));
  EXPECT_NE(id(dir_ / "a"), id(dir_ / "b"));
  // Files that do not exist yet: their directory and name.
  ASSERT_TRUE(id(dir_ / "new"));
  EXPECT_EQ(id(dir_ / "new"), id(dir_ / "dangling"));
  EXPECT_NE(id(dir_ / "new"), id(dir_ / "other"));
  EXPECT_FALSE(id(dir_ / "no" / "dir"));
  fs::create_symlink("loop", dir_ / "loop");
  EXPECT_THROW((void)attnpool::cli::resolve_links(dir_ / "loop"), attnpool::cli::output_error);
  EXPECT_FALSE(id(dir_ / "loop"));
}

}  // namespace
