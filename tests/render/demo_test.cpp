// attnpool-demo end to end: it runs, writes nine decodable PNGs of the expected sizes, and
// rejects bad arguments with exit status 2.
#include <png_decode.hpp>

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace fs = std::filesystem;

namespace {

int run_demo(const std::string& args) {
  const std::string cmd = std::string("'") + ATTNPOOL_DEMO_EXE + "' " + args + " >/dev/null 2>&1";
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

fs::path fresh_dir(const std::string& name) {
  const fs::path dir =
      fs::temp_directory_path() / ("attnpool-demo-test-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir;
}

}  // namespace

TEST(render_demo, WritesTheNineFigures) {
  const fs::path dir = fresh_dir("ok");
  ASSERT_EQ(run_demo("--out '" + dir.string() + "' --seed 7 --backend cpu"), 0);
  const struct {
    const char* file;
    int w, h;
  } expected[] = {{"attention_tokens.png", 1000, 1000},
                  {"data.png", 640, 480},
                  {"average_pooling.png", 640, 480},
                  {"nadaraya_watson.png", 640, 480},
                  {"nadaraya_watson_weights.png", 1000, 1000},
                  {"parametric_fit.png", 640, 480},
                  {"parametric_weights.png", 640, 480},
                  {"loss.png", 640, 480},
                  {"bandwidth_cv.png", 640, 480}};
  for (const auto& e : expected) {
    const auto img = render_test::load_png(dir / e.file);
    ASSERT_TRUE(img.has_value()) << e.file << " missing or not a PNG";
    EXPECT_EQ(img->width(), e.w) << e.file;
    EXPECT_EQ(img->height(), e.h) << e.file;
  }
  // Nothing else: exactly the nine figures.
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, std::size(expected));
  fs::remove_all(dir);
}

TEST(render_demo, RejectsBadArguments) {
  const fs::path dir = fresh_dir("bad");
  EXPECT_EQ(run_demo("--out '" + dir.string() + "' --frobnicate"), 2);
  EXPECT_EQ(run_demo("--out '" + dir.string() + "' --seed -3"), 2);
  EXPECT_EQ(run_demo("--out '" + dir.string() + "' --seed 12x"), 2);
  EXPECT_EQ(run_demo("--out '" + dir.string() + "' --backend gpu"), 2);
  EXPECT_EQ(run_demo("--seed 1"), 2);  // --out is required
  // --out under a regular file cannot be created.
  const fs::path file = fresh_dir("file");
  std::ofstream(file) << "x";
  EXPECT_EQ(run_demo("--out '" + (file / "sub").string() + "'"), 2);
  fs::remove(file);
  fs::remove_all(dir);
}
