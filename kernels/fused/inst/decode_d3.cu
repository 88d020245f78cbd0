// Instantiates the decode kernel for query dimension D = 3, every value window and both row
// counts; one file per D so that the instantiations compile in parallel.
#include "kernels/fused/decode_agent.cuh"

namespace attnpool::kernels {
ATTNPOOL_DECODE_INSTANTIATE(3)
}  // namespace attnpool::kernels
