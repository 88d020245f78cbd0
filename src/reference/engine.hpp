// The fp64 reference behind the public entry points' backend::reference: float outputs from
// the oracle of <attnpool/reference.hpp>. Arguments arrive validated.
#pragma once

#include <attnpool/learn.hpp>
#include <attnpool/types.hpp>

#include <cstddef>
#include <span>
#include <vector>

namespace attnpool::detail {

void reference_pool(const_view q, const_view k, const_view v, mutable_view out,
                    const pool_params& params);
void reference_weights(const_view q, const_view k, mutable_view w, const pool_params& params);
// pool_backward on backend::reference: reference::pool_backward rounded into the gradient views.
void reference_backward(const_view q, const_view k, const_view v, const_view dout,
                        const pool_gradients& grads, const pool_params& params);
// loo_cv_error on backend::reference: reference::pool with the leave-one-out mask per bandwidth.
std::vector<double> reference_loo_cv(const_view x, const_view y, std::span<const double> hs);

}  // namespace attnpool::detail
