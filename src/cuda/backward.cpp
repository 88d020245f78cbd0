// Host side of the fused backward pass on the GPU: validation, the workspace layout,
// the device-pointer cuda::pool_backward and the host-memory entry point behind
// attnpool::pool_backward(backend cuda_fused). The kernels are in kernels/backward*.
#include <attnpool/cuda.hpp>
#include <attnpool/detail/scores.hpp>
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>

#include "src/cuda/backends.hpp"
#include "kernels/backward/params.hpp"
#include "src/cuda/host.hpp"
#include "kernels/common/cuda_check.hpp"
#include "kernels/common/workspace.hpp"
#include "kernels/fused/dispatch.hpp"
#include "kernels/support/support.hpp"
#include "src/validate/backend.hpp"
#include "src/validate/validate.hpp"

#include <cuda_runtime_api.h>

#include <climits>
#include <cstddef>
#include <limits>

namespace attnpool {
namespace {

using kernels::align_up;
using cuda::detail::kScanBytes;

// Workspace: [scan slot][valid_lens (valid_length only)][lse2: n floats][D_i: n][dh rows: n]
// and, for the tiled kernels where a phase splits its walk, [partial sums].
struct backward_layout {
  std::size_t lens = 0, lse2 = 0, dsum = 0, dh_rows = 0, partials = 0, total = 0;
  bool tiled = false;
  kernels::backward_split rows, keys;
};

backward_layout backward_layout_for(const char* fn, std::size_t n, std::size_t m, std::size_t d,
                                    std::size_t dv, const pool_params& params) {
  backward_layout l;
  const std::size_t row_bytes =
      align_up(::attnpool::detail::checked_mul(fn, "per-row workspace", n, sizeof(float)));
  l.lens = kScanBytes;
  l.lse2 = l.lens + cuda::detail::valid_lens_bytes(fn, n, params);
  l.dsum = l.lse2 + row_bytes;
  l.dh_rows = l.dsum + row_bytes;
  l.total = l.dh_rows + row_bytes;
  // The tiled kernels for the shapes the backward pass serves (the call validates the rest).
  l.tiled = kernels::tiled_backward() && n > 0 && m > 0 && d >= 1 && d <= kMaxGpuBackwardDims &&
            dv >= 1 && dv <= static_cast<std::size_t>(INT_MAX) / 2;
  if (l.tiled) {
    const int sms = cuda::detail::current_sm_count();
    l.rows = kernels::plan_backward_rows(n, m, d, sms);
    l.keys = kernels::plan_backward_keys(n, m, d, dv, sms);
    const std::size_t floats = kernels::backward_partial_floats(n, m, d, dv, l.rows, l.keys);
    l.partials = l.total;
    l.total += align_up(
        ::attnpool::detail::checked_mul(fn, "the partial sums' workspace", floats, sizeof(float)));
  }
  return l;
}

// What the GPU backward takes beyond pool_backward's own rules.
void check_backward_limits(const char* fn, std::size_t d, std::size_t dv) {
  ::attnpool::detail::check_gpu_backward_dims(fn, d);
  ATTNPOOL_EXPECTS(dv <= static_cast<std::size_t>(INT_MAX) / 2, fn, ": dv = ", dv,
                   " exceeds the GPU backward pass's limit");
  const std::size_t windows = (dv + 7) / 8;
  ATTNPOOL_EXPECTS(windows <= 65535, fn, ": dv = ", dv, " needs more than 65535 value windows");
}

// options.check_finite for dout, after check_inputs_on_device did q, k and v: the same scan
// and the same words.
void check_dout_on_device(const char* fn, const_view dout, void* scan_slot, stream_t stream) {
  const unsigned long long bad = cuda::detail::first_nonfinite_on_device(dout, scan_slot, stream);
  if (bad != ~0ULL) cuda::detail::throw_nonfinite_on_device(fn, "dout", dout, bad, stream);
}

void zero_rows(mutable_view a, stream_t stream) {
  if (a.data == nullptr || a.rows == 0 || a.cols == 0) return;
  ATTNPOOL_CUDA_TRY(cudaMemset2DAsync(a.data, a.ld * sizeof(float), 0, a.cols * sizeof(float),
                                      a.rows, stream));
}

// The device-pointer backward with the caller's name in its messages.
void fused_backward(const char* fn, const_view q, const_view k, const_view v, const_view dout,
                    const pool_gradients& grads, const pool_params& params, const options& opts) {
  ::attnpool::detail::choose_backend(
      {fn, ::attnpool::detail::entry_point::device_backward, opts.backend});
  ::attnpool::detail::reject_non_gaussian(fn, params);
  const auto s = ::attnpool::detail::check_pool_args(fn, q, k, v, dout, params,
                                                     ::attnpool::detail::mask_support::gpu_fused);
  ::attnpool::detail::check_optional_output(fn, "grads.queries", grads.queries, s.n, s.d);
  ::attnpool::detail::check_optional_output(fn, "grads.keys", grads.keys, s.m, s.d);
  ::attnpool::detail::check_optional_output(fn, "grads.values", grads.values, s.m, s.dv);
  check_backward_limits(fn, s.d, s.dv);
  const stream_t stream = opts.stream;
  if (s.n == 0) {  // no queries: every gradient is zero
    zero_rows(grads.keys, stream);
    zero_rows(grads.values, stream);
    if (grads.bandwidth != nullptr)
      ATTNPOOL_CUDA_TRY(cudaMemsetAsync(grads.bandwidth, 0, sizeof(double), stream));
    return;
  }
  const backward_layout l = backward_layout_for(fn, s.n, s.m, s.d, s.dv, params);
  cuda::detail::check_workspace(fn, opts, l.total);
  auto* ws = static_cast<std::byte*>(opts.workspace);
  if (opts.check_finite) {
    cuda::detail::check_inputs_on_device(fn, q, k, v, params, s.m, ws, stream);
    check_dout_on_device(fn, dout, ws, stream);
  }
  cuda::detail::upload_valid_lens(params, s.n, ws + l.lens, stream);

  kernels::backward_args a;
  static_cast<kernels::problem_args&>(a) = kernels::problem_args_of(q, k, v);
  a.dout = dout.data;
  a.lddo = dout.ld;
  a.score_constant = cuda::detail::neg_log2_scale(params);
  a.inv_h2 = 1.0 / (params.bandwidth * params.bandwidth);
  a.mask.kind = params.mask;
  if (params.mask == mask::valid_length)
    a.mask.valid_lens = reinterpret_cast<const std::size_t*>(ws + l.lens);
  a.lse2 = reinterpret_cast<float*>(ws + l.lse2);
  a.dsum = reinterpret_cast<float*>(ws + l.dsum);
  a.dh_rows = grads.bandwidth != nullptr ? reinterpret_cast<float*>(ws + l.dh_rows) : nullptr;
  a.dq = grads.queries.data;
  a.lddq = grads.queries.ld;
  a.dk = grads.keys.data;
  a.lddk = grads.keys.ld;
  a.dvv = grads.values.data;
  a.lddv = grads.values.ld;

  if (l.tiled) {
    auto* partials = reinterpret_cast<float*>(ws + l.partials);
    kernels::launch_backward_rows_tiled(a, l.rows, partials, stream);
    kernels::launch_backward_keys_tiled(a, l.keys, partials, stream);
  } else {
    kernels::launch_backward_rows(a, stream);
    kernels::launch_backward_keys(a, stream);
  }
  if (grads.bandwidth != nullptr)
    kernels::launch_backward_dh(a.dh_rows, s.n, a.inv_h2 / params.bandwidth, grads.bandwidth,
                                stream);
}

using cuda::detail::device_buffer;
using cuda::detail::upload;

// A device buffer for a wanted gradient (empty when not wanted), and its dense device view.
struct device_grad {
  device_buffer<float> buf;
  mutable_view view;
  device_grad(mutable_view host, const char* what) {
    if (host.data == nullptr) return;
    buf = device_buffer<float>(host.rows * host.cols, what);
    view = mutable_view{buf.data(), host.rows, host.cols};
  }
  void download(mutable_view host, stream_t stream) const {
    if (host.data != nullptr) cuda::detail::download(buf.data(), host, stream);
  }
};

}  // namespace

std::size_t cuda::pool_backward_workspace_size(std::size_t n, std::size_t m, std::size_t d,
                                               std::size_t dv, const pool_params& params) {
  return backward_layout_for("cuda::pool_backward_workspace_size", n, m, d, dv, params).total;
}

void cuda::pool_backward(const_view q, const_view k, const_view v, const_view dout,
                         const pool_gradients& grads, const pool_params& params,
                         const options& opts) {
  fused_backward("cuda::pool_backward", q, k, v, dout, grads, params, opts);
}

void detail::cuda_backward_host(const_view q, const_view k, const_view v, const_view dout,
                                const pool_gradients& grads, const pool_params& params) {
  constexpr const char* fn = "pool_backward";
  // Same checks as the device call, before any allocation, so the caller's names appear.
  check_backward_limits(fn, q.cols, v.cols);
  const stream_t stream = cuda::detail::kHostStream;
  const cuda::detail::device_inputs in(q, k, v, stream);
  const device_buffer<float> ddout = upload(dout, "dout", stream);
  const device_grad gq(grads.queries, "grads.queries");
  const device_grad gk(grads.keys, "grads.keys");
  const device_grad gv(grads.values, "grads.values");
  device_buffer<double> gh;
  if (grads.bandwidth != nullptr) gh = device_buffer<double>(1, "grads.bandwidth");
  const device_buffer<std::byte> ws(
      cuda::pool_backward_workspace_size(q.rows, k.rows, q.cols, v.cols, params),
      "the backward pass's workspace");
  const options o = cuda::detail::host_call_options(backend::cuda_fused, stream, &ws);
  pool_gradients g;
  g.queries = gq.view;
  g.keys = gk.view;
  g.values = gv.view;
  g.bandwidth = gh.data();
  fused_backward(fn, in.q, in.k, in.v, const_view{ddout.data(), dout.rows, dout.cols}, g, params,
                 o);
  gq.download(grads.queries, stream);
  gk.download(grads.keys, stream);
  gv.download(grads.values, stream);
  if (grads.bandwidth != nullptr)
    ATTNPOOL_CUDA_TRY(cudaMemcpyAsync(grads.bandwidth, gh.data(), sizeof(double),
                                      cudaMemcpyDeviceToHost, stream));
  ATTNPOOL_CUDA_TRY(cudaStreamSynchronize(stream));
}

}  // namespace attnpool
