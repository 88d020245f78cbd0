// Instantiates the fused kernel for query dimension D = 64 and every value window DV.
// One file per D so that the instantiations compile in parallel (FlashAttention's layout).
#include "kernels/fused/agent.cuh"

namespace attnpool::kernels {
ATTNPOOL_FUSED_INSTANTIATE(64)
}  // namespace attnpool::kernels
