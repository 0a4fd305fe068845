// SqliteStore: the embedded default Store, one SQLite file in WAL mode.
//
// Durability: synchronous=FULL with group commit. Commit() hands its mutation to one writer
// thread, which applies every mutation waiting at that moment in a single transaction and then
// wakes each caller with its own outcome. A failing mutation is retried alone so one bad batch
// member cannot fail its neighbours. Once Commit() returns OK the change survives SIGKILL and
// power loss (as far as the disk honours fsync).
//
// Schema changes are versioned migrations recorded in `PRAGMA user_version`; opening a file
// written by a newer mann fails with a clear error instead of guessing.
//
// Errors name the file and what to do: a locked database (another process holds it), a
// read-only file or directory, a full disk, and a corrupt file are each reported as a Status,
// never a crash.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <mann/store/store.h>

namespace mann::store {

struct SqliteOptions {
  std::string path;            // the database file; its directory must exist
  int busy_timeout_ms = 5000;  // how long to wait for a lock held by another connection
  bool read_only = false;
  // Upper bound on mutations grouped into one transaction.
  std::size_t max_group = 512;
  // Test hook: caps the file at this many pages (PRAGMA max_page_count) so tests can provoke
  // a full disk without root. 0 leaves SQLite's default (effectively unlimited).
  std::int64_t max_page_count = 0;
};

// Counters of the writer thread, for tests and metrics. Monotonic over the store's lifetime.
struct SqliteStats {
  std::uint64_t transactions = 0;  // write transactions committed (groups and solo retries)
  std::uint64_t writes = 0;        // queued writes (mutations, sessions, turns) that landed
  std::uint64_t failed = 0;        // queued writes that failed and were reported or logged
  std::uint64_t split_groups = 0;  // groups that failed and were retried one write at a time
};

class SqliteStore final : public Store {
 public:
  // Opens (creating when absent) and migrates the database.
  static Result<std::unique_ptr<SqliteStore>> Open(const SqliteOptions& options);
  ~SqliteStore() override;  // flushes queued work and joins the writer

  Status Commit(Mutation m) override;
  // Joins the same queue as Commit(), so enqueued mutations share group commits.
  std::future<Status> Enqueue(Mutation m) override;
  void CommitLater(Mutation m) override;
  // Also returns the first CommitLater() failure since the previous Flush(), if any.
  Status Flush() override;
  // Scans on a connection of its own, so `fn` may call back into the store.
  Status Load(const std::function<Status(StoredEntry&&)>& fn) override;
  Result<std::vector<HistoryRecord>> History(const std::string& ns,
                                             const std::string& entry_id) override;
  Result<std::vector<NamespaceCounters>> Counters() override;
  Status SaveSession(const ChatSession& session) override;
  Result<std::optional<ChatSession>> GetSession(const std::string& id) override;
  Status AppendTurn(const ChatTurn& turn) override;
  Result<std::vector<ChatTurn>> RecentTurns(const std::string& session_id,
                                            std::size_t limit) override;
  // The outbox writes join the group-commit queue like Commit(): each returns once durable.
  Status EnqueueDeliveries(std::vector<OutboxDelivery> rows) override;
  Result<std::vector<OutboxDelivery>> DueDeliveries(const std::string& channel,
                                                    TimestampMs due_by_ms,
                                                    std::size_t limit) override;
  Status RecordDeliveryAttempt(const DeliveryOutcome& outcome) override;
  Status MarkDelivered(const DeliveryOutcome& outcome) override;
  Status MarkFailed(const DeliveryOutcome& outcome) override;
  Status MarkDead(const DeliveryOutcome& outcome) override;
  Result<std::vector<OutboxChannelStats>> OutboxStats(TimestampMs since_ms) override;
  Result<std::vector<OutboxDelivery>> RecentDeliveries(std::size_t limit) override;
  Result<std::int64_t> PruneDeliveries(TimestampMs before_ms) override;
  Status CheckIntegrity() override;
  std::string Describe() const override;

  // The schema version this build writes.
  static int SchemaVersion();

  // A snapshot of the writer's counters; safe from any thread.
  SqliteStats Stats() const;

 private:
  struct Impl;
  explicit SqliteStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mann::store
