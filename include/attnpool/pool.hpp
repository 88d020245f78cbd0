/// \file
/// Attention pooling (Nadaraya-Watson kernel regression) on host memory.
///
///   out[i, :] = sum_j w[i, j] * values[j, :],   w[i, :] = softmax_j(score(queries[i], keys[j]))
///
/// Queries are n x d, keys m x d, values m x dv, all row-major float32. Every function here takes
/// host pointers; the CUDA backends copy to the device, run and copy back (see attnpool/cuda.hpp
/// for the device-pointer API). All functions are synchronous and thread-safe.
#pragma once

#include <attnpool/types.hpp>

#include <span>
#include <vector>

namespace attnpool {

/// Pools `values` with Gaussian attention weights between `queries` and `keys`.
/// \param queries n x d
/// \param keys    m x d, m >= 1
/// \param values  m x dv, dv >= 1
/// \param out     n x dv; written only if every check passes (left untouched on error, an empty
///                compact-kernel row under empty_support::error included). It must not overlap
///                any input, not even by part of a row, and must not alias one either (in-place
///                pooling is not supported).
/// \throws invalid_argument on a bad shape, leading dimension, null pointer, bandwidth, size
///         overflow, overlapping buffers or (with opts.check_finite) a NaN/Inf input; the
///         message names the argument and the value. Values near float32's range are pooled
///         without overflow (each value column is scaled by a power of two where the sum over
///         the keys could overflow, which leaves the result exact), so finite inputs whose
///         answer is finite give a finite output.
/// \throws error when a CPU worker thread cannot be started (the message names the resource).
/// \throws cuda_error when a CUDA backend fails or the library was built without CUDA.
/// n == 0 is a valid no-op.
void pool(const_view queries, const_view keys, const_view values, mutable_view out,
          const pool_params& params = {}, const options& opts = {});

/// The n x m row-stochastic weight matrix, for heatmaps. Materialises n * m floats by
/// definition; cuda_fused falls back to the unfused path here. Throws as pool().
void attention_weights(const_view queries, const_view keys, mutable_view weights,
                       const pool_params& params = {}, const options& opts = {});

/// The notebook's baseline: every output row is the mean of the value rows (accumulated in
/// double). out is n x dv where n is the number of predictions wanted. Throws as pool().
void average_pool(const_view values, mutable_view out, const options& opts = {});

/// Host convenience overload for small data. queries holds n * d floats, keys m * d, values
/// m * dv (dv inferred), all densely packed. Returns the n * dv outputs.
std::vector<float> pool(std::span<const float> queries, std::span<const float> keys,
                        std::span<const float> values, std::size_t d,
                        const pool_params& params = {}, const options& opts = {});

/// The notebook's one-dimensional case (d = 1): returns one prediction per query when values
/// holds one float per key.
std::vector<float> pool(std::span<const float> queries, std::span<const float> keys,
                        std::span<const float> values, const pool_params& params = {},
                        const options& opts = {});

/// Convenience overload of attention_weights: returns n * m weights, row-major.
std::vector<float> attention_weights(std::span<const float> queries, std::span<const float> keys,
                                     std::size_t d, const pool_params& params = {},
                                     const options& opts = {});

/// Checks one bandwidth as every entry point does: finite and >= kMinBandwidth. Throws
/// invalid_argument whose message names `name` ("bandwidth", "bandwidths[2]", "--bandwidth")
/// and the value; for front ends that check their arguments before building a call.
void check_bandwidth(double h, const char* name = "bandwidth");

/// The backend that `automatic` resolves to on this machine (never `automatic`).
backend resolve_backend(backend requested);

/// True when the library was built with CUDA and a CUDA device is usable.
bool cuda_available() noexcept;

}  // namespace attnpool
