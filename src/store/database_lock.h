// DatabaseLock: an advisory lock on a database file, so that `mann restore` can tell whether a
// running mann uses the file and no mann opens it while it is being replaced.
//
// The lock is flock(2) on a companion file, <database>.lock, created beside the database (mode
// 0600) and never removed. SQLite's own locks cannot serve: they are held only during
// transactions, so an idle `mann serve` would look unused. Every SqliteStore holds the lock
// shared for its lifetime (and a backup while it reads); a restore takes it exclusive, without
// waiting, and fails when anyone holds it.
//
// flock locks belong to an open file description: two stores in one process conflict with a
// restore in the same process exactly as across processes, and the descriptor is close-on-exec,
// so a child (an upload command, pg_dump) never inherits the lock.
//
// Thread-safety: a DatabaseLock is a value owned by one thread at a time.
#pragma once

#include <chrono>
#include <string>

#include <mann/core/status.h>

namespace mann::store::internal {

// "<database_path>.lock".
std::string LockPathFor(const std::string& database_path);

class DatabaseLock {
 public:
  enum class Mode { kShared, kExclusive };

  // Shared: waits up to `wait` for an exclusive holder (a restore) to let go, then Unavailable
  // naming the database. When the lock file cannot be opened at all (a read-only directory)
  // it returns an unheld lock: SQLite's open then reports the directory's real problem.
  // Exclusive: does not wait; FailedPrecondition "in use" when any lock is held, and when the
  // lock file cannot be opened.
  static Result<DatabaseLock> Acquire(const std::string& database_path, Mode mode,
                                      std::chrono::milliseconds wait = {});

  // True when some DatabaseLock on the file is held (by any process); false also when there is
  // no lock file, which no store has ever opened. Takes and drops the lock when it is free.
  static Result<bool> IsHeld(const std::string& database_path);

  DatabaseLock() = default;
  DatabaseLock(DatabaseLock&& other) noexcept;
  DatabaseLock& operator=(DatabaseLock&& other) noexcept;
  DatabaseLock(const DatabaseLock&) = delete;
  DatabaseLock& operator=(const DatabaseLock&) = delete;
  ~DatabaseLock();  // releases the lock

  bool held() const { return fd_ >= 0; }

 private:
  explicit DatabaseLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace mann::store::internal
