// Launch of the key-parallel ("decode") forward (kernels/fused/decode_plan.hpp): the switch, the
// launch with split-K's merge, and the compiled configurations. Host-includable; the device side
// is kernels/fused/decode_agent.cuh, instantiated in kernels/fused/inst/decode_d*.cu. A header of
// its own, not more of dispatch.hpp, so that the default kernels' translation units, and with
// them their code, stay exactly as they were.
#pragma once

#include <attnpool/types.hpp>

#include "kernels/fused/params.hpp"
#include "kernels/fused/plan.hpp"

namespace attnpool::kernels {

/// Whether an isotropic, unmasked Gaussian call with 1 <= n <= 64 queries and 1 <= d <= 8
/// (decode_serves) takes the key-parallel decode kernel (fused_decode_kernel, plan_decode)
/// instead of the default fused kernel: ATTNPOOL_CUDA_DECODE=1, read once. Off by default until
/// a GPU run has passed the GPU tests and compute-sanitizer with it.
bool fused_decode();

/// Enqueues the decode kernel for a plan_decode plan, and the merge kernel when plan.splits > 1
/// (into args.out), exactly as launch_fused does for the default kernel: args.partial_state /
/// args.partial_acc hold splits x n x 2 and splits x n x dv floats when plan.splits > 1. Throws
/// cuda_error on a launch failure.
void launch_decode(fused_args args, const fused_plan& plan, stream_t stream);

/// One compiled configuration's launch: query dimension D, value window DV, R rows a block.
template <int D, int DV, int R>
void launch_decode_config(const fused_args& args, const fused_plan& plan, stream_t stream);

}  // namespace attnpool::kernels
