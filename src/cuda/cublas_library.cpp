#include "src/cuda/cublas_library.hpp"

#include <attnpool/error.hpp>

#include <dlfcn.h>

#include <array>
#include <string>

#define ATTNPOOL_STR_(x) #x
#define ATTNPOOL_STR(x) ATTNPOOL_STR_(x)

namespace attnpool::cuda::detail {
namespace {

constexpr const char* kSoname = "libcublas.so." ATTNPOOL_STR(CUBLAS_VER_MAJOR);

// Resolves `name` into `fn`, a function pointer of the declared type.
template <class Fn>
void resolve(void* lib, const char* path, const char* name, Fn& fn) {
  dlerror();
  void* sym = dlsym(lib, name);
  if (sym == nullptr) {
    const char* why = dlerror();
    throw cuda_error(::attnpool::detail::concat("cuBLAS: ", path, " lacks ", name, " (",
                                                why != nullptr ? why : "null symbol", ")"));
  }
  fn = reinterpret_cast<Fn>(sym);
}

}  // namespace

cublas_library load_cublas(std::span<const char* const> names) {
  std::string tried;
  for (const char* path : names) {
    // RTLD_LOCAL: cuBLAS's symbols stay out of the global namespace, where they could bind
    // another library's references. Never closed: handles are destroyed at thread exit.
    void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* why = dlerror();
      tried += ::attnpool::detail::concat(tried.empty() ? "" : "; ", why != nullptr ? why : path);
      continue;
    }
    cublas_library api;
    resolve(lib, path, "cublasCreate_v2", api.create);
    resolve(lib, path, "cublasDestroy_v2", api.destroy);
    resolve(lib, path, "cublasSetMathMode", api.set_math_mode);
    resolve(lib, path, "cublasSetPointerMode_v2", api.set_pointer_mode);
    resolve(lib, path, "cublasSetStream_v2", api.set_stream);
    resolve(lib, path, "cublasSetWorkspace_v2", api.set_workspace);
    resolve(lib, path, "cublasSgemm_v2_64", api.sgemm_64);
    resolve(lib, path, "cublasGetStatusName", api.get_status_name);
    resolve(lib, path, "cublasGetStatusString", api.get_status_string);
    return api;
  }
  throw cuda_error(::attnpool::detail::concat(
      "cannot load cuBLAS, which the unfused GPU path (and attention_weights on the GPU) "
      "needs: ",
      tried.empty() ? "no library name given" : tried,
      "; install the CUDA Toolkit's cuBLAS or put its directory on LD_LIBRARY_PATH"));
}

const cublas_library& cublas() {
  static const cublas_library api = [] {
    const std::array names{kSoname,
#ifdef ATTNPOOL_CUBLAS_TOOLKIT_PATH
                           ATTNPOOL_CUBLAS_TOOLKIT_PATH,
#endif
                           "libcublas.so"};
    return load_cublas(names);
  }();
  return api;
}

}  // namespace attnpool::cuda::detail
