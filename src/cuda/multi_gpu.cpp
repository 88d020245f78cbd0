// pool_sharded (attnpool/multi_gpu.hpp): the keys split into shards over the GPUs of one
// process, one stream per device, partial states merged in a fixed order on the first device.
#include <attnpool/cuda.hpp>
#include <attnpool/error.hpp>
#include <attnpool/multi_gpu.hpp>

#include "src/cuda/host.hpp"
#include "kernels/common/cuda_check.hpp"
#include "src/validate/backend.hpp"
#include "src/validate/validate.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <vector>

namespace attnpool {
namespace {

using cuda::detail::device_buffer;

// Restores the calling thread's current device on every exit path.
class device_guard {
 public:
  device_guard() { ATTNPOOL_CUDA_TRY(cudaGetDevice(&saved_)); }
  device_guard(const device_guard&) = delete;
  device_guard& operator=(const device_guard&) = delete;
  ~device_guard() { static_cast<void>(cudaSetDevice(saved_)); }

 private:
  int saved_ = 0;
};

// What one device holds: its stream and its copy of the queries. Destroyed after its buffers'
// work is done: the destructor synchronises the stream before destroying it (errors ignored,
// destructors never throw).
struct device_slot {
  int ordinal = 0;
  cudaStream_t stream = nullptr;
  device_buffer<float> queries;

  explicit device_slot(int dev) : ordinal(dev) {
    ATTNPOOL_CUDA_TRY(cudaSetDevice(dev));
    ATTNPOOL_CUDA_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  }
  device_slot(const device_slot&) = delete;
  device_slot& operator=(const device_slot&) = delete;
  ~device_slot() {
    if (stream != nullptr) {
      static_cast<void>(cudaSetDevice(ordinal));
      static_cast<void>(cudaStreamSynchronize(stream));
      static_cast<void>(cudaStreamDestroy(stream));
    }
  }
};

// One shard's device memory, kept alive until every stream is done.
struct shard_slot {
  device_buffer<float> keys, values, partial;
  device_buffer<std::byte> workspace;
  cudaEvent_t sent = nullptr;  // recorded on the shard's stream once its states reached the root
  int ordinal = 0;
  shard_slot() = default;
  shard_slot(const shard_slot&) = delete;
  shard_slot& operator=(const shard_slot&) = delete;
  ~shard_slot() {
    // The members' cudaFree run after this body, with the shard's device current.
    static_cast<void>(cudaSetDevice(ordinal));
    if (sent != nullptr) static_cast<void>(cudaEventDestroy(sent));
  }
};

}  // namespace

void pool_sharded(const_view q, const_view k, const_view v, mutable_view out,
                  const pool_params& params, const sharding& how, const options& opts) {
  constexpr const char* fn = "pool_sharded";
  detail::choose_backend({fn, detail::entry_point::device_fused, opts.backend});
  detail::reject_shard_mask(fn, params);
  detail::reject_shard_nearest(fn, params);
  const auto s = detail::check_pool_args(fn, q, k, v, out, params);
  ::attnpool::detail::check_int_dims(fn, s.d, s.dv);
  detail::check_inputs_host(fn, opts, q, k, v, params);
  const int count = cuda::device_count();
  if (count == 0) throw cuda_error(detail::concat(fn, ": no CUDA device is visible"));
  std::vector<int> devices(how.devices.begin(), how.devices.end());
  if (devices.empty())
    for (int dev = 0; dev < count; ++dev) devices.push_back(dev);
  for (std::size_t i = 0; i < devices.size(); ++i) {
    ATTNPOOL_EXPECTS(devices[i] >= 0 && devices[i] < count, fn, ": how.devices[", i,
                     "] = ", devices[i], " is not a device ordinal; ", count,
                     " device(s) are visible (0 to ", count - 1, ")");
  }
  if (s.n == 0) return;
  const std::size_t shards = std::min(how.shards == 0 ? devices.size() : how.shards, s.m);
  const std::size_t n = s.n, dv = s.dv, per_shard = cuda::packed_partial_floats(n, dv);

  const device_guard guard;
  // One slot per distinct device, in first-appearance order; slot 0 is the root (devices[0]).
  std::vector<std::unique_ptr<device_slot>> slots;
  auto slot_of = [&](int dev) -> device_slot& {
    for (auto& sl : slots)
      if (sl->ordinal == dev) return *sl;
    slots.push_back(std::make_unique<device_slot>(dev));
    device_slot& sl = *slots.back();
    sl.queries = cuda::detail::upload(q, "queries", sl.stream);
    return sl;
  };
  device_slot& root = slot_of(devices[0]);
  ATTNPOOL_CUDA_TRY(cudaSetDevice(root.ordinal));
  device_buffer<float> stacked(detail::checked_mul(fn, "shards * n * (dv + 2)", shards, per_shard),
                               "the shards' partial states");
  device_buffer<float> dout(n * dv, "output");
  const device_buffer<std::byte> merge_ws(cuda::merge_partials_workspace_size(params),
                                          "merge_partials' workspace");

  // Destroyed before the device slots (reverse order of declaration): on the normal path after
  // the synchronisation at the end; on an exception path cudaFree waits for the device.
  std::vector<std::unique_ptr<shard_slot>> work;
  for (std::size_t sh = 0; sh < shards; ++sh) {
    device_slot& dev = slot_of(devices[sh % devices.size()]);
    ATTNPOOL_CUDA_TRY(cudaSetDevice(dev.ordinal));
    work.push_back(std::make_unique<shard_slot>());
    shard_slot& w = *work.back();
    w.ordinal = dev.ordinal;
    const std::size_t k0 = s.m * sh / shards, k1 = s.m * (sh + 1) / shards;
    w.keys = cuda::detail::upload(detail::rows_of(k, k0, k1), "a key shard", dev.stream);
    w.values = cuda::detail::upload(detail::rows_of(v, k0, k1), "a value shard", dev.stream);
    w.workspace = device_buffer<std::byte>(
        cuda::pool_partial_workspace_size(n, k1 - k0, s.d, dv, params), "pool_partial's workspace");
    const bool local = dev.ordinal == root.ordinal;
    float* dst = stacked.data() + sh * per_shard;
    if (!local) w.partial = device_buffer<float>(per_shard, "a shard's partial states");
    const options o =
        cuda::detail::host_call_options(backend::cuda_fused, dev.stream, &w.workspace);
    cuda::pool_partial(const_view{dev.queries.data(), n, s.d},
                       const_view{w.keys.data(), k1 - k0, s.d},
                       const_view{w.values.data(), k1 - k0, dv},
                       cuda::packed_partial(local ? dst : w.partial.data(), n, dv), params, o);
    if (!local) {
      // n x (dv + 2) floats to the root (through the host where the devices are not peers).
      ATTNPOOL_CUDA_TRY(cudaMemcpyPeerAsync(dst, root.ordinal, w.partial.data(), dev.ordinal,
                                            per_shard * sizeof(float), dev.stream));
      ATTNPOOL_CUDA_TRY(cudaEventCreateWithFlags(&w.sent, cudaEventDisableTiming));
      ATTNPOOL_CUDA_TRY(cudaEventRecord(w.sent, dev.stream));
    }
  }
  ATTNPOOL_CUDA_TRY(cudaSetDevice(root.ordinal));
  for (const auto& w : work)
    if (w->sent != nullptr) ATTNPOOL_CUDA_TRY(cudaStreamWaitEvent(root.stream, w->sent, 0));
  const options o = cuda::detail::host_call_options(backend::cuda_fused, root.stream, &merge_ws);
  cuda::merge_partials(cuda::packed_partials(stacked.data(), shards, n, dv),
                       mutable_view{dout.data(), n, dv}, params, o);
  cuda::detail::download(dout.data(), out, root.stream);
  for (const auto& sl : slots) {
    ATTNPOOL_CUDA_TRY(cudaSetDevice(sl->ordinal));
    ATTNPOOL_CUDA_TRY(cudaStreamSynchronize(sl->stream));
  }
}

}  // namespace attnpool
