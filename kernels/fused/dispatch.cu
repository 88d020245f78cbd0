// Dispatch layer of the fused family: the launch plan (configuration, grid, split-K, batch
// blocks) and the launch through dispatch_dims, and the decode kernel's launch
// (kernels/fused/decode.hpp); split-K's merge is kernels/merge/merge.cu.
#include <attnpool/detail/scores.hpp>
#include <attnpool/error.hpp>

#include "kernels/common/cuda_check.hpp"
#include "kernels/common/workspace.hpp"
#include "kernels/fused/decode.hpp"
#include "kernels/fused/decode_plan.hpp"
#include "kernels/fused/dispatch.hpp"
#include "kernels/fused/split_plan.hpp"
#include "kernels/fused/traits.hpp"
#include "kernels/merge/states.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <string_view>

namespace attnpool::kernels {
namespace {

// Split-K never cuts the keys finer than this: below it the per-split fixed cost (loading the
// queries, writing and merging a partial state) outweighs the parallelism gained. A paper
// estimate (4 tiles of 128 keys), not yet measured.
constexpr std::size_t kMinKeysPerSplit = 512;

std::size_t ceil_div(std::size_t a, std::size_t b) {
  return (a + b - 1) / b;
}

// rows_per_block and blocks_per_sm of the configuration serving (d, dv).
struct shape_consts {
  std::size_t rows_per_block, blocks_per_sm;
};
shape_consts shape_consts_for(std::size_t d, std::size_t dv, bool generic_score) {
  const auto consts = [](auto dc, auto dvc) {
    using traits = fused_traits<decltype(dc)::value, decltype(dvc)::value>;
    return shape_consts{static_cast<std::size_t>(traits::kRowsPerBlock),
                        static_cast<std::size_t>(traits::kBlocksPerSm)};
  };
  // The generic-score path is compiled for the generic D = 0 only.
  return generic_score ? dispatch_dv<0>(dv, consts) : dispatch_dims(d, dv, consts);
}

// The split-K layout of the workspace as stacked states: {max, sum} interleaved per row.
const_partials split_states(const fused_args& args, int splits) {
  const auto dv = static_cast<std::size_t>(args.dv);
  const_partials src;
  src.max = args.partial_state;
  src.sum = args.partial_state + 1;
  src.state_step = 2;
  src.state_stride = 2 * args.n;
  src.acc = const_view{args.partial_acc, args.n, dv};
  src.acc_stride = args.n * dv;
  src.shards = static_cast<std::size_t>(splits);
  return src;
}

void launch_kernel(const fused_args& args, const fused_plan& plan, stream_t stream,
                   const generic_score_args* generic, const detail::mask_rule* mask) {
  if (generic != nullptr) {
    ATTNPOOL_EXPECTS(plan.d_bucket == 0, "launch_fused: a non-Gaussian or anisotropic call needs ",
                     "a plan made with generic_score = true");
    dispatch_dv<0>(static_cast<std::size_t>(plan.dv_bucket), [&](auto dc, auto dvc) {
      launch_fused_config<decltype(dc)::value, decltype(dvc)::value, detail::generic_log2_score>(
          args, plan, stream, generic);
    });
  } else if (mask != nullptr && mask->kind != attnpool::mask::none) {
    ATTNPOOL_EXPECTS(args.batch_blocks == nullptr, "launch_fused: the masked fast path takes ",
                     "one problem, not batch blocks");
    dispatch_dims(static_cast<std::size_t>(args.d), static_cast<std::size_t>(args.dv),
                  [&](auto dc, auto dvc) {
                    launch_fused_masked_config<decltype(dc)::value, decltype(dvc)::value>(
                        args, plan, stream, *mask);
                  });
  } else {
    dispatch_dims(static_cast<std::size_t>(args.d), static_cast<std::size_t>(args.dv),
                  [&](auto dc, auto dvc) {
                    constexpr int D = decltype(dc)::value, DV = decltype(dvc)::value;
                    if constexpr (fused_tc_serves(D, DV)) {
                      if (fused_tensor_cores()) {
                        launch_fused_tc_config<D, DV>(args, plan, stream);
                        return;
                      }
                    }
                    launch_fused_config<D, DV>(args, plan, stream);
                  });
  }
}

// Split-K around one kernel launch, the same for every kernel that writes the fused family's
// partial layout: launch(args) writes partial states when plan.splits > 1 (then the merge kernel
// writes `out`), else the normalised output itself.
template <class Launch>
void launch_split_k(fused_args args, const fused_plan& plan, stream_t stream, Launch&& launch) {
  args.splits = plan.splits;
  args.keys_per_split = plan.keys_per_split;
  float* final_out = args.out;
  if (plan.splits > 1) {
    // Partial results only; the merge kernel writes `out`.
    args.out = nullptr;
  } else {
    // Normalised output straight from the kernel (it writes partials whenever partial_acc is
    // set).
    args.partial_state = nullptr;
    args.partial_acc = nullptr;
  }
  launch(static_cast<const fused_args&>(args));
  if (plan.splits > 1) {
    merge_target dst;
    dst.out = final_out;
    dst.ldo = args.ldo;
    launch_merge_states(split_states(args, plan.splits), dst, stream);
  }
}

// A path's switch: the environment variable set to exactly "1".
bool switched_on(const char* name) {
  const char* env = std::getenv(name);
  return env != nullptr && std::string_view(env) == "1";
}

}  // namespace

bool fused_d1_expanded() {
  static const bool on = switched_on("ATTNPOOL_CUDA_D1_EXPANDED");
  return on;
}

bool fused_masks() {
  static const bool on = switched_on("ATTNPOOL_CUDA_FUSED_MASKS");
  return on;
}

bool fused_decode() {
  static const bool on = switched_on("ATTNPOOL_CUDA_DECODE");
  return on;
}

bool fused_tensor_cores() {
  static const bool on = switched_on("ATTNPOOL_CUDA_TENSOR_CORES");
  return on;
}

fused_plan plan_fused(std::size_t n, std::size_t m, std::size_t d, std::size_t dv, int sm_count,
                      int forced_splits, bool generic_score) {
  fused_plan plan;
  plan.d_bucket = generic_score ? 0 : fused_d_bucket(d);
  plan.dv_bucket = fused_dv_bucket(dv);
  const shape_consts k = shape_consts_for(d, dv, generic_score);
  plan.rows_per_block = k.rows_per_block;
  const std::size_t gx = ceil_div(n, k.rows_per_block);
  const std::size_t gy = ceil_div(dv, static_cast<std::size_t>(plan.dv_bucket));
  ATTNPOOL_EXPECTS(gx <= static_cast<std::size_t>(std::numeric_limits<int>::max()),
                   "cuda fused pool: n = ", n, " needs more than 2^31 - 1 blocks");
  ATTNPOOL_EXPECTS(gy <= 65535, "cuda fused pool: dv = ", dv,
                   " needs more than 65535 value "
                   "windows of ",
                   plan.dv_bucket, " columns");
  plan.grid_x = static_cast<unsigned>(gx);
  plan.grid_y = static_cast<unsigned>(gy);

  // Flash-decoding: when the query blocks cannot fill the GPU, cut the keys into ranges so that
  // the grid covers every SM kBlocksPerSm times, but never below kMinKeysPerSplit keys.
  plan_key_splits(plan, m, gx * gy,
                  static_cast<std::size_t>(std::max(sm_count, 1)) * k.blocks_per_sm,
                  kMinKeysPerSplit, forced_splits);
  return plan;
}

std::size_t fused_rows_per_block(std::size_t d, std::size_t dv, bool generic_score) {
  return shape_consts_for(d, dv, generic_score).rows_per_block;
}

std::vector<fused_block> plan_batch_blocks(std::span<const std::size_t> query_offsets,
                                           std::span<const std::size_t> key_offsets,
                                           std::size_t rows_per_block) {
  std::vector<fused_block> blocks;
  const std::size_t problems = query_offsets.empty() ? 0 : query_offsets.size() - 1;
  for (std::size_t b = 0; b < problems; ++b) {
    for (std::size_t r = query_offsets[b]; r < query_offsets[b + 1]; r += rows_per_block) {
      blocks.push_back({r, std::min(r + rows_per_block, query_offsets[b + 1]), key_offsets[b],
                        key_offsets[b + 1]});
    }
  }
  return blocks;
}

std::size_t max_batch_blocks(std::size_t problems, std::size_t total_rows,
                             std::size_t rows_per_block) {
  return ceil_div(total_rows, rows_per_block) + problems;
}

fused_plan plan_fused_batched(std::size_t blocks, std::size_t d, std::size_t dv,
                              bool generic_score) {
  fused_plan plan;
  plan.d_bucket = generic_score ? 0 : fused_d_bucket(d);
  plan.dv_bucket = fused_dv_bucket(dv);
  plan.rows_per_block = shape_consts_for(d, dv, generic_score).rows_per_block;
  const std::size_t gy = ceil_div(dv, static_cast<std::size_t>(plan.dv_bucket));
  ATTNPOOL_EXPECTS(blocks <= static_cast<std::size_t>(std::numeric_limits<int>::max()),
                   "cuda fused pool_batched: the batch needs ", blocks,
                   " blocks, more than 2^31 - 1");
  ATTNPOOL_EXPECTS(gy <= 65535, "cuda fused pool_batched: dv = ", dv,
                   " needs more than 65535 value windows of ", plan.dv_bucket, " columns");
  plan.grid_x = static_cast<unsigned>(blocks);
  plan.grid_y = static_cast<unsigned>(gy);
  plan.splits = 1;
  plan.keys_per_split = 0;  // unused: each block's keys come from its table entry
  return plan;
}

void launch_fused(fused_args args, const fused_plan& plan, stream_t stream,
                  const generic_score_args* generic, const detail::mask_rule* mask) {
  launch_split_k(args, plan, stream,
                 [&](const fused_args& a) { launch_kernel(a, plan, stream, generic, mask); });
}

void launch_decode(fused_args args, const fused_plan& plan, stream_t stream) {
  launch_split_k(args, plan, stream, [&](const fused_args& a) {
    decode_d_buckets::dispatch(static_cast<std::size_t>(plan.d_bucket), [&](auto dc) {
      decode_dv_buckets::dispatch(static_cast<std::size_t>(plan.dv_bucket), [&](auto dvc) {
        constexpr int D = decltype(dc)::value, DV = decltype(dvc)::value;
        if (plan.rows_per_block == 1) {
          launch_decode_config<D, DV, 1>(a, plan, stream);
        } else {
          launch_decode_config<D, DV, decode_traits<D, DV>::kRows>(a, plan, stream);
        }
      });
    });
  });
}

void launch_fused_partial(fused_args args, const fused_plan& plan, stream_t stream,
                          const generic_score_args* generic, const mutable_partials& dst) {
  ATTNPOOL_EXPECTS(args.partial_state != nullptr && args.partial_acc != nullptr,
                   "launch_fused_partial: the split states need workspace");
  ATTNPOOL_EXPECTS(args.batch_blocks == nullptr, "launch_fused_partial: no batched launch");
  args.splits = plan.splits;
  args.keys_per_split = plan.keys_per_split;
  args.out = nullptr;
  launch_kernel(args, plan, stream, generic, nullptr);
  merge_target t;
  t.state = dst;
  launch_merge_states(split_states(args, plan.splits), t, stream);
}

}  // namespace attnpool::kernels
