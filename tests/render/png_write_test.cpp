// save_png when the write fails part-way: an error naming the file, and no truncated PNG left.
#include <attnpool/render.hpp>

#include <png_decode.hpp>

#include <gtest/gtest.h>

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

namespace ar = attnpool::render;
namespace fs = std::filesystem;

namespace {

// Random pixels do not compress: the PNG is about 4 bytes a pixel.
ar::image noise_image(int width, int height, unsigned seed) {
  std::printf("seed %u\n", seed);
  std::mt19937 rng(seed);
  ar::image img(width, height);
  ar::canvas_view v = img.view();
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width * 4; ++x)
      v.pixels[y * v.stride + x] = static_cast<std::uint8_t>(rng());
  return img;
}

// A fresh directory, removed with its contents at the end of the test.
struct scratch_dir {
  fs::path path =
      fs::temp_directory_path() / ("attnpool-png-write-" + std::to_string(::getpid()) + "-" +
                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
  scratch_dir() {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~scratch_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// RLIMIT_FSIZE lowered to `bytes` with SIGXFSZ ignored, so that a write past it fails with
// EFBIG instead of killing the process; both restored at scope exit.
class file_size_limit {
 public:
  explicit file_size_limit(rlim_t bytes) {
    EXPECT_EQ(::getrlimit(RLIMIT_FSIZE, &saved_), 0);
    rlimit lowered = saved_;
    lowered.rlim_cur = bytes;
    EXPECT_EQ(::setrlimit(RLIMIT_FSIZE, &lowered), 0) << std::strerror(errno);
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
  }
  file_size_limit(const file_size_limit&) = delete;
  file_size_limit& operator=(const file_size_limit&) = delete;
  ~file_size_limit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit saved_{};
  void (*old_handler_)(int) = SIG_DFL;
};

// Runs save_png, which must throw attnpool::error; returns its message.
std::string failed_save(const ar::image& img, const fs::path& path) {
  try {
    ar::save_png(img, path);
  } catch (const attnpool::error& e) {
    return e.what();
  }
  ADD_FAILURE() << "save_png(" << path << ") did not throw";
  return {};
}

// How save_png names a file in its message. Appends rather than operator+ on a temporary,
// which GCC 12's -Wrestrict misreads at -O3.
std::string quoted(const fs::path& path) {
  std::string s = "'";
  s += path.string();
  s += '\'';
  return s;
}

constexpr rlim_t kLimit = 4096;  // bytes; the 64 x 64 noise PNG is about 16 KiB

}  // namespace

TEST(render_png_write, FullDeviceIsAnErrorNamingTheFile) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  const std::string what = failed_save(noise_image(64, 64, 11), "/dev/full");
  EXPECT_NE(what.find(quoted("/dev/full")), std::string::npos) << what;
  EXPECT_NE(what.find(std::strerror(ENOSPC)), std::string::npos) << what;
  EXPECT_TRUE(fs::is_character_file("/dev/full")) << "a device is reported, never removed";
}

TEST(render_png_write, FileSizeLimitLeavesNoPartialFile) {
  scratch_dir dir;
  const fs::path fresh = dir.path / "fresh.png";
  const fs::path existing = dir.path / "existing.png";
  std::ofstream(existing) << "the previous contents";
  const ar::image img = noise_image(64, 64, 12);
  std::string fresh_what, existing_what;
  {
    file_size_limit limit(kLimit);
    fresh_what = failed_save(img, fresh);
    existing_what = failed_save(img, existing);
  }
  EXPECT_NE(fresh_what.find(quoted(fresh)), std::string::npos) << fresh_what;
  EXPECT_NE(fresh_what.find(std::strerror(EFBIG)), std::string::npos) << fresh_what;
  EXPECT_FALSE(fs::exists(fresh)) << "a truncated PNG was left behind";
  EXPECT_NE(existing_what.find(quoted(existing)), std::string::npos) << existing_what;
  EXPECT_FALSE(fs::exists(existing)) << "a truncated PNG was left behind";
  EXPECT_TRUE(fs::is_empty(dir.path));

  // Without the limit the same image is written whole.
  ar::save_png(img, fresh);
  const auto back = render_test::load_png(fresh);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->at(63, 63), img.at(63, 63));
}

TEST(render_png_write, FailedWriteThroughALinkKeepsTheLinkAndEmptiesTheTarget) {
  scratch_dir dir;
  const fs::path target = dir.path / "target.png";
  const fs::path link = dir.path / "link.png";
  std::ofstream(target) << "the previous contents";
  fs::create_symlink(target.filename(), link);
  std::string what;
  {
    file_size_limit limit(kLimit);
    what = failed_save(noise_image(64, 64, 13), link);
  }
  EXPECT_NE(what.find(quoted(link)), std::string::npos) << what;
  EXPECT_TRUE(fs::is_symlink(link));
  ASSERT_TRUE(fs::exists(target));
  EXPECT_EQ(fs::file_size(target), 0u) << "a truncated PNG was left in the link's target";
}
