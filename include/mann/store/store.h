// Store: durable storage of memory entries, their history, counters and chat sessions.
//
// The memory bank keeps every live entry of a namespace in memory (for its indexes) and uses the
// store as the durable truth: a Mutation is applied atomically, and Commit() returns only once
// it is durable. Start-up loads everything back with Load().
//
// Implementations: SqliteStore (embedded default). A PostgreSQL store for shared replicas
// implements the same interface.
//
// Thread-safety: every member is safe to call from any thread. Concurrent Commit() calls may be
// grouped into one transaction (group commit); each caller still learns its own outcome.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include <mann/core/entry.h>
#include <mann/core/status.h>

namespace mann::store {

// An entry as stored: the entry, the analysed terms its lexical index used, and its vector.
struct StoredEntry {
  MemoryEntry entry;
  std::vector<std::string> terms;  // Analyzer output, stored so start-up needs no re-analysis
  std::string encoder_id;          // Encoder::Id() of `embedding`; empty when none
  std::vector<float> embedding;
};

// Read bookkeeping that need not be durable before a search answers.
struct UsageUpdate {
  std::string entry_id;
  std::int64_t usage_count = 0;
  TimestampMs last_access_ms = 0;
};

// Per-namespace counters, added to the stored totals.
struct CounterDelta {
  std::string ns;
  std::int64_t reads = 0;
  std::int64_t writes = 0;
  std::int64_t evictions = 0;
};

struct NamespaceCounters {
  std::string ns;
  std::int64_t reads = 0;
  std::int64_t writes = 0;
  std::int64_t evictions = 0;
};

// A batch of changes applied all-or-nothing.
struct Mutation {
  std::vector<StoredEntry> upserts;    // insert, or replace the entry with the same id
  std::vector<std::string> deletes;    // entry ids to remove; their history stays
  std::vector<std::string> forgets;    // entry ids to remove together with all their history
  std::vector<HistoryRecord> history;  // rows to append (seq is assigned by the store)
  std::vector<UsageUpdate> usage;      // usage bumps of live entries (missing ids are skipped)
  std::vector<CounterDelta> counters;

  bool empty() const {
    return upserts.empty() && deletes.empty() && forgets.empty() && history.empty() &&
           usage.empty() && counters.empty();
  }
};

struct ChatTurn {
  std::string session_id;
  std::int64_t seq = 0;  // 1, 2, ... within the session
  std::string role;      // "user" or "assistant"
  std::string text;
  TimestampMs at_ms = 0;
};

struct ChatSession {
  std::string id;
  std::string ns;
  TimestampMs created_ms = 0;
  TimestampMs updated_ms = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  // Applies `m` atomically and returns once it is durable. On error nothing of `m` is applied.
  virtual Status Commit(Mutation m) = 0;

  // Queues `m` behind everything queued before it and returns a future that becomes ready with
  // its outcome once durable. Callers that must keep a global order (the memory bank) enqueue
  // under their own lock and wait outside it, so concurrent writers share one group commit.
  // The default commits synchronously, which keeps the order but shares nothing.
  virtual std::future<Status> Enqueue(Mutation m) {
    std::promise<Status> done;
    done.set_value(Commit(std::move(m)));
    return done.get_future();
  }

  // Queues `m` for the next commit without waiting; for bookkeeping such as usage bumps whose
  // loss in a crash is harmless. Errors are logged, not returned.
  virtual void CommitLater(Mutation m) = 0;

  // Waits until everything queued so far is durable.
  virtual Status Flush() = 0;

  // Calls `fn` for every live entry, in (namespace, id) order. Stops at the first error `fn`
  // returns and returns it.
  virtual Status Load(const std::function<Status(StoredEntry&&)>& fn) = 0;

  // The history of one entry, oldest first. Empty when the entry was forgotten or never existed.
  virtual Result<std::vector<HistoryRecord>> History(const std::string& ns,
                                                     const std::string& entry_id) = 0;

  virtual Result<std::vector<NamespaceCounters>> Counters() = 0;

  // Chat sessions and their turns.
  virtual Status SaveSession(const ChatSession& session) = 0;
  virtual Result<std::optional<ChatSession>> GetSession(const std::string& id) = 0;
  virtual Status AppendTurn(const ChatTurn& turn) = 0;  // durable on return
  // The last `limit` turns of a session, oldest first.
  virtual Result<std::vector<ChatTurn>> RecentTurns(const std::string& session_id,
                                                    std::size_t limit) = 0;

  // Runs the backend's consistency check; OK when the store is intact.
  virtual Status CheckIntegrity() = 0;

  // A short description for logs and `mann config show` ("sqlite:/var/lib/mann/mann.db").
  virtual std::string Describe() const = 0;
};

}  // namespace mann::store
