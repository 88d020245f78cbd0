// cuBLAS loaded on first use (src/cuda/cublas_library.hpp): the library of this build opens and
// has every entry point the unfused path calls, and one that cannot be loaded is a cuda_error
// that says what was tried. Needs the CUDA Toolkit's cuBLAS, not a GPU: dlopen touches no device.
#include <attnpool/error.hpp>

#include "src/cuda/cublas_library.hpp"

#include <gtest/gtest.h>

#include <array>
#include <string>

namespace attnpool::cuda::detail {
namespace {

std::string load_error(std::span<const char* const> names) {
  try {
    static_cast<void>(load_cublas(names));
  } catch (const cuda_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "load_cublas did not throw cuda_error";
  return {};
}

TEST(test_cuda_cublas_library, ThisBuildsCublasLoadsWithEveryEntryPoint) {
  const cublas_library& api = cublas();
  EXPECT_NE(api.create, nullptr);
  EXPECT_NE(api.destroy, nullptr);
  EXPECT_NE(api.set_math_mode, nullptr);
  EXPECT_NE(api.set_pointer_mode, nullptr);
  EXPECT_NE(api.set_stream, nullptr);
  EXPECT_NE(api.set_workspace, nullptr);
  EXPECT_NE(api.sgemm_64, nullptr);
  ASSERT_NE(api.get_status_name, nullptr);
  ASSERT_NE(api.get_status_string, nullptr);
  EXPECT_STREQ(api.get_status_name(CUBLAS_STATUS_NOT_INITIALIZED), "CUBLAS_STATUS_NOT_INITIALIZED");
  EXPECT_EQ(&cublas(), &api) << "loaded once";
}

TEST(test_cuda_cublas_library, MissingLibraryIsACudaErrorNamingEachTried) {
  const std::array names{"libattnpool-no-such-cublas.so.99", "/nonexistent/libcublas.so"};
  const std::string what = load_error(names);
  EXPECT_NE(what.find("cannot load cuBLAS"), std::string::npos) << what;
  EXPECT_NE(what.find(names[0]), std::string::npos) << what;
  EXPECT_NE(what.find(names[1]), std::string::npos) << what;
  EXPECT_NE(what.find("LD_LIBRARY_PATH"), std::string::npos) << what;
}

TEST(test_cuda_cublas_library, LibraryWithoutTheEntryPointsIsACudaErrorNamingOne) {
  // Any shared library that is not cuBLAS: the C library every process has mapped.
  const std::array names{"libc.so.6"};
  const std::string what = load_error(names);
  EXPECT_NE(what.find("libc.so.6 lacks cublasCreate_v2"), std::string::npos) << what;
}

}  // namespace
}  // namespace attnpool::cuda::detail
