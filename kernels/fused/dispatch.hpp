// Launch of the fused forward family (CUB's dispatch layer): enqueues the configuration a plan
// picked, and the merge of split-K states. Host-includable; the device side is
// kernels/fused/agent.cuh, instantiated in kernels/fused/inst/.
#pragma once

#include <attnpool/detail/scores.hpp>
#include <attnpool/types.hpp>

#include "kernels/fused/params.hpp"
#include "kernels/fused/plan.hpp"

namespace attnpool::kernels {

/// Enqueues the fused kernel (and the merge kernel when plan.splits > 1) on `stream`. `args`
/// holds the problem and, for split-K, partial_state / partial_acc carved from the workspace;
/// the split fields of `args` are filled in from `plan`. `any` null: the Gaussian fast path;
/// else the generic-score path (plan made with generic_score = true). Throws cuda_error on a launch
/// failure.
/// `mask` (read only on the Gaussian path, and only when its kind is not none): the masked fast
/// path (fused_masks()); no batch blocks.
void launch_fused(fused_args args, const fused_plan& plan, stream_t stream,
                  const generic_score_args* generic = nullptr,
                  const detail::mask_rule* mask = nullptr);

/// pool_partial's launch: the fused kernel writes per-split partial states into
/// args.partial_state / args.partial_acc (required, also for plan.splits == 1: splits x n x 2
/// and splits x n x dv floats), then the merge kernel merges the splits in its fixed order into
/// `dst`, one shard of device memory: the merged, unnormalised max, sum and acc row of every
/// query row.
void launch_fused_partial(fused_args args, const fused_plan& plan, stream_t stream,
                          const generic_score_args* generic, const mutable_partials& dst);

/// Whether the d = dv = 1 Gaussian launch takes the expanded score (detail/expanded_score.hpp)
/// where its bound holds: ATTNPOOL_CUDA_D1_EXPANDED=1, read once. Off by default until a GPU
/// run has passed the GPU tests and compute-sanitizer with it. (Not a fused_args field: any
/// change to the parameter block changes the code of every configuration.)
bool fused_d1_expanded();

/// Whether a masked Gaussian call (mask::leave_one_out or mask::valid_length, isotropic) takes
/// the fast path (fused_pool_masked_kernel) instead of the generic-score path:
/// ATTNPOOL_CUDA_FUSED_MASKS=1, read once. Off by default until a GPU run has passed the GPU
/// tests and compute-sanitizer with it. Under a mask the expanded d = 1 score is not taken.
bool fused_masks();

/// Whether an unmasked Gaussian call with a query dimension of 9..64 and dv <= 8 (compiled D in
/// {16, 32, 64}, DV <= 8: fused_tc_serves) takes the tensor-core kernel (fused_pool_tc_kernel,
/// 3xTF32 scores, kernels/fused/tc_agent.cuh), whose blocks fall back to the FFMA agent where the
/// score's bound fails (detail/tf32_split.hpp): ATTNPOOL_CUDA_TENSOR_CORES=1, read once. Off by
/// default until a GPU run has passed the GPU tests and compute-sanitizer with it.
bool fused_tensor_cores();

/// One compiled configuration's launch (defined in kernels/fused/agent.cuh, instantiated per D).
/// Score is the per-pair score functor: the Gaussian's for the 63 fast-path configurations; the
/// run-time-switched detail::generic_log2_score (every kernel, anisotropic distances) only for the
/// generic D = 0 path and the 7 value windows (kernels/fused/inst/generic_score.cu), so the kernel
/// family costs 7 instantiations, not 4 x 63. Non-Gaussian kernels are therefore not the fast path
/// for small d: they read query and key rows through L1 instead of registers / shared memory.
template <int D, int DV, class Score = detail::gaussian_log2_score>
void launch_fused_config(const fused_args& args, const fused_plan& plan, stream_t stream,
                         const generic_score_args* generic = nullptr);

#define ATTNPOOL_FUSED_EXTERN(D)                                                                  \
  extern template void launch_fused_config<D, 1>(const fused_args&, const fused_plan&, stream_t,  \
                                                 const generic_score_args*);                      \
  extern template void launch_fused_config<D, 2>(const fused_args&, const fused_plan&, stream_t,  \
                                                 const generic_score_args*);                      \
  extern template void launch_fused_config<D, 4>(const fused_args&, const fused_plan&, stream_t,  \
                                                 const generic_score_args*);                      \
  extern template void launch_fused_config<D, 8>(const fused_args&, const fused_plan&, stream_t,  \
                                                 const generic_score_args*);                      \
  extern template void launch_fused_config<D, 16>(const fused_args&, const fused_plan&, stream_t, \
                                                  const generic_score_args*);                     \
  extern template void launch_fused_config<D, 32>(const fused_args&, const fused_plan&, stream_t, \
                                                  const generic_score_args*);                     \
  extern template void launch_fused_config<D, 64>(const fused_args&, const fused_plan&, stream_t, \
                                                  const generic_score_args*);
ATTNPOOL_FUSED_EXTERN(0)
ATTNPOOL_FUSED_EXTERN(1)
ATTNPOOL_FUSED_EXTERN(2)
ATTNPOOL_FUSED_EXTERN(3)
ATTNPOOL_FUSED_EXTERN(4)
ATTNPOOL_FUSED_EXTERN(8)
ATTNPOOL_FUSED_EXTERN(16)
ATTNPOOL_FUSED_EXTERN(32)
ATTNPOOL_FUSED_EXTERN(64)
#undef ATTNPOOL_FUSED_EXTERN
/// The tensor-core launch of one configuration (kernels/fused/tc_agent.cuh, instantiated per D in
/// kernels/fused/inst/d*_tc.cu for the windows DV <= 8); the plan is the FFMA kernel's.
template <int D, int DV>
void launch_fused_tc_config(const fused_args& args, const fused_plan& plan, stream_t stream);

#define ATTNPOOL_FUSED_TC_EXTERN(D)                                                       \
  extern template void launch_fused_tc_config<D, 1>(const fused_args&, const fused_plan&, \
                                                    stream_t);                            \
  extern template void launch_fused_tc_config<D, 2>(const fused_args&, const fused_plan&, \
                                                    stream_t);                            \
  extern template void launch_fused_tc_config<D, 4>(const fused_args&, const fused_plan&, \
                                                    stream_t);                            \
  extern template void launch_fused_tc_config<D, 8>(const fused_args&, const fused_plan&, stream_t);
ATTNPOOL_FUSED_TC_EXTERN(16)
ATTNPOOL_FUSED_TC_EXTERN(32)
ATTNPOOL_FUSED_TC_EXTERN(64)
#undef ATTNPOOL_FUSED_TC_EXTERN

/// The masked Gaussian fast path's launch of one configuration (kernels/fused/agent.cuh,
/// instantiated per D in kernels/fused/inst/d*_masked.cu); `rule` holds device pointers.
template <int D, int DV>
void launch_fused_masked_config(const fused_args& args, const fused_plan& plan, stream_t stream,
                                const detail::mask_rule& rule);

#define ATTNPOOL_FUSED_MASKED_EXTERN(D)                                                        \
  extern template void launch_fused_masked_config<D, 1>(const fused_args&, const fused_plan&,  \
                                                        stream_t, const detail::mask_rule&);   \
  extern template void launch_fused_masked_config<D, 2>(const fused_args&, const fused_plan&,  \
                                                        stream_t, const detail::mask_rule&);   \
  extern template void launch_fused_masked_config<D, 4>(const fused_args&, const fused_plan&,  \
                                                        stream_t, const detail::mask_rule&);   \
  extern template void launch_fused_masked_config<D, 8>(const fused_args&, const fused_plan&,  \
                                                        stream_t, const detail::mask_rule&);   \
  extern template void launch_fused_masked_config<D, 16>(const fused_args&, const fused_plan&, \
                                                         stream_t, const detail::mask_rule&);  \
  extern template void launch_fused_masked_config<D, 32>(const fused_args&, const fused_plan&, \
                                                         stream_t, const detail::mask_rule&);  \
  extern template void launch_fused_masked_config<D, 64>(const fused_args&, const fused_plan&, \
                                                         stream_t, const detail::mask_rule&);
ATTNPOOL_FUSED_MASKED_EXTERN(0)
ATTNPOOL_FUSED_MASKED_EXTERN(1)
ATTNPOOL_FUSED_MASKED_EXTERN(2)
ATTNPOOL_FUSED_MASKED_EXTERN(3)
ATTNPOOL_FUSED_MASKED_EXTERN(4)
ATTNPOOL_FUSED_MASKED_EXTERN(8)
ATTNPOOL_FUSED_MASKED_EXTERN(16)
ATTNPOOL_FUSED_MASKED_EXTERN(32)
ATTNPOOL_FUSED_MASKED_EXTERN(64)
#undef ATTNPOOL_FUSED_MASKED_EXTERN

#define ATTNPOOL_FUSED_GENERIC_EXTERN(DV)                                      \
  extern template void launch_fused_config<0, DV, detail::generic_log2_score>( \
      const fused_args&, const fused_plan&, stream_t, const generic_score_args*);
ATTNPOOL_FUSED_GENERIC_EXTERN(1)
ATTNPOOL_FUSED_GENERIC_EXTERN(2)
ATTNPOOL_FUSED_GENERIC_EXTERN(4)
ATTNPOOL_FUSED_GENERIC_EXTERN(8)
ATTNPOOL_FUSED_GENERIC_EXTERN(16)
ATTNPOOL_FUSED_GENERIC_EXTERN(32)
ATTNPOOL_FUSED_GENERIC_EXTERN(64)
#undef ATTNPOOL_FUSED_GENERIC_EXTERN

}  // namespace attnpool::kernels
