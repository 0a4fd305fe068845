// PostgresStore: the Store that several `mann serve` replicas share, on PostgreSQL through
// libpqxx.
//
// Semantics are SqliteStore's (see store.h): a Mutation is one transaction, and Commit() returns
// OK only once PostgreSQL has committed it (synchronous_commit as the server is configured; on by
// default, so the commit record is flushed). Concurrent Commit() and Enqueue() calls are grouped
// by one writer thread into one transaction, like SqliteStore's group commit; a group that
// fails for a reason other than the connection is retried one mutation at a time.
//
// Replicas: every Commit that upserts, deletes or forgets entries appends rows to the `changes`
// table in the same transaction and sends NOTIFY mann_changes (payload: the newest seq).
// Appending takes a transaction-scoped advisory lock, so change seqs are assigned in commit
// order across all replicas and a follower never skips a row that commits late. Rows older than
// `change_retention` are pruned by the writer; ChangesSince() says when a reader fell behind
// the pruning.
//
// Schema: versioned migrations recorded in `schema_version`, applied at Open() inside one
// transaction under pg_advisory_xact_lock, so replicas starting together migrate once. A
// database written by a newer mann is refused.
//
// Failure: connections come from a small pool and are made on demand. When the server cannot be
// reached, a call returns Unavailable naming the server (never the password) within about
// connect_timeout (statements are bounded by statement_timeout, dead peers by TCP keepalives
// and tcp_user_timeout); the next call connects afresh. A server that keeps its connections
// but stops answering (SIGSTOP, a hung disk) is bounded from the client: a watchdog thread shuts
// down the socket of any call that has held its connection longer than connect_timeout +
// statement_timeout + 1 s; that call returns Unavailable ("did not answer within N ms") without
// a retry, and its connection is dropped. A connection found broken before its
// transaction committed is replaced and the call retried once, so a server restart costs no
// error to a caller that arrives after it. When a COMMIT itself is cut off, the outcome is
// unknown: the caller gets Unavailable and must not assume either way (the memory bank then
// reloads from the store).
//
// Thread-safety: every member is safe to call from any thread; WaitForChanges() admits one
// caller at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <mann/store/store.h>

namespace mann::store {

struct PostgresOptions {
  // postgresql://user[:password]@host[:port]/database[?param=value...]; libpq parameters in
  // the query string are kept (sslmode, ...).
  std::string url;
  std::chrono::seconds connect_timeout{5};
  // Server-side bound on any one statement (SET statement_timeout).
  std::chrono::milliseconds statement_timeout{30'000};
  // Connections open at once; a caller beyond them waits up to connect_timeout.
  std::size_t max_connections = 8;
  // Upper bound on mutations grouped into one transaction.
  std::size_t max_group = 256;
  // Change-log rows older than this are pruned (checked at most once a minute).
  std::chrono::seconds change_retention{86'400};
};

// Counters of the writer thread, for tests and metrics. Monotonic over the store's lifetime.
struct PostgresStats {
  std::uint64_t transactions = 0;  // write transactions committed
  std::uint64_t writes = 0;        // queued mutations that landed
  std::uint64_t failed = 0;        // queued mutations that failed
  std::uint64_t connects = 0;      // connections opened (pool and listener)
  std::uint64_t pruned_changes = 0;
};

class PostgresStore final : public Store {
 public:
  // Connects, migrates and starts the writer. Unavailable when the server cannot be reached;
  // InvalidArgument for a URL that is not postgresql:// or postgres://.
  static Result<std::unique_ptr<PostgresStore>> Open(const PostgresOptions& options);
  ~PostgresStore() override;  // finishes queued work, joins the writer, closes connections

  Status Commit(Mutation m) override;
  std::future<Status> Enqueue(Mutation m) override;
  void CommitLater(Mutation m) override;
  // Also returns the first CommitLater() failure since the previous Flush(), if any.
  Status Flush() override;
  // One REPEATABLE READ snapshot read in pages; `fn` may call back into the store.
  Status Load(const std::function<Status(StoredEntry&&)>& fn) override;
  Result<std::vector<HistoryRecord>> History(const std::string& ns,
                                             const std::string& entry_id) override;
  Result<std::vector<NamespaceCounters>> Counters() override;
  Status SaveSession(const ChatSession& session) override;
  Result<std::optional<ChatSession>> GetSession(const std::string& id) override;
  Status AppendTurn(const ChatTurn& turn) override;
  Result<std::vector<ChatTurn>> RecentTurns(const std::string& session_id,
                                            std::size_t limit) override;
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
  // Checks that the schema is this build's and that every stored row decodes.
  Status CheckIntegrity() override;
  // "postgresql://user@host:port/db": the URL without password.
  std::string Describe() const override;

  bool SharedByReplicas() const override { return true; }
  Result<std::int64_t> LastChangeSeq() override;
  Result<std::vector<Change>> ChangesSince(std::int64_t after_seq, std::size_t limit) override;
  // LISTENs on a connection of its own. Returns at once after (re)connecting it, since
  // notifications sent before LISTEN are not delivered.
  Status WaitForChanges(std::chrono::milliseconds timeout) override;

  // Deletes change rows older than `older_than` now (the writer also does so by itself).
  Result<std::int64_t> PruneChanges(std::chrono::seconds older_than);

  // The schema version this build writes.
  static int SchemaVersion();

  PostgresStats Stats() const;

 private:
  struct Impl;
  explicit PostgresStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The URL with any password removed (from the user part and from a password= parameter), for
// logs and errors.
std::string RedactPostgresUrl(const std::string& url);

}  // namespace mann::store
