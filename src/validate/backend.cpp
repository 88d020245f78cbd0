#include "src/validate/backend.hpp"

#include <attnpool/cuda.hpp>
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>

#include "src/validate/validate.hpp"

namespace attnpool::detail {
namespace {

bool is_gpu(backend b) {
  return b == backend::cuda_fused || b == backend::cuda_unfused;
}

bool is_known(backend b) {
  switch (b) {
    case backend::automatic:
    case backend::reference:
    case backend::cpu:
    case backend::cuda_fused:
    case backend::cuda_unfused:
      return true;
  }
  return false;
}

[[noreturn]] void unsupported(const backend_needs& n, const char* why) {
  throw invalid_argument(concat(n.fn, ": backend ", to_string(n.requested), why));
}

// The backend itself, before any argument is known.
backend resolve(const backend_needs& n, const capabilities& caps) {
  const backend r = n.requested;
  const bool gpu = caps.cuda_built && caps.devices > 0;
  if (!is_known(r)) throw invalid_argument(concat(n.fn, ": unknown backend ", static_cast<int>(r)));
  switch (n.entry) {
    case entry_point::pool:
    case entry_point::attention_weights:
    case entry_point::average_pool:
      if (r == backend::automatic) return gpu ? backend::cuda_fused : backend::cpu;
      return r;
    case entry_point::learning:
      if (r == backend::automatic)
        return gpu && n.d <= kMaxGpuBackwardDims ? backend::cuda_fused : backend::cpu;
      if (r == backend::cuda_unfused)
        unsupported(n,
                    " is not implemented for the learning API (it has no fused backward "
                    "pass); use backend cuda_fused, cpu or reference");
      return r;
    case entry_point::bandwidth:
      if (r == backend::automatic) return gpu ? backend::cuda_fused : backend::cpu;
      if (r == backend::cuda_unfused)
        unsupported(n,
                    " has no leave-one-out sweep (it is fused by design); use cuda_fused, "
                    "automatic, cpu or reference");
      return r;
    case entry_point::batched:
    case entry_point::partial:
      if (r == backend::automatic) return backend::cpu;
      if (r == backend::reference && n.entry == entry_point::partial)
        unsupported(n, " is not implemented; use backend cpu or cuda_fused");
      if (r == backend::cuda_unfused)
        unsupported(n,
                    " is not implemented (the batched and sharded paths stream keys and never "
                    "store the n x m weights); use backend cuda_fused or cpu");
      return r;
    case entry_point::device_pool:
      if (r == backend::automatic) return backend::cuda_fused;
      ATTNPOOL_EXPECTS(is_gpu(r), n.fn, ": backend must be cuda_fused, cuda_unfused or automatic, ",
                       "got ", to_string(r));
      return r;
    case entry_point::device_fused:
    case entry_point::device_backward:
      ATTNPOOL_EXPECTS(r == backend::automatic || r == backend::cuda_fused, n.fn,
                       ": backend must be cuda_fused or automatic",
                       n.entry == entry_point::device_backward ? " (the fused backward pass)" : "",
                       ", got ", to_string(r));
      return backend::cuda_fused;
  }
  throw invalid_argument(concat(n.fn, ": unknown entry point ", static_cast<int>(n.entry)));
}

// The chosen backend's limits on validated arguments.
void check_limits(const backend_needs& n, backend b) {
  const pool_params& params = *n.params;
  switch (n.entry) {
    case entry_point::pool:
      // The fused CUDA path takes masks (the generic-score instantiations); the unfused one
      // does not.
      if (is_gpu(b)) reject_gpu_params(n.fn, params, n.d, b == backend::cuda_fused);
      return;
    case entry_point::attention_weights:
    case entry_point::batched:
    case entry_point::partial:
      if (is_gpu(b)) reject_gpu_params(n.fn, params, n.d);
      return;
    case entry_point::learning:
      // Checked before any CUDA call, so that the limit reads the same with or without a
      // device (and in a build without CUDA).
      if (b == backend::cuda_fused) check_gpu_backward_dims(n.fn, n.d);
      return;
    case entry_point::average_pool:
    case entry_point::bandwidth:
    case entry_point::device_pool:
    case entry_point::device_fused:
    case entry_point::device_backward:
      // The device entry points check their limits with their arguments (check_pool_args).
      return;
  }
}

}  // namespace

capabilities this_machine() {
#ifdef ATTNPOOL_HAS_CUDA
  return {true, cuda::device_count()};
#else
  return {false, 0};
#endif
}

backend choose_backend(const backend_needs& needs, const capabilities& caps) {
  const backend b = resolve(needs, caps);
  if (needs.params != nullptr) check_limits(needs, b);
  return b;
}

backend choose_backend(const backend_needs& needs) {
  if (needs.requested == backend::automatic) return choose_backend(needs, this_machine());
#ifdef ATTNPOOL_HAS_CUDA
  return choose_backend(needs, capabilities{true, 0});
#else
  return choose_backend(needs, capabilities{false, 0});
#endif
}

}  // namespace attnpool::detail
