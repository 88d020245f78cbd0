// Temporary-file-then-rename, file identity, and the signal handlers that clean up after an
// interrupted run.
#include "pending_file.hpp"

#include "number_text.hpp"

#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace attnpool::cli {
namespace {

namespace fs = std::filesystem;

// The paths the signal handler removes. A handler may only use async-signal-safe calls, so the
// table is plain char arrays, filled before a slot is published and cleared before it is reused.
// The tool writes at most three outputs (CSV, plot, heatmap); a few spare slots cost nothing.
constexpr int kSlots = 8;
constexpr std::size_t kPathMax = 4096;
std::array<std::array<char, kPathMax>, kSlots> g_paths{};
std::array<std::atomic<bool>, kSlots> g_used{};
std::atomic<bool> g_handlers_installed{false};

// Signals whose default action ends the process and that a program may catch. Faults (SIGSEGV,
// SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS) are left to their defaults and to sanitizers.
std::vector<int> cleanup_signals() {
  std::vector<int> s = {SIGHUP,  SIGINT,  SIGQUIT,   SIGTERM, SIGPIPE, SIGALRM, SIGUSR1,
                        SIGUSR2, SIGXCPU, SIGVTALRM, SIGPROF, SIGPOLL, SIGPWR,  SIGSTKFLT};
  for (int sig = SIGRTMIN; sig <= SIGRTMAX; ++sig) s.push_back(sig);
  return s;
}

// The signals the handlers touch, blocked while a temporary file is created or renamed, so that
// no signal falls between the file's creation (or rename) and its entry in the table.
sigset_t handled_set() {
  sigset_t set;
  sigemptyset(&set);
  for (const int sig : cleanup_signals()) sigaddset(&set, sig);
  return set;
}

class signals_blocked {
 public:
  signals_blocked() noexcept {
    const sigset_t set = handled_set();
    ::pthread_sigmask(SIG_BLOCK, &set, &old_);
  }
  ~signals_blocked() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  signals_blocked(const signals_blocked&) = delete;
  signals_blocked& operator=(const signals_blocked&) = delete;

 private:
  sigset_t old_{};
};

extern "C" void remove_pending_files(int sig) {
  const int saved = errno;
  for (std::size_t i = 0; i < kSlots; ++i) {
    if (g_used[i].load()) ::unlink(g_paths[i].data());
  }
  // The signal is blocked while its handler runs: it is delivered, with its default action, as
  // soon as the handler returns.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ::sigaction(sig, &dfl, nullptr);
  ::raise(sig);
  errno = saved;
}

// SIGXFSZ: doing nothing makes write() fail with EFBIG, which the writer reports.
extern "C" void ignore_file_size_signal(int) {}

// Installs `handler` for `sig` unless its disposition is not the default (inherited SIG_IGN, or
// a handler of someone else's).
void install_if_default(int sig, void (*handler)(int)) {
  struct sigaction old {};
  if (::sigaction(sig, nullptr, &old) != 0) return;
  if ((old.sa_flags & SA_SIGINFO) != 0 || old.sa_handler != SIG_DFL) return;
  struct sigaction sa {};
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  ::sigaction(sig, &sa, nullptr);
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

// The longest prefix of `name` of at most `bytes` bytes that does not split a UTF-8 character.
std::string utf8_prefix(const std::string& name, std::size_t bytes) {
  if (name.size() <= bytes) return name;
  std::size_t n = bytes;
  while (n > 0 && (static_cast<unsigned char>(name[n]) & 0xc0) == 0x80) --n;
  return name.substr(0, n);
}

std::string shown(const fs::path& p) {
  return printable(p.string(), 4096);
}

}  // namespace

void install_signal_handlers() {
  if (g_handlers_installed.exchange(true)) return;
  for (const int sig : cleanup_signals()) install_if_default(sig, remove_pending_files);
  install_if_default(SIGXFSZ, ignore_file_size_signal);
}

fs::path resolve_links(const fs::path& path) {
  // 40 is Linux's own limit on links followed in one lookup (MAXSYMLINKS).
  fs::path p = path;
  for (int hops = 0; hops < 40; ++hops) {
    std::error_code ec;
    if (!fs::is_symlink(fs::symlink_status(p, ec))) return p;
    const fs::path target = fs::read_symlink(p, ec);
    if (ec) throw output_error(shown(path) + ": cannot read the link: " + ec.message());
    p = target.is_absolute() ? target : p.parent_path() / target;
  }
  throw output_error(shown(path) + ": too many levels of symbolic links");
}

std::optional<file_identity> identify(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) return file_identity{st.st_dev, st.st_ino, {}};
  fs::path target;
  try {
    target = resolve_links(path);
  } catch (const output_error&) {
    return std::nullopt;
  }
  fs::path dir = target.parent_path();
  if (dir.empty()) dir = ".";
  if (::stat(dir.c_str(), &st) != 0) return std::nullopt;
  return file_identity{st.st_dev, st.st_ino, target.filename().string()};
}

std::optional<file_identity> identify(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return std::nullopt;
  return file_identity{st.st_dev, st.st_ino, {}};
}

pending_file::pending_file(fs::path destination) : dest_(std::move(destination)) {
  std::error_code ec;
  const fs::file_status st = fs::status(dest_, ec);  // follows symbolic links
  if (fs::is_directory(st)) {
    throw output_error(shown(dest_) + ": is a directory; expected a file name");
  }
  if (fs::exists(st) && !fs::is_regular_file(st)) {
    // /dev/null, /dev/stdout, a named pipe: renaming a file over it would replace the device
    // node itself, so such a destination is written in place (and cannot be atomic).
    if (::access(dest_.c_str(), W_OK) != 0) {
      throw output_error(shown(dest_) + ": cannot write: " + std::strerror(errno));
    }
    temp_ = dest_;
    in_place_ = true;
    return;
  }
  // A symbolic link stays a link: the temporary goes next to, and is renamed over, the file it
  // names, which a dangling link's rename creates.
  final_ = resolve_links(dest_);
  // Replacing a file keeps its permissions (a private 0600 result stays private).
  const fs::file_status old_status = fs::status(final_, ec);
  const bool keep_mode = fs::is_regular_file(old_status);
  fs::path dir = final_.parent_path();
  if (dir.empty()) dir = ".";
  // ".NAME.tmp-PID-K" must fit the 255 bytes a file name may have (NAME_MAX on Linux's file
  // systems): a valid 250-byte NAME is shortened here rather than refused. 255 - 1 - 24 leaves
  // room for ".tmp-", a PID and an attempt number.
  std::string base = ".";
  base += utf8_prefix(final_.filename().string(), 255 - 1 - 24);
  base += ".tmp-";
  base += std::to_string(::getpid());
  install_signal_handlers();
  const signals_blocked blocked;
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
      throw output_error(shown(dest_) + ": cannot create a file in '" + shown(dir) +
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
  const signals_blocked blocked;  // the slot is released with the rename, not after it
  if (std::rename(temp_.c_str(), final_.c_str()) != 0) {
    const int err = errno;
    throw output_error(shown(dest_) +
                       ": cannot move the finished file into place: " + std::strerror(err));
  }
  committed_ = true;
  release_slot(slot_);
  slot_ = -1;
}

}  // namespace attnpool::cli
