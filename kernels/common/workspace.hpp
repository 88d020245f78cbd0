// Workspace layout shared by the kernels and their host side: every array carved out of a
// caller's workspace starts on this alignment.
#pragma once

#include <cstddef>

namespace attnpool::kernels {

/// Alignment of every array carved out of a workspace (cudaMalloc's guarantee).
inline constexpr std::size_t kWorkspaceAlign = 256;

constexpr std::size_t align_up(std::size_t x, std::size_t a = kWorkspaceAlign) {
  return (x + a - 1) / a * a;
}

}  // namespace attnpool::kernels
