// Store: durable storage of memory entries, their history, counters, chat sessions and the
// pager's outbox.
//
// The memory bank keeps every live entry of a namespace in memory (for its indexes) and uses the
// store as the durable truth: a Mutation is applied atomically, and Commit() returns only once
// it is durable. Start-up loads everything back with Load().
//
// The outbox holds notifications on their way to a channel (Slack, PagerDuty, email, a webhook):
// one row per (notification, channel), written before anything is sent, so a notification
// survives a crash and is resumed by the next process. See "Pager outbox" below.
//
// Implementations: SqliteStore (embedded default, one process) and PostgresStore (one database
// shared by several `mann serve` replicas). A shared store also keeps a change log (see
// "Replica change log" below) from which each replica brings its in-memory bank up to date.
//
// Thread-safety: every member is safe to call from any thread. Concurrent Commit() calls may be
// grouped into one transaction (group commit); each caller still learns its own outcome.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
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

// --- Pager outbox ---
//
// A delivery's lifecycle:
//
//   pending --(attempt succeeded)----------------> delivered
//      |  ^
//      |  +--(attempt failed, will be retried)      (attempts + 1, a new next_attempt_ms)
//      +-----(attempt refused for good: 4xx)-----> failed
//      +-----(attempts exhausted, or undeliverable)--> dead
//
// Only pending rows change; delivered, failed and dead are final and kept (for `mann alert
// list` and the health check) until PruneDeliveries() removes them.
enum class OutboxState { kPending, kDelivered, kFailed, kDead };

// "pending", "delivered", "failed", "dead".
std::string_view OutboxStateName(OutboxState state);
std::optional<OutboxState> ParseOutboxState(std::string_view name);

// What every store checks before applying a Mutation: entries and counters name a namespace,
// upserts and history rows an entry. InvalidArgument naming the part that does not.
Status ValidateMutation(const Mutation& m);

struct OutboxDelivery {
  std::string id;               // unique; the pager uses UUIDv7, so ids sort by creation
  std::string channel;          // the configured channel's name, e.g. "slack"
  std::string notification_id;  // at most one row per (notification_id, channel)
  std::string notification;     // the notification as JSON; never holds channel secrets
  OutboxState state = OutboxState::kPending;
  std::int64_t attempts = 0;  // attempts made so far
  TimestampMs created_ms = 0;
  TimestampMs next_attempt_ms = 0;  // when a pending row is due
  TimestampMs updated_ms = 0;       // last change: enqueue, attempt or final state
  std::string last_error;           // of the last attempt; empty when it succeeded or none ran
  int last_status = 0;  // HTTP status or SMTP reply code of the last attempt; 0 when none came
};

// The outcome of one delivery attempt, for RecordDeliveryAttempt() and the Mark*() calls.
struct DeliveryOutcome {
  std::string id;  // the outbox row
  TimestampMs at_ms = 0;
  std::string error;                // empty on success
  int status = 0;                   // HTTP status or SMTP reply code; 0 when no answer came
  TimestampMs next_attempt_ms = 0;  // RecordDeliveryAttempt() only: when to try again
};

// Per-channel figures over the outbox, for queue-depth metrics and the health check.
struct OutboxChannelStats {
  std::string channel;
  std::int64_t pending = 0;
  TimestampMs oldest_pending_created_ms = 0;  // 0 when nothing is pending
  TimestampMs next_attempt_ms = 0;            // earliest due time of a pending row; 0: none
  // Rows that reached a final state at or after the `since_ms` passed to OutboxStats().
  std::int64_t delivered_since = 0;
  std::int64_t failed_since = 0;
  std::int64_t dead_since = 0;
  TimestampMs last_dead_ms = 0;  // when the newest dead row died; 0 when none ever did
};

// --- Replica change log ---
//
// A store shared by several processes appends one change row per entry that a Commit upserts,
// deletes or forgets, in the same transaction, numbered by a sequence that grows in commit order
// (a reader that has seen seq N will never later see a new row below N). A row names the entry
// only; ChangesSince() joins it with the entry as it is *now*, so a reader that applies the rows
// in order ends with the store's current state even when it skips intermediate versions.
struct Change {
  std::int64_t seq = 0;
  std::string ns;
  std::string entry_id;
  // True when the entry is not live now (deleted, forgotten or evicted since). Decided by the
  // entry's current state, not by what the logged write was: an upsert followed by a delete
  // reads as two removals, a delete followed by a restore as two upserts.
  bool removed = false;
  std::optional<StoredEntry> entry;  // the entry now, when not removed
  TimestampMs at_ms = 0;             // when the change was logged, by the database's clock
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

  // --- Pager outbox (see the lifecycle above) ---

  // Inserts `rows` all-or-nothing; they are durable when this returns OK, so a notification
  // survives a SIGKILL right after. Each row must be pending with no attempts and non-empty id,
  // channel, notification_id and notification (else InvalidArgument naming the field).
  // AlreadyExists when an id, or a (notification_id, channel) pair, is already in the outbox.
  virtual Status EnqueueDeliveries(std::vector<OutboxDelivery> rows) = 0;

  // Pending rows of `channel` whose next_attempt_ms <= due_by_ms, earliest next attempt first
  // (ties in id order), at most `limit`. Passing the largest TimestampMs lists the channel's
  // whole queue in that order, which tells the caller when the next row falls due.
  virtual Result<std::vector<OutboxDelivery>> DueDeliveries(const std::string& channel,
                                                            TimestampMs due_by_ms,
                                                            std::size_t limit) = 0;

  // Each of these records one attempt on a pending row: attempts + 1, last_error, last_status
  // and updated_ms = at_ms. RecordDeliveryAttempt() keeps the row pending until
  // next_attempt_ms; the Mark*() calls move it to its final state. Durable on return. NotFound
  // when `id` is not a pending row (never enqueued, or already final).
  virtual Status RecordDeliveryAttempt(const DeliveryOutcome& outcome) = 0;
  virtual Status MarkDelivered(const DeliveryOutcome& outcome) = 0;
  virtual Status MarkFailed(const DeliveryOutcome& outcome) = 0;  // refused, not to be retried
  virtual Status MarkDead(const DeliveryOutcome& outcome) = 0;    // attempts exhausted

  // One entry per channel that has any row, in channel order. `since_ms` bounds the *_since
  // counts (e.g. now minus one hour).
  virtual Result<std::vector<OutboxChannelStats>> OutboxStats(TimestampMs since_ms) = 0;

  // The `limit` most recently created rows of every state, newest first.
  virtual Result<std::vector<OutboxDelivery>> RecentDeliveries(std::size_t limit) = 0;

  // Removes final rows (delivered, failed, dead) last updated before `before_ms`; returns how
  // many. Pending rows are never removed.
  virtual Result<std::int64_t> PruneDeliveries(TimestampMs before_ms) = 0;

  // Runs the backend's consistency check; OK when the store is intact.
  virtual Status CheckIntegrity() = 0;

  // A short description for logs and `mann config show` ("sqlite:/var/lib/mann/mann.db").
  // Never contains a password.
  virtual std::string Describe() const = 0;

  // --- Replica change log (see above). The defaults describe a store nobody else writes. ---

  // True when other processes write to the same data, so a memory bank must follow the change
  // log to see their writes.
  virtual bool SharedByReplicas() const { return false; }

  // The newest change's seq; 0 when none was ever logged. A follower starts here.
  virtual Result<std::int64_t> LastChangeSeq() { return std::int64_t{0}; }

  // Changes with seq > after_seq, oldest first, at most `limit`. FailedPrecondition when rows
  // after `after_seq` were already pruned: the reader missed changes and must reload everything.
  virtual Result<std::vector<Change>> ChangesSince(std::int64_t after_seq, std::size_t limit) {
    (void)after_seq;
    (void)limit;
    return std::vector<Change>{};
  }

  // Waits until a change may have been logged since the previous call, or `timeout` passes;
  // OK in both cases (the caller reads ChangesSince() either way). Unavailable when the store
  // cannot be reached. Spurious wake-ups are allowed. One caller at a time.
  virtual Status WaitForChanges(std::chrono::milliseconds timeout) {
    std::this_thread::sleep_for(timeout);
    return Status::Ok();
  }
};

}  // namespace mann::store
