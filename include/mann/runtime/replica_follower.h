// ReplicaFollower: keeps one process's memory bank up to date with what other replicas commit
// to a shared store (store::Store::SharedByReplicas()).
//
// One thread loops:
//
//   read ChangesSince(last) in batches -> bank.ApplyReplicated() -> on_applied(ns) -> advance last
//   -> WaitForChanges(poll_interval)   (NOTIFY wakes it at once; the timeout is a safety poll)
//
// `last` only advances past changes the bank has applied, so after any error (the database
// down, a broken connection, an encoder failure) the follower logs one warning, retries with
// exponential backoff and resumes from the same seq: no change is missed, and applying one
// twice is harmless. When the change log was pruned past `last`, or the bank lost entries in a
// failed reload (MemoryBank::NeedsReload()), it reloads the whole bank and calls
// on_applied("") (meaning: every namespace).
//
// Metrics (in the registry given): mann_replica_changes_applied_total,
// mann_replica_lag_seconds (age of the newest change when it was applied, by the database's
// clock; 0 once caught up), mann_replica_errors_total, mann_replica_reloads_total.
//
// Thread-safety: every member is safe to call from any thread. The store and the bank must
// outlive the follower.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <mann/core/memory_bank.h>
#include <mann/core/status.h>
#include <mann/metrics/registry.h>
#include <mann/store/store.h>

namespace mann::runtime {

struct FollowerOptions {
  std::chrono::milliseconds poll_interval{1000};  // WaitForChanges() timeout
  std::size_t batch = 500;                        // changes read per ChangesSince() call
  std::chrono::milliseconds initial_backoff{200};
  // Retries are one connection attempt each, cheap against a database that is down; a short
  // ceiling keeps the catch-up after it comes back within a couple of seconds.
  std::chrono::milliseconds max_backoff{2000};
  metrics::Registry* registry = &metrics::Registry::Default();  // null: no metrics
};

class ReplicaFollower {
 public:
  // Starts following after `start_seq`. Read it with store.LastChangeSeq() *before* the bank
  // loads: a change committed between that read and the load is then applied once more
  // (harmless) instead of being missed.
  static Result<std::unique_ptr<ReplicaFollower>> Start(store::Store& store, MemoryBank& bank,
                                                        std::int64_t start_seq,
                                                        FollowerOptions options = {});
  // Stops the thread; may wait for one WaitForChanges() to time out (poll_interval).
  ~ReplicaFollower();
  ReplicaFollower(const ReplicaFollower&) = delete;
  ReplicaFollower& operator=(const ReplicaFollower&) = delete;

  // Called on the follower's thread after changes of namespace `ns` reached memory (for
  // example to drop cached search results of that namespace); "" after a full reload. Replaces
  // any previous hook; pass nullptr to remove it before whatever it captures dies. It must
  // not block for long.
  void SetOnApplied(std::function<void(const std::string& ns)> on_applied);

  // The seq of the newest change applied (or skipped as already held).
  std::int64_t last_seq() const;
  std::uint64_t changes_applied() const;
  std::uint64_t errors() const;

  // Waits until last_seq() >= seq or `timeout` passes; true when reached.
  bool WaitForSeq(std::int64_t seq, std::chrono::milliseconds timeout) const;

 private:
  struct Impl;
  explicit ReplicaFollower(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Installs a follower's on_applied hook for the guard's lifetime and removes it on destruction,
// so the hook never outlives what it captures. A null follower (not replicated) does nothing.
class ScopedOnApplied {
 public:
  ScopedOnApplied(ReplicaFollower* follower, std::function<void(const std::string& ns)> hook);
  ~ScopedOnApplied();
  ScopedOnApplied(const ScopedOnApplied&) = delete;
  ScopedOnApplied& operator=(const ScopedOnApplied&) = delete;

 private:
  ReplicaFollower* follower_;
};

}  // namespace mann::runtime
