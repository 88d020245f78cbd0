// Internals of the CUDA host side shared by src/cuda/*.cpp: the knobs that the public API does
// not expose (the GPU tests force split-K on and off through fused_tuning), the kernel arguments
// of one problem, host <-> device copies, the stream of the host-memory entry points and the
// device-side checks. Host-only (CUDA runtime headers).
#pragma once

#include <attnpool/types.hpp>

#include "kernels/common/cuda_check.hpp"
#include "kernels/fused/params.hpp"

#include <cuda_runtime_api.h>

#include <cstddef>

namespace attnpool::cuda::detail {

/// Tuning overrides of the fused path. forced_splits: 0 = heuristic, 1 = split-K off,
/// k > 1 = k key ranges (clamped so that every range holds a key).
struct fused_tuning {
  int forced_splits = 0;
};

/// Bytes of workspace the fused path needs, including the check_finite scan slot.
/// `params` matters through uses_generic_score (the plan of the generic-score path differs) and
/// mask::valid_length (a device copy of valid_lens).
std::size_t fused_workspace_size(std::size_t n, std::size_t m, std::size_t d, std::size_t dv,
                                 const fused_tuning& tuning, const pool_params& params = {});
/// The number of key ranges the fused path will use on the current device.
int fused_splits(std::size_t n, std::size_t m, std::size_t d, std::size_t dv,
                 const fused_tuning& tuning, const pool_params& params = {});
/// cuda::pool on the fused path with explicit tuning. Same contract as cuda::pool.
void fused_pool(const_view q, const_view k, const_view v, mutable_view out,
                const pool_params& params, const options& opts, const fused_tuning& tuning);

/// The unfused (cuBLAS) path; same contracts as cuda::pool / cuda::attention_weights.
std::size_t unfused_pool_workspace_size(std::size_t n, std::size_t m, std::size_t d);
std::size_t unfused_weights_workspace_size(std::size_t n, std::size_t m, std::size_t d);
void unfused_pool(const char* fn, const_view q, const_view k, const_view v, mutable_view out,
                  const pool_params& params, const options& opts);
void unfused_weights(const char* fn, const_view q, const_view k, mutable_view w,
                     const pool_params& params, const options& opts);

// ---- shared helpers (src/cuda/pool.cpp) ---------------------------------------------------------

/// Bytes at the start of a workspace reserved for the check_finite scan (kernels::input_scan).
inline constexpr std::size_t kScanBytes = 256;

/// Multiprocessor count of the current device. Throws cuda_error without a device.
int current_sm_count();

/// The byte `offset` into opts.workspace (validated by check_workspace).
inline std::byte* ws_at(const options& opts, std::size_t offset) {
  return static_cast<std::byte*>(opts.workspace) + offset;
}

/// Throws invalid_argument unless opts.workspace holds `required` bytes, 256-byte aligned.
void check_workspace(const char* fn, const options& opts, std::size_t required);

/// opts.check_finite on device data: scans q, k and (when v.data is set) v into the scan slot
/// at `scan_slot`, synchronises opts.stream and throws invalid_argument with the same words as
/// the host checks (src/validate.cpp) when an input is non-finite or too large for float scores,
/// and when values are too large for a sum over `terms` keys (check_value_headroom: the host
/// entry points scale such values, these cannot).
void check_inputs_on_device(const char* fn, const_view q, const_view k, const_view v,
                            const pool_params& params, std::size_t terms, void* scan_slot,
                            stream_t stream);

/// The float constant of gaussian_log2_score for a validated bandwidth.
float neg_log2_scale(const pool_params& params);

/// Whether a call runs the generic-score instantiations (a non-Gaussian kernel, an anisotropic
/// bandwidth with d >= 2, or a mask unless kernels::fused_masks()) instead of the Gaussian fast
/// path.
bool uses_generic_score(const pool_params& params);

/// Workspace bytes for a device copy of params.valid_lens (n size_t, 256-byte aligned); 0
/// unless mask::valid_length.
std::size_t valid_lens_bytes(const char* fn, std::size_t n, const pool_params& params);

/// Enqueues the copy of params.valid_lens (host memory, n counts) to `dst` (device) on
/// `stream`; no-op unless mask::valid_length. The host span is consumed before it returns.
void upload_valid_lens(const pool_params& params, std::size_t n, void* dst, stream_t stream);

/// The kernel as the GPU code takes it: the functor constant (detail::kernel_constant), and for
/// an anisotropic bandwidth (d >= 2, validated <= kMaxGpuAnisotropicDims) the per-dimension
/// weights 1 / h_c^2 with h = 1 in the functor.
struct gpu_kernel {
  kernel kind = kernel::gaussian;
  float constant = 0.0f;
  bool weighted = false;
  float dim_weights[kMaxGpuAnisotropicDims] = {};
};
gpu_kernel gpu_kernel_for(const pool_params& params);

/// Whether a call must look for empty rows afterwards (a compact kernel with
/// empty_support::error): it then needs the workspace's scan slot, and synchronises.
bool needs_empty_check(const pool_params& params);

/// empty_support::error on the GPU: the kernels write NaN for a row with no key in a compact
/// support; this scans `result` (device memory, n x cols) for the first non-finite element,
/// synchronises `stream` and throws invalid_argument naming its row. No-op unless
/// needs_empty_check(params).
void check_empty_rows_on_device(const char* fn, const pool_params& params, const_view result,
                                void* scan_slot, stream_t stream);

// ---- kernel arguments and copies (pool.cpp) ----------------------------------------------

/// The fused kernel's arguments for one validated problem (pointers, strides, sizes, the score
/// constant), and in `generic` the generic-score path's extras (read only if
/// uses_generic_score(params)).
kernels::fused_args fused_args_for(const_view q, const_view k, const_view v, mutable_view out,
                                   const pool_params& params, kernels::generic_score_args& generic);

/// Host rows -> dense device rows (ld = cols), enqueued on `stream`; pads are never read.
device_buffer<float> upload(const_view a, const char* what, stream_t stream);
/// Dense device rows (ld = a.cols) -> host rows with a.ld, enqueued on `stream`.
void download(const float* d, mutable_view a, stream_t stream);

/// A host-memory call's queries, keys and values uploaded (in that order) to dense device
/// rows on `stream`, with their device views.
struct device_inputs {
  device_buffer<float> q_buf, k_buf, v_buf;
  const_view q, k, v;
  device_inputs(const_view hq, const_view hk, const_view hv, stream_t stream)
      : q_buf(upload(hq, "queries", stream)),
        k_buf(upload(hk, "keys", stream)),
        v_buf(upload(hv, "values", stream)),
        q{q_buf.data(), hq.rows, hq.cols},
        k{k_buf.data(), hk.rows, hk.cols},
        v{v_buf.data(), hv.rows, hv.cols} {}
};

/// The stream of the host-memory entry points: the calling thread's default stream, so that
/// callers on different threads do not serialise on the legacy stream.
inline const stream_t kHostStream = cudaStreamPerThread;

/// The options with which a host-memory entry point (or pool_sharded) calls the device-pointer
/// API: backend `which` on `stream`, check_finite off (the caller checked the host data), and
/// `workspace` when given.
inline options host_call_options(backend which, stream_t stream,
                                 const device_buffer<std::byte>* workspace = nullptr) {
  options o;
  o.backend = which;
  o.check_finite = false;
  o.stream = stream;
  if (workspace != nullptr) {
    o.workspace = workspace->data();
    o.workspace_bytes = workspace->bytes();
  }
  return o;
}

/// options.check_finite on device data: element `bad` (row-major index) of `a` is not finite.
/// Reads it back (synchronises `stream`) and throws invalid_argument with the host check's words.
[[noreturn]] void throw_nonfinite_on_device(const char* fn, const char* name, const_view a,
                                            unsigned long long bad, stream_t stream);

/// The row-major index of the first non-finite element of `result` (device memory), or ~0ULL
/// when all are finite. Uses the scan slot, synchronises `stream`.
unsigned long long first_nonfinite_on_device(const_view result, void* scan_slot, stream_t stream);

}  // namespace attnpool::cuda::detail
