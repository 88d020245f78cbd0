// attnpool's entry in the peer comparison (bench/peers/peers.py): reads the shared .npy inputs,
// runs attnpool::pool with one backend `reps` times, prints one JSON line with the median time,
// and writes the output for the accuracy check.
//
//   attnpool_peer --queries q.npy --keys k.npy --values v.npy --backend cuda_fused
//                 [--bandwidth 1] [--reps 10] [--warmup 2] [--threads 0] [--out out.npy]
//
// Inputs are float32, C order, shape (rows,) or (rows, cols), as numpy.save writes them.
// Timing:
//   cpu, reference           wall clock (steady_clock) around each call; check_finite off
//   cuda_fused, cuda_unfused the device-pointer API (attnpool/cuda.hpp) on buffers copied to the
//                            GPU beforehand, timed with CUDA events on a private stream;
//                            check_finite off (it would add a synchronisation). Copies and
//                            allocation are outside the timed region, like the torch peers,
//                            whose tensors already live on the GPU.
// Memory: "peak_bytes" is, for the CUDA backends, the device memory this program allocated
// (inputs, output and workspace: what torch.cuda.max_memory_allocated counts for the torch
// peers), and for the CPU backends the process's peak resident set (VmHWM).
// Exit status: 0 on success, 2 on a usage error, 3 when attnpool or CUDA failed; on failure the
// JSON line carries "error" with the message.
#include <attnpool/error.hpp>
#include <attnpool/pool.hpp>
#if defined(ATTNPOOL_HAS_CUDA)
#include <attnpool/cuda.hpp>

#include <cuda_runtime.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- .npy -----------------------------------------------------------------------------------

struct array2d {
  std::size_t rows = 0, cols = 0;
  std::vector<float> data;
};

// The value of `key` in the header dict, e.g. "'<f4'" or "(1024, 1)".
std::string header_field(const std::string& header, const std::string& key) {
  const std::size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) throw std::runtime_error("npy header has no '" + key + "'");
  std::size_t begin = header.find(':', at);
  if (begin == std::string::npos) throw std::runtime_error("npy header malformed at " + key);
  ++begin;
  while (begin < header.size() && header[begin] == ' ') ++begin;
  const std::size_t end = header[begin] == '(' ? header.find(')', begin) + 1
                                               : header.find_first_of(",}", begin);
  return header.substr(begin, end - begin);
}

array2d read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw usage_error("cannot open " + path);
  char magic[8];
  f.read(magic, 8);
  if (!f || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw usage_error(path + " is not .npy");
  std::uint32_t header_len = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    f.read(reinterpret_cast<char*>(b), 2);
    header_len = b[0] | (b[1] << 8);
  } else {
    unsigned char b[4];
    f.read(reinterpret_cast<char*>(b), 4);
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
  }
  std::string header(header_len, '\0');
  f.read(header.data(), header_len);
  if (!f) throw usage_error(path + ": truncated header");
  const std::string descr = header_field(header, "descr");
  if (descr != "'<f4'") throw usage_error(path + ": dtype must be float32 ('<f4'), got " + descr);
  if (header_field(header, "fortran_order") != "False")
    throw usage_error(path + ": must be C order");
  std::string shape = header_field(header, "shape");  // "(n,)" or "(n, d)"
  std::vector<std::size_t> dims;
  for (std::size_t i = 1; i < shape.size();) {
    while (i < shape.size() && (shape[i] == ' ' || shape[i] == ',')) ++i;
    if (i >= shape.size() || shape[i] == ')') break;
    std::size_t used = 0;
    dims.push_back(std::stoull(shape.substr(i), &used));
    i += used;
  }
  if (dims.empty() || dims.size() > 2) throw usage_error(path + ": shape must be 1-D or 2-D");
  array2d a;
  a.rows = dims[0];
  a.cols = dims.size() == 2 ? dims[1] : 1;
  a.data.resize(a.rows * a.cols);
  f.read(reinterpret_cast<char*>(a.data.data()),
         static_cast<std::streamsize>(a.data.size() * sizeof(float)));
  if (!f) throw usage_error(path + ": truncated data");
  return a;
}

void write_npy(const std::string& path, const array2d& a) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(a.rows) + ", " + std::to_string(a.cols) + "), }";
  // Version 1.0: magic (6) + version (2) + length (2) + header, padded to 64 bytes with '\n'.
  const std::size_t total = (10 + header.size() + 1 + 63) / 64 * 64;
  header.append(total - 10 - header.size() - 1, ' ');
  header.push_back('\n');
  std::ofstream f(path, std::ios::binary);
  if (!f) throw usage_error("cannot write " + path);
  const auto len = static_cast<std::uint16_t>(header.size());
  const char prefix[10] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<char>(len & 0xff),
                           static_cast<char>(len >> 8)};
  f.write(prefix, 10);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(reinterpret_cast<const char*>(a.data.data()),
          static_cast<std::streamsize>(a.data.size() * sizeof(float)));
  if (!f) throw std::runtime_error("writing " + path + " failed");
}

// ---- timing ---------------------------------------------------------------------------------

struct timing {
  std::vector<double> ms;
  double peak_bytes = 0;
  const char* method = "";
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

// The process's peak resident set: VmHWM from /proc/self/status. Not getrusage's ru_maxrss,
// which Linux carries across execve, so that under peers.py it would report the Python parent's
// peak. Returns 0 where /proc is not there.
double peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) * 1024.0;  // in kB
  }
  return 0.0;
}

timing run_host(const array2d& q, const array2d& k, const array2d& v, array2d& out,
                const attnpool::pool_params& params, const attnpool::options& opts, int warmup,
                int reps) {
  auto call = [&] {
    attnpool::pool(attnpool::const_view{q.data.data(), q.rows, q.cols},
                   attnpool::const_view{k.data.data(), k.rows, k.cols},
                   attnpool::const_view{v.data.data(), v.rows, v.cols},
                   attnpool::mutable_view{out.data.data(), out.rows, out.cols}, params, opts);
  };
  for (int r = 0; r < warmup; ++r) call();
  timing t;
  t.method = "wall clock";
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    call();
    const auto t1 = std::chrono::steady_clock::now();
    t.ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  t.peak_bytes = peak_rss_bytes();
  return t;
}

#if defined(ATTNPOOL_HAS_CUDA)
void cuda_check(cudaError_t status, const char* call, int line) {
  if (status != cudaSuccess)
    throw attnpool::cuda_error(std::string(__FILE__) + ":" + std::to_string(line) + ": " + call +
                               ": " + cudaGetErrorName(status) + " (" +
                               cudaGetErrorString(status) + ")");
}
#define PEER_CUDA_TRY(call) cuda_check((call), #call, __LINE__)

// Device buffer that frees itself; never throws from the destructor.
struct device_buffer {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  explicit device_buffer(std::size_t b) : bytes(b) {
    if (b) PEER_CUDA_TRY(cudaMalloc(&ptr, b));
  }
  ~device_buffer() {
    if (ptr) cudaFree(ptr);
  }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  float* f() const { return static_cast<float*>(ptr); }
};

timing run_cuda(const array2d& q, const array2d& k, const array2d& v, array2d& out,
                const attnpool::pool_params& params, attnpool::options opts, int warmup,
                int reps) {
  const std::size_t ws = attnpool::cuda::pool_workspace_size(q.rows, k.rows, q.cols, v.cols,
                                                            params, opts.backend);
  device_buffer dq(q.data.size() * 4), dk(k.data.size() * 4), dv(v.data.size() * 4),
      dout(out.data.size() * 4), dws(ws);
  PEER_CUDA_TRY(cudaMemcpy(dq.ptr, q.data.data(), dq.bytes, cudaMemcpyHostToDevice));
  PEER_CUDA_TRY(cudaMemcpy(dk.ptr, k.data.data(), dk.bytes, cudaMemcpyHostToDevice));
  PEER_CUDA_TRY(cudaMemcpy(dv.ptr, v.data.data(), dv.bytes, cudaMemcpyHostToDevice));
  cudaStream_t stream = nullptr;
  PEER_CUDA_TRY(cudaStreamCreate(&stream));
  cudaEvent_t start = nullptr, stop = nullptr;
  PEER_CUDA_TRY(cudaEventCreate(&start));
  PEER_CUDA_TRY(cudaEventCreate(&stop));
  opts.stream = reinterpret_cast<attnpool::stream_t>(stream);
  opts.workspace = dws.ptr;
  opts.workspace_bytes = ws;
  auto call = [&] {
    attnpool::cuda::pool(attnpool::const_view{dq.f(), q.rows, q.cols},
                         attnpool::const_view{dk.f(), k.rows, k.cols},
                         attnpool::const_view{dv.f(), v.rows, v.cols},
                         attnpool::mutable_view{dout.f(), out.rows, out.cols}, params, opts);
  };
  timing t;
  t.method = "cuda events";
  try {
    for (int r = 0; r < warmup; ++r) call();
    PEER_CUDA_TRY(cudaStreamSynchronize(stream));
    for (int r = 0; r < reps; ++r) {
      PEER_CUDA_TRY(cudaEventRecord(start, stream));
      call();
      PEER_CUDA_TRY(cudaEventRecord(stop, stream));
      PEER_CUDA_TRY(cudaEventSynchronize(stop));
      float ms = 0.0f;
      PEER_CUDA_TRY(cudaEventElapsedTime(&ms, start, stop));
      t.ms.push_back(ms);
    }
    PEER_CUDA_TRY(cudaMemcpy(out.data.data(), dout.ptr, dout.bytes, cudaMemcpyDeviceToHost));
  } catch (...) {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cudaStreamDestroy(stream);
    throw;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaStreamDestroy(stream);
  t.peak_bytes = static_cast<double>(dq.bytes + dk.bytes + dv.bytes + dout.bytes + dws.bytes);
  return t;
}
#endif

// ---- command line ---------------------------------------------------------------------------

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o.push_back('\\');
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o.push_back(c);
  }
  return o;
}

const char* kUsage =
    "usage: attnpool_peer --queries Q.npy --keys K.npy --values V.npy [--backend cpu]\n"
    "                     [--bandwidth 1] [--reps 10] [--warmup 2] [--threads 0] [--out O.npy]\n";

int run(int argc, char** argv) {
  std::map<std::string, std::string> a{{"--backend", "cpu"},  {"--bandwidth", "1"},
                                       {"--reps", "10"},      {"--warmup", "2"},
                                       {"--threads", "0"},    {"--out", ""}};
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    if (key == "-h" || key == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (key.rfind("--", 0) != 0 || i + 1 >= argc) throw usage_error("bad argument " + key);
    a[key] = argv[++i];
  }
  for (const char* required : {"--queries", "--keys", "--values"})
    if (a[required].empty()) throw usage_error(std::string("missing ") + required);

  const array2d q = read_npy(a["--queries"]);
  const array2d k = read_npy(a["--keys"]);
  const array2d v = read_npy(a["--values"]);
  array2d out;
  out.rows = q.rows;
  out.cols = v.cols;
  out.data.assign(out.rows * out.cols, 0.0f);

  attnpool::pool_params params;
  params.bandwidth = std::stod(a["--bandwidth"]);
  attnpool::options opts;
  opts.backend = attnpool::parse_backend(a["--backend"].c_str());
  opts.backend = attnpool::resolve_backend(opts.backend);
  opts.threads = static_cast<unsigned>(std::stoul(a["--threads"]));
  opts.check_finite = false;  // validation is not what is being timed
  const int reps = std::max(1, std::stoi(a["--reps"]));
  const int warmup = std::max(0, std::stoi(a["--warmup"]));

  timing t;
  const bool on_device = opts.backend == attnpool::backend::cuda_fused ||
                         opts.backend == attnpool::backend::cuda_unfused;
  if (on_device) {
#if defined(ATTNPOOL_HAS_CUDA)
    t = run_cuda(q, k, v, out, params, opts, warmup, reps);
#else
    throw attnpool::cuda_error("attnpool was built without CUDA");
#endif
  } else {
    t = run_host(q, k, v, out, params, opts, warmup, reps);
  }
  if (!a["--out"].empty()) write_npy(a["--out"], out);
  const double med = median(t.ms);
  const double pairs = static_cast<double>(q.rows) * static_cast<double>(k.rows);
  std::printf(
      "{\"backend\": \"%s\", \"n\": %zu, \"m\": %zu, \"d\": %zu, \"dv\": %zu, \"reps\": %d, "
      "\"median_ms\": %.6g, \"min_ms\": %.6g, \"pairs_per_s\": %.6g, \"peak_bytes\": %.0f, "
      "\"timing\": \"%s\", \"threads\": %u}\n",
      attnpool::to_string(opts.backend), q.rows, k.rows, q.cols, v.cols, reps, med,
      *std::min_element(t.ms.begin(), t.ms.end()), pairs / (med * 1e-3), t.peak_bytes, t.method,
      opts.threads);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const usage_error& e) {
    std::printf("{\"error\": \"%s\"}\n", json_escape(e.what()).c_str());
    std::fputs(kUsage, stderr);
    return 2;
  } catch (const std::exception& e) {
    std::printf("{\"error\": \"%s\"}\n", json_escape(e.what()).c_str());
    return 3;
  }
}
