// The one backend choice: every public entry point names itself and its needs, and this decides
// which backend runs it (automatic included) or throws one invalid_argument naming the entry
// point, the requested backend and what is not supported there.
#pragma once

#include <attnpool/types.hpp>

#include <cstddef>

namespace attnpool::detail {

// The entry points, grouped by the backends they implement.
enum class entry_point {
  pool,               // pool(): every backend; automatic = cuda_fused where a device exists
  attention_weights,  // attention_weights(): as pool, no masks on the GPU
  average_pool,       // average_pool(): as pool, no limits
  learning,           // pool_backward, train_parametric: no cuda_unfused (no fused backward)
  bandwidth,          // loo_cv_error, select_bandwidth: no cuda_unfused (no sweep)
  batched,            // pool_batched: cpu (= automatic), reference, cuda_fused
  partial,            // pool_partial: cpu (= automatic), cuda_fused
  device_pool,        // cuda::pool, cuda::pool_workspace_size, cuda::attention_weights
  device_fused,       // cuda::pool_batched, cuda::pool_partial, pool_sharded: cuda_fused only
  device_backward,    // cuda::pool_backward: cuda_fused only (the fused backward pass)
};

// What a call needs from its backend. The choice itself reads `requested` (and `d` for the
// learning API's automatic); once the call's arguments are validated, the caller passes
// `params` too, and the chosen backend's limits on them are checked (masks, nearest, an
// anisotropic bandwidth's d and the GPU backward's d). Calling again with the chosen backend
// and `params` returns that backend or throws for a limit: the rules stay in one place while
// entry points keep their order of checks (shapes before limits, early returns for n = 0).
struct backend_needs {
  const char* fn = "";
  entry_point entry = entry_point::pool;
  backend requested = backend::automatic;
  std::size_t d = 0;
  const pool_params* params = nullptr;
};

// The build's and machine's capabilities. `devices` is read only to resolve automatic.
struct capabilities {
  bool cuda_built = false;
  int devices = 0;
};

// This build and this machine (counts the devices: initialises the CUDA runtime).
capabilities this_machine();

// The backend for `needs` on `caps` (never automatic), or invalid_argument.
backend choose_backend(const backend_needs& needs, const capabilities& caps);
// The same on this build and machine; the devices are counted only when automatic asks.
backend choose_backend(const backend_needs& needs);

}  // namespace attnpool::detail
