/// \file
/// The one error model of attnpool: every failure is an exception derived from attnpool::error.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace attnpool {

/// Base class of every exception attnpool throws.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A caller passed an argument that violates a documented precondition. The message names the
/// argument and the offending value, e.g. "pool: bandwidth must be finite and > 0, got -1".
class invalid_argument : public error {
 public:
  using error::error;
};

/// A CUDA runtime or cuBLAS call failed, or the library was built without CUDA and a CUDA
/// backend was requested. The message carries file:line, the call and the status name.
class cuda_error : public error {
 public:
  using error::error;
};

namespace detail {

/// Concatenates the streamable arguments into one message string.
template <class... Parts>
[[nodiscard]] std::string concat(const Parts&... parts) {
  std::ostringstream os;
  os.precision(9);
  (os << ... << parts);
  return os.str();
}

}  // namespace detail
}  // namespace attnpool

/// Guards a public boundary: throws attnpool::invalid_argument with the concatenated message
/// when `cond` is false. Usage: ATTNPOOL_EXPECTS(h > 0, "bandwidth must be > 0, got ", h);
#define ATTNPOOL_EXPECTS(cond, ...)                                                 \
  do {                                                                              \
    if (!(cond)) throw ::attnpool::invalid_argument(::attnpool::detail::concat(__VA_ARGS__)); \
  } while (0)
