// Temporary-file-then-rename, with a signal handler that cleans up after an interrupted run.
#include "pending_file.hpp"

#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace attnpool::cli {
namespace {

// The paths the signal handler removes. A handler may only use async-signal-safe calls, so the
// table is plain char arrays, filled before a slot is published and cleared before it is reused.
// The tool writes at most three outputs (CSV, plot, heatmap); a few spare slots cost nothing.
constexpr int kSlots = 8;
constexpr std::size_t kPathMax = 4096;
std::array<std::array<char, kPathMax>, kSlots> g_paths{};
std::array<std::atomic<bool>, kSlots> g_used{};
std::atomic<bool> g_handler_installed{false};

extern "C" void remove_pending_files(int sig) {
  for (int i = 0; i < kSlots; ++i) {
    if (g_used[static_cast<std::size_t>(i)].load())
      ::unlink(g_paths[static_cast<std::size_t>(i)].data());
  }
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void install_handler_once() {
  if (g_handler_installed.exchange(true)) return;
  for (const int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction sa {};
    sa.sa_handler = remove_pending_files;
    sigemptyset(&sa.sa_mask);
    ::sigaction(sig, &sa, nullptr);
  }
}

int claim_slot(const std::string& path) {
  if (path.size() >= kPathMax) return -1;  // not cleaned on a signal; the destructor still does
  for (int i = 0; i < kSlots; ++i) {
    const auto s = static_cast<std::size_t>(i);
    if (g_used[s].load()) continue;
    std::memcpy(g_paths[s].data(), path.c_str(), path.size() + 1);
    g_used[s].store(true);
    return i;
  }
  return -1;
}

void release_slot(int slot) noexcept {
  if (slot >= 0) g_used[static_cast<std::size_t>(slot)].store(false);
}

}  // namespace

pending_file::pending_file(std::filesystem::path destination) : dest_(std::move(destination)) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(dest_, ec);  // follows symbolic links
  if (fs::is_directory(st)) {
    throw output_error(dest_.string() + ": is a directory; expected a file name");
  }
  if (fs::exists(st) && !fs::is_regular_file(st)) {
    // /dev/null, /dev/stdout, a named pipe: renaming a file over it would replace the device
    // node itself, so such a destination is written in place (and cannot be atomic).
    if (::access(dest_.c_str(), W_OK) != 0) {
      throw output_error(dest_.string() + ": cannot write: " + std::strerror(errno));
    }
    temp_ = dest_;
    in_place_ = true;
    return;
  }
  // A symbolic link stays a link: the temporary goes next to, and is renamed over, its target.
  fs::path target = dest_;
  if (fs::is_symlink(fs::symlink_status(dest_, ec))) {
    target = fs::weakly_canonical(dest_, ec);
    if (ec) throw output_error(dest_.string() + ": cannot resolve the link: " + ec.message());
  }
  final_ = target;
  // Replacing a file keeps its permissions (a private 0600 result stays private).
  const fs::file_status old_status = fs::status(target, ec);
  const bool keep_mode = fs::is_regular_file(old_status);
  fs::path dir = target.parent_path();
  if (dir.empty()) dir = ".";
  // Appended piecewise: GCC 12's -Wrestrict misfires on "literal" + std::string at -O3.
  std::string base = ".";
  base += target.filename().string();
  base += ".tmp-";
  base += std::to_string(::getpid());
  install_handler_once();
  for (int attempt = 0;; ++attempt) {
    temp_ = dir / (base + "-" + std::to_string(attempt));
    // O_EXCL: never reuse a file someone else made; mode 0666 & ~umask like fopen(..., "w").
    const int fd = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) {
      if (keep_mode) (void)::fchmod(fd, static_cast<mode_t>(old_status.permissions()));
      ::close(fd);
      break;
    }
    if (errno != EEXIST || attempt >= 100) {
      throw output_error(dest_.string() + ": cannot create a file in '" + dir.string() +
                         "': " + std::strerror(errno));
    }
  }
  slot_ = claim_slot(temp_.string());
}

pending_file::~pending_file() {
  if (!committed_ && !in_place_) {
    std::error_code ec;
    std::filesystem::remove(temp_, ec);  // never throws; a leftover is better than a crash
  }
  release_slot(slot_);
}

void pending_file::commit() {
  if (in_place_) {
    committed_ = true;
    return;
  }
  if (std::rename(temp_.c_str(), final_.c_str()) != 0) {
    const int err = errno;
    throw output_error(dest_.string() +
                       ": cannot move the finished file into place: " + std::strerror(err));
  }
  committed_ = true;
  release_slot(slot_);
  slot_ = -1;
}

}  // namespace attnpool::cli
