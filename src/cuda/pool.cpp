// The device-pointer API of attnpool/cuda.hpp, the fused path's host side, and the host-memory
// entry points of src/cuda/backends.hpp (copy in, run, copy back, synchronise).
#include <attnpool/cuda.hpp>
#include <attnpool/detail/scores.hpp>
#include <attnpool/error.hpp>

#include "kernels/common/cuda_check.hpp"
#include "kernels/common/workspace.hpp"
#include "kernels/fused/decode.hpp"
#include "kernels/fused/decode_plan.hpp"
#include "kernels/fused/dispatch.hpp"
#include "kernels/support/support.hpp"
#include "src/cuda/backends.hpp"
#include "src/cuda/host.hpp"
#include "src/validate/backend.hpp"
#include "src/validate/validate.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <vector>

namespace attnpool {
namespace cuda::detail {
namespace {

using kernels::align_up;

// Byte offsets of the fused path's workspace:
//   [scan slot][valid_lens (mask::valid_length only)][partial states][partial acc].
struct fused_layout {
  kernels::fused_plan plan;
  bool decode = false;  ///< plan is plan_decode's: the key-parallel kernel runs (fused_decode)
  std::size_t lens_offset = 0, state_offset = 0, acc_offset = 0, total = 0;
};

fused_layout fused_layout_for(std::size_t n, std::size_t m, std::size_t d, std::size_t dv,
                              const fused_tuning& tuning, const pool_params& params) {
  fused_layout l;
  const bool generic = uses_generic_score(params);
  l.decode = kernels::fused_decode() && !generic && params.mask == mask::none &&
             kernels::decode_serves(n, m, d, dv);
  l.plan = l.decode ? kernels::plan_decode(n, m, d, dv, current_sm_count(), tuning.forced_splits)
                    : kernels::plan_fused(n, m, d, dv, current_sm_count(), tuning.forced_splits,
                                          generic);
  l.lens_offset = kScanBytes;
  l.state_offset = l.lens_offset + valid_lens_bytes("cuda::pool_workspace_size", n, params);
  if (l.plan.splits > 1) {
    const auto s = static_cast<std::size_t>(l.plan.splits);
    const char* fn = "cuda::pool_workspace_size";
    const std::size_t state_bytes =
        ::attnpool::detail::checked_mul(fn, "split-K states", s * 2 * sizeof(float), n);
    l.acc_offset = l.state_offset + align_up(state_bytes);
    l.total = l.acc_offset + align_up(::attnpool::detail::checked_mul(
                                 fn, "split-K accumulators", s * sizeof(float),
                                 ::attnpool::detail::checked_mul(fn, "n * dv", n, dv)));
  } else {
    l.acc_offset = l.state_offset;
    l.total = l.state_offset;
  }
  return l;
}

}  // namespace

kernels::fused_args fused_args_for(const_view q, const_view k, const_view v, mutable_view out,
                                   const pool_params& params, kernels::generic_score_args& generic) {
  kernels::fused_args a;
  static_cast<kernels::problem_args&>(a) = kernels::problem_args_of(q, k, v);
  a.out = out.data;
  a.ldo = out.ld;
  const gpu_kernel g = gpu_kernel_for(params);
  a.score_constant = g.constant;
  generic.kind = g.kind;
  generic.weighted = g.weighted ? 1 : 0;
  std::copy(std::begin(g.dim_weights), std::end(g.dim_weights), std::begin(generic.dim_weights));
  return a;
}

unsigned long long first_nonfinite_on_device(const_view result, void* scan_slot, stream_t stream) {
  auto* scan = static_cast<kernels::input_scan*>(scan_slot);
  ATTNPOOL_CUDA_TRY(cudaMemsetAsync(scan->first_bad, 0xFF, sizeof scan->first_bad, stream));
  kernels::scan_inputs(result, &scan->first_bad[0], nullptr, current_sm_count(), stream);
  unsigned long long bad = 0;
  ATTNPOOL_CUDA_TRY(
      cudaMemcpyAsync(&bad, &scan->first_bad[0], sizeof bad, cudaMemcpyDeviceToHost, stream));
  ATTNPOOL_CUDA_TRY(cudaStreamSynchronize(stream));
  return bad;
}

int current_sm_count() {
  int device = 0;
  ATTNPOOL_CUDA_TRY(cudaGetDevice(&device));
  int sms = 0;
  ATTNPOOL_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

float neg_log2_scale(const pool_params& params) {
  return static_cast<float>(-::attnpool::detail::gaussian_log2_scale(params.bandwidth));
}

bool uses_generic_score(const pool_params& params) {
  return params.kernel != kernel::gaussian || params.bandwidths.size() > 1 ||
         (params.mask != mask::none && !kernels::fused_masks());
}

std::size_t valid_lens_bytes(const char* fn, std::size_t n, const pool_params& params) {
  if (params.mask != mask::valid_length) return 0;
  return align_up(::attnpool::detail::checked_mul(fn, "valid_lens", n, sizeof(std::size_t)));
}

void upload_valid_lens(const pool_params& params, std::size_t n, void* dst, stream_t stream) {
  if (params.mask != mask::valid_length || n == 0) return;
  // From pageable host memory: the runtime stages the source before cudaMemcpyAsync returns,
  // so the caller's span may go away once this call has returned (cuda.hpp documents this).
  ATTNPOOL_CUDA_TRY(cudaMemcpyAsync(dst, params.valid_lens.data(), n * sizeof(std::size_t),
                                    cudaMemcpyHostToDevice, stream));
}

gpu_kernel gpu_kernel_for(const pool_params& params) {
  gpu_kernel g;
  g.kind = params.kernel;
  // d = 1 anisotropic is isotropic with h = h_0 (and keeps the Gaussian fast path).
  const ::attnpool::detail::bandwidth_setup b = ::attnpool::detail::bandwidth_setup_of(params);
  g.weighted = b.dims > 0;
  for (std::size_t c = 0; c < b.dims; ++c) g.dim_weights[c] = b.weight(c);
  g.constant = ::attnpool::detail::kernel_constant(params.kernel, b.h);
  return g;
}

bool needs_empty_check(const pool_params& params) {
  return is_compact(params.kernel) && params.empty == empty_support::error;
}

void check_empty_rows_on_device(const char* fn, const pool_params& params, const_view result,
                                void* scan_slot, stream_t stream) {
  if (!needs_empty_check(params) || result.rows == 0) return;
  const unsigned long long bad = first_nonfinite_on_device(result, scan_slot, stream);
  // The inputs were finite (or the caller switched check_finite off), so a non-finite result
  // element belongs to a row the kernels left empty: the same words as the host engines.
  if (bad != ~0ULL) ::attnpool::detail::throw_empty_row(fn, params, bad / result.cols);
}

void check_workspace(const char* fn, const options& opts, std::size_t required) {
  if (required == 0) return;
  ATTNPOOL_EXPECTS(opts.workspace_bytes >= required, fn, ": options.workspace_bytes is ",
                   opts.workspace_bytes, " but this call needs ", required,
                   " bytes of workspace (size it with the matching *_workspace_size query)");
  ATTNPOOL_EXPECTS(opts.workspace != nullptr, fn, ": options.workspace is null but this call ",
                   "needs ", required, " bytes of workspace");
  ATTNPOOL_EXPECTS(reinterpret_cast<std::uintptr_t>(opts.workspace) % kernels::kWorkspaceAlign == 0,
                   fn, ": options.workspace must be ", kernels::kWorkspaceAlign,
                   "-byte aligned (as cudaMalloc returns it), got address ", opts.workspace);
}

void throw_nonfinite_on_device(const char* fn, const char* name, const_view a,
                               unsigned long long bad, stream_t stream) {
  const std::size_t r = bad / a.cols, c = bad % a.cols;
  float x = 0.0f;
  ATTNPOOL_CUDA_TRY(
      cudaMemcpyAsync(&x, a.data + r * a.ld + c, sizeof x, cudaMemcpyDeviceToHost, stream));
  ATTNPOOL_CUDA_TRY(cudaStreamSynchronize(stream));
  ::attnpool::detail::throw_nonfinite(fn, name, r, c, x);
}

void check_inputs_on_device(const char* fn, const_view q, const_view k, const_view v,
                            const pool_params& params, std::size_t terms, void* scan_slot,
                            stream_t stream) {
  auto* scan = static_cast<kernels::input_scan*>(scan_slot);
  static_assert(sizeof(kernels::input_scan) <= kScanBytes);
  ATTNPOOL_CUDA_TRY(cudaMemsetAsync(scan->first_bad, 0xFF, sizeof scan->first_bad, stream));
  ATTNPOOL_CUDA_TRY(cudaMemsetAsync(&scan->max_abs_bits, 0, sizeof scan->max_abs_bits, stream));
  ATTNPOOL_CUDA_TRY(cudaMemsetAsync(&scan->max_abs_v_bits, 0, sizeof scan->max_abs_v_bits, stream));
  const int sms = current_sm_count();
  kernels::scan_inputs(q, &scan->first_bad[0], &scan->max_abs_bits, sms, stream);
  kernels::scan_inputs(k, &scan->first_bad[1], &scan->max_abs_bits, sms, stream);
  if (v.data != nullptr)
    kernels::scan_inputs(v, &scan->first_bad[2], &scan->max_abs_v_bits, sms, stream);
  kernels::input_scan host{};
  ATTNPOOL_CUDA_TRY(cudaMemcpyAsync(&host, scan, sizeof host, cudaMemcpyDeviceToHost, stream));
  ATTNPOOL_CUDA_TRY(cudaStreamSynchronize(stream));

  // Same order and words as check_data in src/api/pool.cpp + src/validate.cpp: queries, keys,
  // values, each reporting its first non-finite element in row-major order; then the range.
  const const_view mats[3] = {q, k, v};
  const char* names[3] = {"queries", "keys", "values"};
  for (int i = 0; i < 3; ++i) {
    if (host.first_bad[i] != ~0ULL)
      throw_nonfinite_on_device(fn, names[i], mats[i], host.first_bad[i], stream);
  }
  // The range check itself is the host one, run on a 1 x d stand-in whose largest coordinate is
  // the device maximum: one source for the limit and the message.
  float largest = 0.0f;
  static_assert(sizeof largest == sizeof host.max_abs_bits);
  std::memcpy(&largest, &host.max_abs_bits, sizeof largest);
  std::vector<float> stand_in(q.cols, 0.0f);
  stand_in[0] = largest;
  ::attnpool::detail::check_score_range_host(fn, const_view{stand_in.data(), 1, q.cols},
                                             const_view{nullptr, 0, q.cols, q.cols}, params);
  if (v.data != nullptr)
    ::attnpool::detail::check_value_headroom(fn, std::bit_cast<float>(host.max_abs_v_bits), terms);
}

std::size_t fused_workspace_size(std::size_t n, std::size_t m, std::size_t d, std::size_t dv,
                                 const fused_tuning& tuning, const pool_params& params) {
  if (n == 0 || m == 0 || d == 0 || dv == 0) return kScanBytes;
  return fused_layout_for(n, m, d, dv, tuning, params).total;
}

int fused_splits(std::size_t n, std::size_t m, std::size_t d, std::size_t dv,
                 const fused_tuning& tuning, const pool_params& params) {
  if (n == 0 || m == 0 || d == 0 || dv == 0) return 1;
  return fused_layout_for(n, m, d, dv, tuning, params).plan.splits;
}

void fused_pool(const_view q, const_view k, const_view v, mutable_view out,
                const pool_params& params, const options& opts, const fused_tuning& tuning) {
  constexpr const char* fn = "cuda::pool";
  const auto s = ::attnpool::detail::check_pool_args(fn, q, k, v, out, params,
                                                     ::attnpool::detail::mask_support::gpu_fused);
  ::attnpool::detail::check_int_dims(fn, s.d, s.dv);
  if (s.n == 0) return;
  const fused_layout l = fused_layout_for(s.n, s.m, s.d, s.dv, tuning, params);
  // The scan slot is only needed with check_finite or the empty-support check, but the layout
  // keeps it so that the offsets do not depend on the options.
  const bool scan = opts.check_finite || needs_empty_check(params);
  const bool lens = params.mask == mask::valid_length;
  check_workspace(fn, opts, l.plan.splits > 1 || scan || lens ? l.total : 0);
  if (opts.check_finite)
    check_inputs_on_device(fn, q, k, v, params, s.m, ws_at(opts, 0), opts.stream);

  kernels::generic_score_args generic;
  kernels::fused_args a = fused_args_for(q, k, v, out, params, generic);
  generic.mask.kind = params.mask;
  if (lens) {
    upload_valid_lens(params, s.n, ws_at(opts, l.lens_offset), opts.stream);
    generic.mask.valid_lens = reinterpret_cast<const std::size_t*>(ws_at(opts, l.lens_offset));
  }
  if (l.plan.splits > 1) {
    a.partial_state = reinterpret_cast<float*>(ws_at(opts, l.state_offset));
    a.partial_acc = reinterpret_cast<float*>(ws_at(opts, l.acc_offset));
  }
  if (l.decode) {
    kernels::launch_decode(a, l.plan, opts.stream);
  } else {
    kernels::launch_fused(a, l.plan, opts.stream, uses_generic_score(params) ? &generic : nullptr,
                          &generic.mask);
  }
  check_empty_rows_on_device(fn, params, out, ws_at(opts, 0), opts.stream);
}

}  // namespace cuda::detail

// ---- the public device-pointer API --------------------------------------------------------------

namespace {
using ::attnpool::detail::choose_backend;
using ::attnpool::detail::entry_point;
}  // namespace

std::size_t cuda::pool_workspace_size(std::size_t n, std::size_t m, std::size_t d, std::size_t dv,
                                      const pool_params& params, backend which) {
  if (choose_backend({"cuda::pool_workspace_size", entry_point::device_pool, which}) ==
      backend::cuda_unfused)
    return detail::unfused_pool_workspace_size(n, m, d);
  return detail::fused_workspace_size(n, m, d, dv, {}, params);
}

void cuda::pool(const_view q, const_view k, const_view v, mutable_view out,
                const pool_params& params, const options& opts) {
  if (choose_backend({"cuda::pool", entry_point::device_pool, opts.backend}) ==
      backend::cuda_unfused) {
    detail::unfused_pool("cuda::pool", q, k, v, out, params, opts);
  } else {
    detail::fused_pool(q, k, v, out, params, opts, {});
  }
}

std::size_t cuda::attention_weights_workspace_size(std::size_t n, std::size_t m, std::size_t d,
                                                   const pool_params&) {
  return detail::unfused_weights_workspace_size(n, m, d);
}

void cuda::attention_weights(const_view q, const_view k, mutable_view w, const pool_params& params,
                             const options& opts) {
  // Any CUDA backend: the matrix is materialised by definition, so fused == unfused here.
  choose_backend({"cuda::attention_weights", entry_point::device_pool, opts.backend});
  detail::unfused_weights("cuda::attention_weights", q, k, w, params, opts);
}

void cuda::average_pool(const_view values, mutable_view out, const options& opts) {
  // No workspace query exists for average_pool, so options.check_finite is not applied to
  // device data here (a non-finite input gives a non-finite mean, visible to the caller).
  ::attnpool::detail::check_average_args("cuda::average_pool", values, out);
  kernels::column_mean(values, out, opts.stream);
}

int cuda::device_count() noexcept {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    // No driver or no device: report none, and clear the error so that it is not picked up by
    // a later, unrelated status check.
    static_cast<void>(cudaGetLastError());
    return 0;
  }
  return count;
}

// ---- host-memory entry points (src/cuda/backends.hpp) -----------------------------------------------

using cuda::detail::device_buffer;

// Host rows -> dense device rows. cudaMemcpy2D copies `cols` floats per row and never reads the
// pad elements between them.
device_buffer<float> cuda::detail::upload(const_view a, const char* what, stream_t stream) {
  device_buffer<float> d(a.rows * a.cols, what);
  if (a.rows > 0 && a.cols > 0) {
    ATTNPOOL_CUDA_TRY(cudaMemcpy2DAsync(d.data(), a.cols * sizeof(float), a.data,
                                        a.ld * sizeof(float), a.cols * sizeof(float), a.rows,
                                        cudaMemcpyHostToDevice, stream));
  }
  return d;
}

// Dense device rows -> host rows with the caller's leading dimension (pad left untouched).
void cuda::detail::download(const float* d, mutable_view a, stream_t stream) {
  if (a.rows == 0 || a.cols == 0) return;
  ATTNPOOL_CUDA_TRY(cudaMemcpy2DAsync(a.data, a.ld * sizeof(float), d, a.cols * sizeof(float),
                                      a.cols * sizeof(float), a.rows, cudaMemcpyDeviceToHost,
                                      stream));
}

namespace {
using cuda::detail::download;
using cuda::detail::host_call_options;
using cuda::detail::kHostStream;
using cuda::detail::upload;
}  // namespace

void detail::cuda_pool_host(const_view q, const_view k, const_view v, mutable_view out,
                            const pool_params& params, backend which) {
  const stream_t stream = kHostStream;
  const cuda::detail::device_inputs in(q, k, v, stream);
  device_buffer<float> dout(out.rows * out.cols, "output");
  const std::size_t ws_bytes =
      cuda::pool_workspace_size(q.rows, k.rows, q.cols, v.cols, params, which);
  const device_buffer<std::byte> ws(ws_bytes, which == backend::cuda_unfused
                                                  ? "the unfused path's workspace (n x m weights)"
                                                  : "the fused path's workspace");
  const options o = host_call_options(which, stream, &ws);
  cuda::pool(in.q, in.k, in.v, mutable_view{dout.data(), out.rows, out.cols}, params, o);
  download(dout.data(), out, stream);
  ATTNPOOL_CUDA_TRY(cudaStreamSynchronize(stream));
}

void detail::cuda_weights_host(const_view q, const_view k, mutable_view w,
                               const pool_params& params) {
  const stream_t stream = kHostStream;
  const device_buffer<float> dq = upload(q, "queries", stream);
  const device_buffer<float> dk = upload(k, "keys", stream);
  device_buffer<float> dw(checked_mul("attention_weights", "n * m", w.rows, w.cols),
                          "the n x m weights");
  const device_buffer<std::byte> ws(
      cuda::attention_weights_workspace_size(q.rows, k.rows, q.cols, params),
      "the unfused path's workspace");
  const options o = host_call_options(backend::cuda_unfused, stream, &ws);
  cuda::attention_weights(const_view{dq.data(), q.rows, q.cols},
                          const_view{dk.data(), k.rows, k.cols},
                          mutable_view{dw.data(), w.rows, w.cols}, params, o);
  download(dw.data(), w, stream);
  ATTNPOOL_CUDA_TRY(cudaStreamSynchronize(stream));
}

void detail::cuda_average_host(const_view values, mutable_view out) {
  const stream_t stream = kHostStream;
  const device_buffer<float> dv = upload(values, "values", stream);
  device_buffer<float> dout(out.rows * out.cols, "output");
  const options o = host_call_options(backend::automatic, stream);
  cuda::average_pool(const_view{dv.data(), values.rows, values.cols},
                     mutable_view{dout.data(), out.rows, out.cols}, o);
  download(dout.data(), out, stream);
  ATTNPOOL_CUDA_TRY(cudaStreamSynchronize(stream));
}

}  // namespace attnpool
