/// \file
/// The one run-time d -> compile-time D switch (FlashAttention's static switch, in one place):
/// a family names the dimensions it compiles as a bucket set, and every caller turns a run-time
/// d into a std::integral_constant through it. Host code only (it picks device instantiations).
#pragma once

#include <cstddef>
#include <type_traits>

namespace attnpool::detail {

/// Compile-time dimension tag handed to a dispatch callback.
template <int N>
using dim_c = std::integral_constant<int, N>;

namespace dims_impl {

template <int Fallback, bool kExact, class F>
decltype(auto) first_fit(std::size_t, F& f) {
  return f(dim_c<Fallback>{});
}

template <int Fallback, bool kExact, int D, int... Ds, class F>
decltype(auto) first_fit(std::size_t d, F& f) {
  if (kExact ? d == static_cast<std::size_t>(D) : d <= static_cast<std::size_t>(D))
    return f(dim_c<D>{});
  return first_fit<Fallback, kExact, Ds...>(d, f);
}

}  // namespace dims_impl

/// The compiled dimensions Ds of a family, in increasing order, and the one that serves
/// every other d (Fallback: 0 for a generic instantiation that takes any d, or the largest
/// member for a family whose d is bounded by validation).
template <int Fallback, int... Ds>
struct dim_buckets {
  /// The smallest member >= d, else Fallback.
  static constexpr int bucket(std::size_t d) {
    int b = Fallback;
    bool found = false;
    ((!found && d <= static_cast<std::size_t>(Ds) ? (b = Ds, found = true) : false), ...);
    return b;
  }

  /// f(dim_c<bucket(d)>{}): the instantiation that serves d, zero-padded up to it.
  template <class F>
  static decltype(auto) dispatch(std::size_t d, F&& f) {
    return dims_impl::first_fit<Fallback, false, Ds...>(d, f);
  }

  /// f(dim_c<d>{}) when d is a member, else f(dim_c<Fallback>{}): for code whose
  /// specialisations do not zero-pad.
  template <class F>
  static decltype(auto) dispatch_exact(std::size_t d, F&& f) {
    return dims_impl::first_fit<Fallback, true, Ds...>(d, f);
  }
};

/// Powers of two up to 64, capped there: the fused family's value windows and the backward
/// pass's query dimensions (d <= 64 there).
using pow2_dims_to_64 = dim_buckets<64, 1, 2, 4, 8, 16, 32, 64>;

}  // namespace attnpool::detail
