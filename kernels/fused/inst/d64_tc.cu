// Instantiates the tensor-core path (fused_tensor_cores) for D = 64 and the value windows
// DV <= 8; a file apart from the FFMA one, so that the two compile in parallel.
#include "kernels/fused/tc_agent.cuh"

namespace attnpool::kernels {
ATTNPOOL_FUSED_TC_INSTANTIATE(64)
}  // namespace attnpool::kernels
