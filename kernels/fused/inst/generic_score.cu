// Instantiates the generic-score fused path (detail::generic_log2_score: every kernel of the family
// and anisotropic distances) for the generic query dimension D = 0 and every value window DV: the
// only instantiations the non-Gaussian kernels add (see launch_fused_config in
// kernels/fused/params.hpp).
#include "kernels/fused/agent.cuh"

namespace attnpool::kernels {
ATTNPOOL_FUSED_ANY_INSTANTIATE(1)
ATTNPOOL_FUSED_ANY_INSTANTIATE(2)
ATTNPOOL_FUSED_ANY_INSTANTIATE(4)
ATTNPOOL_FUSED_ANY_INSTANTIATE(8)
ATTNPOOL_FUSED_ANY_INSTANTIATE(16)
ATTNPOOL_FUSED_ANY_INSTANTIATE(32)
ATTNPOOL_FUSED_ANY_INSTANTIATE(64)
}  // namespace attnpool::kernels
