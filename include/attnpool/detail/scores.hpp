/// \file
/// The kernel family as log2-score functors of the squared distance, and the distance forms
/// they are fed. Shared by the CPU engine and the CUDA kernels; the fp64 reference
/// (src/reference/) deliberately does not use them: it is the independent oracle.
#pragma once

#include <attnpool/detail/fast_math.hpp>
#include <attnpool/detail/host_device.hpp>
#include <attnpool/types.hpp>

namespace attnpool::detail {

/// Squared Euclidean distance over a compile-time dimension.
template <int D>
ATTNPOOL_HD float squared_distance(const float* q, const float* k) {
  float acc = 0.0f;
  ATTNPOOL_UNROLL
  for (int c = 0; c < D; ++c) {
    const float diff = q[c] - k[c];
    acc = diff * diff + acc;
  }
  return acc;
}

/// Squared Euclidean distance over a run-time dimension (the generic path).
ATTNPOOL_HD float squared_distance(const float* q, const float* k, int d) {
  float acc = 0.0f;
  for (int c = 0; c < d; ++c) {
    const float diff = q[c] - k[c];
    acc = diff * diff + acc;
  }
  return acc;
}

/// The Gaussian kernel's score in log2 units: s2 = -||q - k||^2 * log2(e) / (2 h^2).
/// The scale is folded once on the host (in double, see gaussian_log2_scale) so that each
/// pair costs one multiply on top of the distance.
struct gaussian_log2_score {
  float neg_scale;  ///< -log2(e) / (2 h^2), rounded once to float
  static constexpr bool kCompact = false;

  ATTNPOOL_HD float operator()(float squared_dist) const { return neg_scale * squared_dist; }
};

/// log2(e) / (2 h^2), computed in double and rounded once. Callers validate h beforehand.
inline double gaussian_log2_scale(double bandwidth) {
  return 1.4426950408889634 / (2.0 * bandwidth * bandwidth);
}

// ---- The kernel family ----------------------------------------------------------------------
// Every kernel is a log2-score functor of the squared distance r2 that the engine computed:
// ||q - k||^2 (isotropic), or sum_c (q_c - k_c)^2 / h_c^2 (anisotropic; then the functor is
// built with h = 1). Each is monotone non-increasing in r2, so the engines may take a chunk's
// maximum score as the score of its smallest distance. Compact kernels (kCompact) return -inf
// outside their support, which becomes weight exactly 0; the engines must then cope with a
// chunk, tile or whole row whose maximum is -inf (see online_softmax). Constants are folded
// once on the host, in double, by make_*_score / kernel_constant.

/// Laplacian exp(-||q - k|| / h): s2 = -sqrt(r2) * log2(e) / h.
struct laplacian_log2_score {
  float neg_scale;  ///< -log2(e) / h, rounded once to float
  static constexpr bool kCompact = false;
  ATTNPOOL_HD float operator()(float squared_dist) const {
    return neg_scale * sqrt_hd(squared_dist);
  }
};

/// Epanechnikov max(0, 1 - u^2), u^2 = r2 / h^2: s2 = log2(1 - u^2) for u^2 < 1, else -inf.
struct epanechnikov_log2_score {
  float inv_h2;  ///< 1 / h^2, rounded once to float
  static constexpr bool kCompact = true;
  ATTNPOOL_HD float operator()(float squared_dist) const {
    const float u2 = squared_dist * inv_h2;
    return u2 < 1.0f ? log2_hd(1.0f - u2) : kNegInf;
  }
};

/// Boxcar 1 for u < 1, else 0: s2 = 0 inside the support, -inf outside.
struct boxcar_log2_score {
  float inv_h2;  ///< 1 / h^2, rounded once to float
  static constexpr bool kCompact = true;
  ATTNPOOL_HD float operator()(float squared_dist) const {
    return squared_dist * inv_h2 < 1.0f ? 0.0f : kNegInf;
  }
};

/// Tricube (1 - u^3)^3 for u < 1, else 0: s2 = 3 log2(1 - u^3).
struct tricube_log2_score {
  float inv_h2;  ///< 1 / h^2, rounded once to float
  static constexpr bool kCompact = true;
  ATTNPOOL_HD float operator()(float squared_dist) const {
    const float u2 = squared_dist * inv_h2;
    if (!(u2 < 1.0f)) return kNegInf;
    return 3.0f * log2_hd(1.0f - u2 * sqrt_hd(u2));
  }
};

/// Squared distance with one weight per dimension, sum_c w_c (q_c - k_c)^2 with w_c = 1 / h_c^2
/// (the anisotropic bandwidth). The difference is taken on the unscaled inputs, exactly as the
/// isotropic path does, so far-away keys lose nothing to a prior rescaling of the coordinates.
ATTNPOOL_HD float weighted_squared_distance(const float* q, const float* k, const float* w, int d) {
  float acc = 0.0f;
  for (int c = 0; c < d; ++c) {
    const float diff = q[c] - k[c];
    acc = (w[c] * diff) * diff + acc;
  }
  return acc;
}

/// The float constant of a kernel's score functor for bandwidth h, computed in double and
/// rounded once: -log2(e)/(2h^2) (gaussian), -log2(e)/h (laplacian), 1/h^2 (compact kernels).
inline float kernel_constant(kernel k, double h) {
  switch (k) {
    case kernel::gaussian:
      return static_cast<float>(-gaussian_log2_scale(h));
    case kernel::laplacian:
      return static_cast<float>(-1.4426950408889634 / h);
    case kernel::epanechnikov:
    case kernel::boxcar:
    case kernel::tricube:
      break;
  }
  return static_cast<float>(1.0 / (h * h));
}

/// How a call's bandwidth enters the scores, the same on the CPU and the GPU: an isotropic h
/// (params.bandwidth, or bandwidths[0] for d = 1, which keeps the fast paths), or for an
/// anisotropic bandwidth with d >= 2 per-dimension weights 1 / h_c^2 on the squared
/// differences and h = 1 in the score functor. Host code, for validated params.
struct bandwidth_setup {
  double h = 1.0;              ///< the functor's bandwidth
  std::size_t dims = 0;        ///< weighted dimensions; 0: isotropic
  const double* hc = nullptr;  ///< params.bandwidths.data() when weighted

  /// The weight of dimension c < dims, 1 / h_c^2 rounded once to float.
  float weight(std::size_t c) const { return static_cast<float>(1.0 / (hc[c] * hc[c])); }
};

inline bandwidth_setup bandwidth_setup_of(const pool_params& params) {
  bandwidth_setup b;
  if (params.bandwidths.empty()) {
    b.h = params.bandwidth;
  } else if (params.bandwidths.size() == 1) {
    b.h = params.bandwidths[0];
  } else {
    b.dims = params.bandwidths.size();
    b.hc = params.bandwidths.data();
  }
  return b;
}

/// Calls f(score) with the score functor of kernel k built from kernel_constant(k, h): the one
/// run-time -> compile-time kernel switch of the host engines.
template <class F>
decltype(auto) with_kernel_score(kernel k, double h, F&& f) {
  const float c = kernel_constant(k, h);
  switch (k) {
    case kernel::laplacian:
      return f(laplacian_log2_score{c});
    case kernel::epanechnikov:
      return f(epanechnikov_log2_score{c});
    case kernel::boxcar:
      return f(boxcar_log2_score{c});
    case kernel::tricube:
      return f(tricube_log2_score{c});
    case kernel::gaussian:
      break;
  }
  return f(gaussian_log2_score{c});
}

/// Every kernel behind one run-time switch: what the GPU runs for the non-Gaussian kernels (one
/// extra instantiation set instead of one per kernel; the Gaussian keeps its own functor and
/// code). `constant` is kernel_constant(kind, h).
struct generic_log2_score {
  kernel kind;
  float constant;
  static constexpr bool kCompact = true;  // may return -inf: the engines take the guarded path
  ATTNPOOL_HD float operator()(float squared_dist) const {
    switch (kind) {
      case kernel::laplacian:
        return laplacian_log2_score{constant}(squared_dist);
      case kernel::epanechnikov:
        return epanechnikov_log2_score{constant}(squared_dist);
      case kernel::boxcar:
        return boxcar_log2_score{constant}(squared_dist);
      case kernel::tricube:
        return tricube_log2_score{constant}(squared_dist);
      case kernel::gaussian:
        break;
    }
    return gaussian_log2_score{constant}(squared_dist);
  }
};

}  // namespace attnpool::detail
