/// \file
/// Output files that appear whole or not at all.
#pragma once

#include <filesystem>
#include <stdexcept>

namespace attnpool::cli {

/// An output file that cannot be created, written or renamed into place. Exit status 1.
class output_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A file written under a temporary name in its destination's directory and renamed over the
/// destination only by commit(), so that nobody ever sees a half-written output: rename() within
/// one directory (one file system) is atomic on POSIX. The temporary file is created at
/// construction, which proves early, before any long computation, that the directory is
/// writable. Until commit(), the destructor removes it, and so does SIGINT/SIGTERM/SIGHUP (the
/// handler unlinks every pending file, then re-raises the signal with its default action).
///
/// Two kinds of destination are not plain files: a symbolic link is kept, and its target
/// replaced; an existing destination that is neither a regular file nor a directory (a device
/// such as /dev/null or /dev/stdout, a named pipe) is written in place, because renaming over it
/// would replace the device node itself. Only those lose the all-or-nothing guarantee.
class pending_file {
 public:
  /// Creates `.NAME.tmp-PID-K` next to `destination` (or its link target), with mode 0666
  /// minus the umask like any new file. \throws output_error naming the directory when that
  /// fails, when `destination` is an existing directory, or when an existing device or pipe is
  /// not writable.
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
  std::filesystem::path final_;  // dest_, or the target of the link dest_ names
  std::filesystem::path temp_;
  bool in_place_ = false;
  int slot_ = -1;  // index in the signal handler's table
  bool committed_ = false;
};

}  // namespace attnpool::cli
