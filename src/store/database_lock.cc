#include "database_lock.h"

#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <mann/core/log.h>

namespace mann::store::internal {
namespace {

// Polling is enough: a restore holds the lock for the few renames it makes.
constexpr std::chrono::milliseconds kPollInterval{10};

int OpenLockFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  // A reader of a database it may not write can still lock an existing file opened read-only.
  if (fd < 0) fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  return fd;
}

}  // namespace

std::string LockPathFor(const std::string& database_path) { return database_path + ".lock"; }

Result<DatabaseLock> DatabaseLock::Acquire(const std::string& database_path, Mode mode,
                                           std::chrono::milliseconds wait) {
  const std::string path = LockPathFor(database_path);
  const int fd = OpenLockFile(path);
  if (fd < 0) {
    const int error = errno;
    if (mode == Mode::kShared) {
      log::Get("store")->debug("database lock unavailable file={} error={}", path,
                               std::strerror(error));
      return DatabaseLock();
    }
    return FailedPreconditionError(
        fmt::format("cannot open lock file {}: {}; check the permissions of its directory", path,
                    std::strerror(error)));
  }
  DatabaseLock lock(fd);

  const int operation = (mode == Mode::kShared ? LOCK_SH : LOCK_EX) | LOCK_NB;
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    if (::flock(fd, operation) == 0) return lock;
    const int error = errno;
    if (error == EINTR) continue;
    if (error != EWOULDBLOCK) {
      return UnavailableError(fmt::format("cannot lock {}: {}", path, std::strerror(error)));
    }
    if (mode == Mode::kExclusive) {
      return FailedPreconditionError(fmt::format(
          "database {} is in use by a running mann process (it holds {}); stop it (mann serve, "
          "mann chat, ...) first",
          database_path, path));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return UnavailableError(
          fmt::format("database {} is being restored (lock file {} is held exclusively); wait for "
                      "`mann restore` to finish and retry",
                      database_path, path));
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

Result<bool> DatabaseLock::IsHeld(const std::string& database_path) {
  const std::string path = LockPathFor(database_path);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return false;
    return UnavailableError(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  }
  DatabaseLock probe(fd);  // closing it drops the probe's own lock
  for (;;) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return false;
    if (errno == EWOULDBLOCK) return true;
    if (errno != EINTR) {
      return UnavailableError(fmt::format("cannot lock {}: {}", path, std::strerror(errno)));
    }
  }
}

DatabaseLock::DatabaseLock(DatabaseLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

DatabaseLock& DatabaseLock::operator=(DatabaseLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

// Closing the descriptor releases the flock.
DatabaseLock::~DatabaseLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace mann::store::internal
