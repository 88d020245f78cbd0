// What every GPU benchmark of bench/cuda/ needs, once: the device's bounds (printed at start),
// checked CUDA calls, device arrays filled from a cheap LCG (uploaded once, outside the timing),
// a stream per benchmark, and CUDA-event timing of a Google Benchmark loop (UseManualTime).
#pragma once

#include <attnpool/cuda.hpp>
#include <attnpool/error.hpp>

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace attnpool::bench {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw cuda_error(std::string(what) + ": " + cudaGetErrorName(e));
}

/// The current device and the two bounds the counters are measured against.
struct device_info {
  std::string name;
  int sms = 0;
  double clock_hz = 0.0;
  double exp2_per_s = 0.0;  ///< SMs x 16 MUFU.EX2 per clock x clock: one ex2 per pair
  double fp32_per_s = 0.0;  ///< SMs x 128 FP32 lanes per clock x clock
  std::size_t free_bytes = 0;
};

/// Fills `info` from the current device; false where no device is usable.
inline bool query_device(device_info& info) {
  if (cuda::device_count() == 0) return false;
  int dev = 0, clock_khz = 0;
  cudaDeviceProp prop{};
  std::size_t free_b = 0, total_b = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, dev) != cudaSuccess ||
      cudaMemGetInfo(&free_b, &total_b) != cudaSuccess)
    return false;
  info.name = prop.name;
  info.sms = prop.multiProcessorCount;
  info.clock_hz = clock_khz * 1e3;
  info.exp2_per_s = info.sms * 16.0 * info.clock_hz;
  info.fp32_per_s = info.sms * 128.0 * info.clock_hz;
  info.free_bytes = free_b;
  return true;
}

/// "<program>: <GPU>, N SMs, clock C MHz" and the bound lines that scripts/device-check.sh
/// copies into its summary; `per_ex2` names what one ex2 is in the program's counters.
inline void print_device(const char* program, const device_info& d,
                         const char* per_ex2 = "pairs/s") {
  std::printf("%s: %s, %d SMs, clock %.0f MHz\n", program, d.name.c_str(), d.sms, d.clock_hz / 1e6);
  std::printf("  exp2 bound: %d SMs x 16 MUFU.EX2/clk x %.0f MHz = %.3e ex2/s (= %s)\n", d.sms,
              d.clock_hz / 1e6, d.exp2_per_s, per_ex2);
  std::printf("  FP32 bound: %d SMs x 128 lanes/clk x %.0f MHz = %.3e ops/s\n", d.sms,
              d.clock_hz / 1e6, d.fp32_per_s);
  std::fflush(stdout);
}

/// `count` floats on the device, uniform in [lo, lo + span) from an LCG seeded with `seed`.
struct dev_floats {
  float* p = nullptr;
  explicit dev_floats(std::size_t count, std::uint32_t seed = 1, float lo = 0.0f,
                      float span = 1.0f) {
    check(cudaMalloc(&p, count * sizeof(float) + 1), "cudaMalloc");
    std::vector<float> h(count);
    std::uint32_t s = seed;
    for (float& x : h) {
      s = s * 1664525u + 1013904223u;
      x = lo + span * static_cast<float>(s >> 8) * (1.0f / 16777216.0f);
    }
    check(cudaMemcpy(p, h.data(), count * sizeof(float), cudaMemcpyHostToDevice), "upload");
  }
  dev_floats(const dev_floats&) = delete;
  dev_floats& operator=(const dev_floats&) = delete;
  ~dev_floats() { static_cast<void>(cudaFree(p)); }
};

/// `bytes` bytes of device memory (a workspace); null when bytes is 0.
struct dev_bytes {
  void* p = nullptr;
  std::size_t bytes = 0;
  explicit dev_bytes(std::size_t b) : bytes(b) {
    if (b > 0) check(cudaMalloc(&p, b), "cudaMalloc(workspace)");
  }
  dev_bytes(const dev_bytes&) = delete;
  dev_bytes& operator=(const dev_bytes&) = delete;
  ~dev_bytes() { static_cast<void>(cudaFree(p)); }
};

/// A non-blocking stream for one benchmark.
struct dev_stream {
  cudaStream_t s = nullptr;
  dev_stream() { check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream"); }
  dev_stream(const dev_stream&) = delete;
  dev_stream& operator=(const dev_stream&) = delete;
  ~dev_stream() { static_cast<void>(cudaStreamDestroy(s)); }
};

/// One problem's device inputs (queries n x d, keys m x d, values m x dv, the benchmarks' fixed
/// draws), its output, a workspace of ws_bytes and a stream, with the options that run `which`
/// on them unchecked: the set-up every forward and backward benchmark shares.
struct device_problem {
  std::size_t n, m, d, dv;
  dev_floats q, k, v, out;
  dev_bytes ws;
  dev_stream stream;
  attnpool::options opts;
  device_problem(std::size_t n_, std::size_t m_, std::size_t d_, std::size_t dv_,
                 std::size_t ws_bytes, attnpool::backend which)
      : n(n_),
        m(m_),
        d(d_),
        dv(dv_),
        q(n * d, 1, 0.0f),
        k(m * d, 2, 0.0f),
        v(m * dv, 3, -0.5f),
        out(n * dv, 4, 0.0f),
        ws(ws_bytes) {
    opts.backend = which;
    opts.stream = stream.s;
    opts.check_finite = false;
    opts.workspace = ws.p;
    opts.workspace_bytes = ws_bytes;
  }
  attnpool::const_view queries() const { return {q.p, n, d}; }
  attnpool::const_view keys() const { return {k.p, m, d}; }
  attnpool::const_view values() const { return {v.p, m, dv}; }
  attnpool::mutable_view output() const { return {out.p, n, dv}; }
};

/// Runs work() once (module loading, handles and caches stay out of the timing), then times
/// every benchmark iteration's work on `stream` between two CUDA events. Returns the seconds
/// measured in total, for counters that divide by the GPU time rather than the wall clock.
template <class F>
double timed_loop(benchmark::State& state, cudaStream_t stream, F&& work) {
  cudaEvent_t start = nullptr, stop = nullptr;
  check(cudaEventCreate(&start), "event");
  check(cudaEventCreate(&stop), "event");
  work();
  check(cudaStreamSynchronize(stream), "warm-up");
  double seconds = 0.0;
  for (auto _ : state) {
    check(cudaEventRecord(start, stream), "record");
    work();
    check(cudaEventRecord(stop, stream), "record");
    check(cudaEventSynchronize(stop), "sync");
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, start, stop), "elapsed");
    state.SetIterationTime(ms * 1e-3);
    seconds += ms * 1e-3;
  }
  static_cast<void>(cudaEventDestroy(start));
  static_cast<void>(cudaEventDestroy(stop));
  return seconds;
}

}  // namespace attnpool::bench
