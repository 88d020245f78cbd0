/// \file
/// Output files that appear whole or not at all, which file a path names, and the signals that
/// must not leave a temporary file behind.
#pragma once

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

#include <sys/types.h>

namespace attnpool::cli {

/// An output file that cannot be created, written or renamed into place. Exit status 1.
class output_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The file a path leads to, as the file system knows it, so that two names (a symbolic link, a
/// hard link, "./a" and "a") compare equal exactly when they are one file: its device and
/// inode once it exists, else its directory's device and inode and its name there.
struct file_identity {
  dev_t device = 0;
  ino_t inode = 0;
  std::string name;  ///< empty for an existing file
  bool operator==(const file_identity&) const = default;
};

/// `path` after following symbolic links in its last component, as rename() would need: a
/// dangling link leads to the file it names (which does not exist yet).
/// \throws output_error on a loop of links or an unreadable link.
std::filesystem::path resolve_links(const std::filesystem::path& path);

/// The identity of the file `path` names (following links), or of the file it would create.
/// std::nullopt when neither the file nor its directory exists.
std::optional<file_identity> identify(const std::filesystem::path& path);

/// The identity of an open file descriptor (standard output), std::nullopt when it is closed.
std::optional<file_identity> identify(int fd);

/// Installs, once, the handlers that remove pending files when a signal ends the process:
/// every signal whose default action terminates it and which a program may catch (SIGHUP,
/// SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGALRM, SIGUSR1, SIGUSR2, SIGXCPU, SIGVTALRM, SIGPROF,
/// SIGPOLL, SIGPWR, SIGSTKFLT, the real-time signals); the handler removes the files, restores
/// the default action and re-raises the signal, so the process still ends by it. A signal whose
/// disposition is not the default is left alone: an inherited "ignore" (nohup, a background job's
/// SIGINT) stays in force, and so does another component's handler. SIGXFSZ (a file-size limit)
/// gets a handler that does nothing, so that the write fails with EFBIG and the tool reports an
/// error naming the file instead of dying. Faults (SIGSEGV, SIGBUS, ...) are not handled, so
/// that sanitizers and core dumps see them as they are.
void install_signal_handlers();

/// A file written under a temporary name in its destination's directory and renamed over the
/// destination only by commit(), so that nobody ever sees a half-written output: rename() within
/// one directory (one file system) is atomic on POSIX. The temporary file is created at
/// construction, which proves early, before any long computation, that the directory is
/// writable. Until commit(), the destructor removes it, and so does any signal handled by
/// install_signal_handlers().
///
/// Two kinds of destination are not plain files: a symbolic link is kept, and its target
/// replaced (or created, for a dangling link); an existing destination that is neither a regular
/// file nor a directory (a device such as /dev/null or /dev/stdout, a named pipe) is written in
/// place, because renaming over it would replace the device node itself. Only those lose the
/// all-or-nothing guarantee.
class pending_file {
 public:
  /// Creates `.NAME.tmp-PID-K` next to `destination` (or its link target), with mode 0666
  /// minus the umask like any new file; NAME is cut short where the whole would exceed the
  /// file system's 255-byte limit on a name. \throws output_error naming the directory when
  /// that fails, when `destination` is an existing directory, or when an existing device or
  /// pipe is not writable.
  explicit pending_file(std::filesystem::path destination);
  ~pending_file();
  pending_file(const pending_file&) = delete;
  pending_file& operator=(const pending_file&) = delete;

  /// Where to write: the temporary file, or the destination itself when it is a device or pipe.
  [[nodiscard]] const std::filesystem::path& temp_path() const noexcept { return temp_; }
  [[nodiscard]] const std::filesystem::path& destination() const noexcept { return dest_; }

  /// Renames the temporary file over the destination (nothing to do for a device or pipe).
  /// \throws output_error on failure (the temporary file is then removed).
  void commit();

 private:
  std::filesystem::path dest_;
  std::filesystem::path final_;  // dest_, or the file the link dest_ names
  std::filesystem::path temp_;
  bool in_place_ = false;
  int slot_ = -1;  // index in the signal handler's table
  bool committed_ = false;
};

}  // namespace attnpool::cli
