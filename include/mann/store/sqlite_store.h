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
};

class SqliteStore final : public Store {
 public:
  // Opens (creating when absent) and migrates the database.
  static Result<std::unique_ptr<SqliteStore>> Open(const SqliteOptions& options);
  ~SqliteStore() override;  // flushes queued work and joins the writer

  Status Commit(Mutation m) override;
  void CommitLater(Mutation m) override;
  Status Flush() override;
  Status Load(const std::function<Status(StoredEntry&&)>& fn) override;
  Result<std::vector<HistoryRecord>> History(const std::string& ns,
                                             const std::string& entry_id) override;
  Result<std::vector<NamespaceCounters>> Counters() override;
  Status SaveSession(const ChatSession& session) override;
  Result<std::optional<ChatSession>> GetSession(const std::string& id) override;
  Status AppendTurn(const ChatTurn& turn) override;
  Result<std::vector<ChatTurn>> RecentTurns(const std::string& session_id,
                                            std::size_t limit) override;
  Status CheckIntegrity() override;
  std::string Describe() const override;

  // The schema version this build writes.
  static int SchemaVersion();

 private:
  struct Impl;
  explicit SqliteStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mann::store
