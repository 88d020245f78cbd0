// Instantiates the masked Gaussian fast path (fused_masks) for D = 2 and every value
// window DV; a file apart from the unmasked one, so that the two compile in parallel.
#include "kernels/fused/agent.cuh"

namespace attnpool::kernels {
ATTNPOOL_FUSED_MASKED_INSTANTIATE(2)
}  // namespace attnpool::kernels
