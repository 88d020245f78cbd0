// The one backend choice (src/validate/backend.hpp) with explicit capabilities, so that the rules
// for a machine with a GPU are checked on one without: every entry point's automatic, and the
// refusals that name the entry point and the backend.
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>

#include <gtest/gtest.h>

#include <string>

#include "src/validate/backend.hpp"

namespace {

using attnpool::backend;
using attnpool::detail::backend_needs;
using attnpool::detail::capabilities;
using attnpool::detail::choose_backend;
using attnpool::detail::entry_point;

constexpr capabilities kNoCuda{false, 0};
constexpr capabilities kCudaNoDevice{true, 0};
constexpr capabilities kOneGpu{true, 1};

backend choose(entry_point e, backend requested, const capabilities& caps, std::size_t d = 1) {
  return choose_backend(backend_needs{"f", e, requested, d}, caps);
}

std::string refusal(entry_point e, backend requested, const capabilities& caps) {
  try {
    choose(e, requested, caps);
  } catch (const attnpool::invalid_argument& err) {
    return err.what();
  }
  return "";
}

TEST(BackendChoice, AutomaticPerEntryPoint) {
  for (entry_point e : {entry_point::pool, entry_point::attention_weights,
                        entry_point::average_pool, entry_point::bandwidth}) {
    EXPECT_EQ(choose(e, backend::automatic, kNoCuda), backend::cpu);
    EXPECT_EQ(choose(e, backend::automatic, kCudaNoDevice), backend::cpu);
    EXPECT_EQ(choose(e, backend::automatic, kOneGpu), backend::cuda_fused);
  }
  // The learning API: the GPU backward only up to its dimension limit.
  EXPECT_EQ(choose(entry_point::learning, backend::automatic, kOneGpu, 1), backend::cuda_fused);
  EXPECT_EQ(choose(entry_point::learning, backend::automatic, kOneGpu,
                   attnpool::kMaxGpuBackwardDims + 1),
            backend::cpu);
  EXPECT_EQ(choose(entry_point::learning, backend::automatic, kNoCuda), backend::cpu);
  // Batched and partial calls stay on the CPU unless cuda_fused is asked for.
  EXPECT_EQ(choose(entry_point::batched, backend::automatic, kOneGpu), backend::cpu);
  EXPECT_EQ(choose(entry_point::partial, backend::automatic, kOneGpu), backend::cpu);
  // The device-pointer entry points are the GPU's whatever the machine.
  EXPECT_EQ(choose(entry_point::device_pool, backend::automatic, kNoCuda), backend::cuda_fused);
  EXPECT_EQ(choose(entry_point::device_fused, backend::automatic, kNoCuda), backend::cuda_fused);
  EXPECT_EQ(choose(entry_point::device_backward, backend::automatic, kNoCuda),
            backend::cuda_fused);
}

TEST(BackendChoice, ExplicitBackendsPassThrough) {
  for (backend b : {backend::reference, backend::cpu, backend::cuda_fused, backend::cuda_unfused})
    EXPECT_EQ(choose(entry_point::pool, b, kNoCuda), b) << attnpool::to_string(b);
  EXPECT_EQ(choose(entry_point::device_pool, backend::cuda_unfused, kOneGpu),
            backend::cuda_unfused);
}

TEST(BackendChoice, RefusalsNameTheEntryPointAndTheBackend) {
  struct refused {
    entry_point entry;
    backend requested;
    const char* says;
  };
  for (const refused& r : {
           refused{entry_point::learning, backend::cuda_unfused, "f: backend cuda_unfused"},
           refused{entry_point::bandwidth, backend::cuda_unfused, "f: backend cuda_unfused"},
           refused{entry_point::batched, backend::cuda_unfused, "f: backend cuda_unfused"},
           refused{entry_point::partial, backend::reference, "f: backend reference"},
           refused{entry_point::device_pool, backend::cpu, "got cpu"},
           refused{entry_point::device_fused, backend::cuda_unfused, "got cuda_unfused"},
           refused{entry_point::device_backward, backend::reference, "got reference"},
       }) {
    const std::string what = refusal(r.entry, r.requested, kOneGpu);
    EXPECT_NE(what.find(r.says), std::string::npos)
        << "entry " << static_cast<int>(r.entry) << ": '" << what << "'";
  }
  const std::string unknown = refusal(entry_point::pool, static_cast<backend>(99), kOneGpu);
  EXPECT_NE(unknown.find("unknown backend 99"), std::string::npos) << unknown;
}

}  // namespace
