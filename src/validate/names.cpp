// The names of the public enums (types.hpp), both ways. Below every other module of src/: the
// checks' messages print them.
#include <attnpool/error.hpp>
#include <attnpool/types.hpp>

#include <string_view>

namespace attnpool {

const char* to_string(backend b) noexcept {
  switch (b) {
    case backend::automatic:
      return "automatic";
    case backend::reference:
      return "reference";
    case backend::cpu:
      return "cpu";
    case backend::cuda_fused:
      return "cuda_fused";
    case backend::cuda_unfused:
      return "cuda_unfused";
  }
  return "unknown";
}

const char* to_string(mask m) noexcept {
  switch (m) {
    case mask::none:
      return "none";
    case mask::leave_one_out:
      return "leave_one_out";
    case mask::valid_length:
      return "valid_length";
  }
  return "unknown";
}

const char* to_string(kernel k) noexcept {
  switch (k) {
    case kernel::gaussian:
      return "gaussian";
    case kernel::laplacian:
      return "laplacian";
    case kernel::epanechnikov:
      return "epanechnikov";
    case kernel::boxcar:
      return "boxcar";
    case kernel::tricube:
      return "tricube";
  }
  return "unknown";
}

kernel parse_kernel(const char* name) {
  ATTNPOOL_EXPECTS(name != nullptr, "parse_kernel: name is null");
  for (kernel k : {kernel::gaussian, kernel::laplacian, kernel::epanechnikov, kernel::boxcar,
                   kernel::tricube}) {
    if (std::string_view(name) == to_string(k)) return k;
  }
  throw invalid_argument(detail::concat(
      "kernel must be one of gaussian, laplacian, epanechnikov, boxcar, tricube; got '", name,
      "'"));
}

backend parse_backend(const char* name) {
  ATTNPOOL_EXPECTS(name != nullptr, "parse_backend: name is null");
  for (backend b : {backend::automatic, backend::reference, backend::cpu, backend::cuda_fused,
                    backend::cuda_unfused}) {
    if (std::string_view(name) == to_string(b)) return b;
  }
  throw invalid_argument(detail::concat(
      "backend must be one of automatic, reference, cpu, cuda_fused, cuda_unfused; got '", name,
      "'"));
}

}  // namespace attnpool
