/// \file
/// Views, parameters and options shared by every attnpool entry point.
#pragma once

#include <cstddef>
#include <span>
#include <type_traits>

/// The CUDA runtime's stream handle is `struct CUstream_st*`; naming it here keeps this header
/// usable without the CUDA headers. attnpool::stream_t and cudaStream_t are the same type.
struct CUstream_st;

namespace attnpool {

/// A CUDA stream handle (identical to cudaStream_t). nullptr is the legacy default stream.
using stream_t = CUstream_st*;

/// A non-owning, row-major matrix: element (i, j) lives at data[i * ld + j], with ld >= cols.
/// The memory may be host or device memory; which one is fixed by the function it is passed to.
template <class T>
struct matrix_view {
  T* data = nullptr;
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::size_t ld = 0;  ///< leading dimension (row stride), in elements

  constexpr matrix_view() = default;
  /// A view with an explicit leading dimension.
  constexpr matrix_view(T* data_, std::size_t rows_, std::size_t cols_, std::size_t ld_)
      : data(data_), rows(rows_), cols(cols_), ld(ld_) {}
  /// A densely packed view (ld == cols).
  constexpr matrix_view(T* data_, std::size_t rows_, std::size_t cols_)
      : matrix_view(data_, rows_, cols_, cols_) {}

  /// Views of float convert to views of const float.
  template <class U>
    requires(!std::is_same_v<U, T> && std::is_same_v<U, const T>)
  constexpr operator matrix_view<U>() const {  // NOLINT(google-explicit-constructor)
    return {data, rows, cols, ld};
  }

  /// Element access; host memory only.
  constexpr T& operator()(std::size_t i, std::size_t j) const { return data[i * ld + j]; }
  /// Pointer to row i.
  constexpr T* row(std::size_t i) const { return data + i * ld; }
};

using const_view = matrix_view<const float>;  ///< read-only float32 matrix
using mutable_view = matrix_view<float>;      ///< writable float32 matrix

/// A non-owning, strided view of the partial streaming-softmax states (attnpool/batched.hpp)
/// of `shards` shards over the same n query rows and dv value columns. The memory may be host or
/// device memory; which one is fixed by the function it is passed to. Shard s, row i:
///
///   max[i] (log2 units) at max[s * state_stride + i * state_step]
///   sum[i]              at sum[s * state_stride + i * state_step]
///   acc row i           at acc.data + s * acc_stride + i * acc.ld (dv floats, unnormalised)
///
/// acc.rows = n and acc.cols = dv describe one shard. The public layouts have state_step 1
/// (cuda::packed_partial); the fused kernel's split-K workspace interleaves {max, sum}
/// (state_step 2, sum = max + 1). One shard: `shards` = 1 and the shard strides are not read.
template <class T>
struct partials_view {
  T* max = nullptr;
  T* sum = nullptr;
  matrix_view<T> acc;             ///< shard 0's n x dv accumulators
  std::size_t shards = 1;         ///< S
  std::size_t state_stride = 0;   ///< elements between shards' max (and sum) arrays
  std::size_t acc_stride = 0;     ///< elements between shards' accumulators
  std::size_t state_step = 1;     ///< elements between rows' max (and sum)

  /// Views of float convert to views of const float.
  template <class U>
    requires(!std::is_same_v<U, T> && std::is_same_v<U, const T>)
  constexpr operator partials_view<U>() const {  // NOLINT(google-explicit-constructor)
    return {max, sum, acc, shards, state_stride, acc_stride, state_step};
  }
};

using const_partials = partials_view<const float>;  ///< read-only partial states
using mutable_partials = partials_view<float>;      ///< writable partial states

/// The kernel K(u), u = ||q - k|| / h, that turns a distance into a weight: w_ij is
/// proportional to K(u_ij). Compact kernels (epanechnikov, boxcar, tricube) give weight exactly 0
/// to keys with u >= 1; a query with no key inside its support is handled by
/// pool_params::empty. The learning API (learn.hpp) supports only the Gaussian.
enum class kernel {
  gaussian,      ///< exp(-u^2 / 2)
  laplacian,     ///< exp(-u)
  epanechnikov,  ///< max(0, 1 - u^2)
  boxcar,        ///< 1 for u < 1, else 0
  tricube,       ///< (1 - u^3)^3 for u < 1, else 0
};

/// What a compact kernel does with a query that has no key inside its support (every weight
/// would be 0/0). Never reached with gaussian or laplacian, whose support is everything.
enum class empty_support {
  error,    ///< throw invalid_argument naming the first such query row (the default)
  nan,      ///< that row's output (or weights row) is NaN, on purpose and documented
  nearest,  ///< that row gets the value of its nearest visible key (weight 1 there, 0 elsewhere;
            ///< the lowest key index on a tie). Host backends only.
};

/// Where the computation runs.
enum class backend {
  automatic,     ///< cuda_fused where built with CUDA and a device exists, else cpu
  reference,     ///< double-precision two-pass loops: the oracle, slow by design
  cpu,           ///< multi-threaded, vectorised streaming-softmax engine (float32)
  cuda_fused,    ///< one fused CUDA kernel; the n x m matrix is never stored
  cuda_unfused,  ///< cuBLAS GEMMs + row-softmax kernel; materialises the n x m weights
};

/// Which keys a query may attend to. Masks are described by rule, never stored as an n x m
/// matrix: a masked key gets score -inf (weight 0) inside the tile loops. A query row left with
/// no key is rejected up front (invalid_argument naming the row).
/// On the GPU, pool() and pool_backward() take masks on cuda_fused (masked forwards run the fused
/// family's generic-score instantiations, or with ATTNPOOL_CUDA_FUSED_MASKS=1 in the environment
/// the Gaussian ones of the fast path; valid_lens is copied into the workspace). cuda_unfused
/// and attention_weights() on the GPU reject any mask other than `none` with invalid_argument
/// "... not implemented on the GPU yet".
enum class mask {
  none,           ///< every query sees every key
  leave_one_out,  ///< query i skips key i (queries and keys are the same set; needs n == m)
  valid_length,   ///< query i sees keys [0, valid_lens[i]) (the book's masked softmax)
};

/// The smallest bandwidth (scalar or anisotropic entry) any entry point accepts: 2^-63, so that
/// 1/h^2 = 2^126 and log2(e)/(2h^2) are finite float32 numbers, which the float32 engines fold
/// the bandwidth into. check_bandwidth() applies it.
inline constexpr double kMinBandwidth = 0x1p-63;

/// The most CPU threads a call starts (options::threads is clamped to it).
inline constexpr unsigned kMaxThreads = 1024;

/// What is computed.
struct pool_params {
  /// h finite and >= kMinBandwidth (ignored if bandwidths is set)
  double bandwidth = 1.0;
  attnpool::kernel kernel = attnpool::kernel::gaussian;
  /// Anisotropic bandwidth: empty (the default) means the isotropic `bandwidth`; otherwise d
  /// host-memory values h_c, each finite and >= kMinBandwidth, and
  /// u^2 = sum_c (q_c - k_c)^2 / h_c^2. Not copied; it must stay valid for the duration of the call. Not supported by the learning API,
  /// nor by the GPU paths for d > kMaxGpuAnisotropicDims.
  std::span<const double> bandwidths{};
  /// Compact kernels only: the policy for a query with no key in the support.
  attnpool::empty_support empty = attnpool::empty_support::error;
  attnpool::mask mask = attnpool::mask::none;   ///< which keys each query may see
  /// mask::valid_length only: n host-memory counts, each in [1, m]. Not copied; it must stay
  /// valid for the duration of the call. Ignored (and may be empty) for other masks.
  std::span<const std::size_t> valid_lens{};
};

/// How and where it is computed.
struct options {
  attnpool::backend backend = attnpool::backend::automatic;
  /// CPU engine threads; 0 = all hardware threads. Larger values are clamped to the hardware
  /// threads and to kMaxThreads; a thread that cannot be started is an attnpool::error.
  unsigned threads = 0;
  bool check_finite = true;   ///< reject NaN/Inf inputs (an extra read of the inputs)
  stream_t stream = nullptr;  ///< CUDA stream for the device-pointer API
  void* workspace = nullptr;  ///< device workspace for the device-pointer API (may be null
                              ///< when the workspace query returned 0)
  std::size_t workspace_bytes = 0;  ///< size of `workspace` in bytes
};

/// The name of a backend ("cpu", "cuda_fused", ...).
const char* to_string(backend b) noexcept;

/// Parses a backend name as printed by to_string. Throws invalid_argument naming the value.
backend parse_backend(const char* name);

/// The name of a mask ("none", "leave_one_out", "valid_length").
const char* to_string(mask m) noexcept;

/// The name of a kernel ("gaussian", "laplacian", "epanechnikov", "boxcar", "tricube").
const char* to_string(kernel k) noexcept;

/// Parses a kernel name as printed by to_string. Throws invalid_argument naming the value.
kernel parse_kernel(const char* name);

/// Whether a kernel has compact support (weight exactly 0 for u >= 1).
constexpr bool is_compact(kernel k) noexcept {
  return k == kernel::epanechnikov || k == kernel::boxcar || k == kernel::tricube;
}

/// The largest d for which the GPU paths take an anisotropic bandwidth (the per-dimension
/// weights travel in the kernel's parameter block).
inline constexpr std::size_t kMaxGpuAnisotropicDims = 64;

}  // namespace attnpool
