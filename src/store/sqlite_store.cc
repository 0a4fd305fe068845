#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <limits>
#include <mutex>
#include <span>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <fmt/format.h>

#include <mann/core/log.h>
#include <mann/store/sqlite_store.h>

#include "database_lock.h"
#include "sqlite_codec.h"
#include "sqlite_db.h"
#include "sqlite_schema.h"

namespace mann::store {

using internal::Connection;
using internal::ScopedReset;
using internal::Statement;

namespace {

// --- SQL, prepared once per connection ---

constexpr std::string_view kUpsertEntry = R"sql(
INSERT INTO entries (id, ns, content, context, tags, metadata, importance, usage_count,
                     last_access_ms, created_ms, updated_ms, version, content_hash, language,
                     terms, encoder_id, embedding)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
ON CONFLICT (id) DO UPDATE SET
  ns = excluded.ns, content = excluded.content, context = excluded.context,
  tags = excluded.tags, metadata = excluded.metadata, importance = excluded.importance,
  usage_count = excluded.usage_count, last_access_ms = excluded.last_access_ms,
  created_ms = excluded.created_ms, updated_ms = excluded.updated_ms,
  version = excluded.version, content_hash = excluded.content_hash,
  language = excluded.language, terms = excluded.terms, encoder_id = excluded.encoder_id,
  embedding = excluded.embedding)sql";

constexpr std::string_view kSelectEntries = R"sql(
SELECT id, ns, content, context, tags, metadata, importance, usage_count, last_access_ms,
       created_ms, updated_ms, version, content_hash, language, terms, encoder_id, embedding
FROM entries ORDER BY ns, id)sql";

constexpr std::string_view kDeleteEntry = "DELETE FROM entries WHERE id = ?1";
constexpr std::string_view kDeleteHistory = "DELETE FROM history WHERE entry_id = ?1";

constexpr std::string_view kInsertHistory = R"sql(
INSERT INTO history (entry_id, ns, action, version, content, context, tags, metadata,
                     importance, at_ms, source, reason)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12))sql";

constexpr std::string_view kSelectHistory = R"sql(
SELECT seq, entry_id, ns, action, version, content, context, tags, metadata, importance, at_ms,
       source, reason
FROM history WHERE entry_id = ?1 AND ns = ?2 ORDER BY seq)sql";

constexpr std::string_view kUpdateUsage =
    "UPDATE entries SET usage_count = ?2, last_access_ms = ?3 WHERE id = ?1";

constexpr std::string_view kAddCounters = R"sql(
INSERT INTO counters (ns, reads, writes, evictions) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (ns) DO UPDATE SET
  reads = reads + excluded.reads, writes = writes + excluded.writes,
  evictions = evictions + excluded.evictions)sql";

constexpr std::string_view kSelectCounters =
    "SELECT ns, reads, writes, evictions FROM counters ORDER BY ns";

// A session keeps the created_ms of its first save.
constexpr std::string_view kUpsertSession = R"sql(
INSERT INTO sessions (id, ns, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (id) DO UPDATE SET ns = excluded.ns, updated_ms = excluded.updated_ms)sql";

constexpr std::string_view kSelectSession =
    "SELECT id, ns, created_ms, updated_ms FROM sessions WHERE id = ?1";

constexpr std::string_view kInsertTurn =
    "INSERT INTO turns (session_id, seq, role, text, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)";

constexpr std::string_view kTouchSession =
    "UPDATE sessions SET updated_ms = max(updated_ms, ?2) WHERE id = ?1";

constexpr std::string_view kSelectRecentTurns = R"sql(
SELECT session_id, seq, role, text, at_ms FROM turns
WHERE session_id = ?1 ORDER BY seq DESC LIMIT ?2)sql";

constexpr std::string_view kInsertDelivery = R"sql(
INSERT INTO pager_outbox (id, channel, notification_id, notification, state, attempts,
                          created_ms, next_attempt_ms, updated_ms, last_error, last_status)
VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?6, ?5, '', 0))sql";

// Only a pending row takes an attempt; a final row keeps the next_attempt_ms it had.
constexpr std::string_view kFinishAttempt = R"sql(
UPDATE pager_outbox SET
  state = ?2, attempts = attempts + 1,
  next_attempt_ms = CASE WHEN ?2 = 'pending' THEN ?3 ELSE next_attempt_ms END,
  updated_ms = ?4, last_error = ?5, last_status = ?6
WHERE id = ?1 AND state = 'pending')sql";

constexpr std::string_view kPruneDeliveries =
    "DELETE FROM pager_outbox WHERE state != 'pending' AND updated_ms < ?1";

constexpr std::string_view kSelectDueDeliveries = R"sql(
SELECT id, channel, notification_id, notification, state, attempts, created_ms, next_attempt_ms,
       updated_ms, last_error, last_status
FROM pager_outbox WHERE channel = ?1 AND state = 'pending' AND next_attempt_ms <= ?2
ORDER BY next_attempt_ms, id LIMIT ?3)sql";

constexpr std::string_view kSelectRecentDeliveries = R"sql(
SELECT id, channel, notification_id, notification, state, attempts, created_ms, next_attempt_ms,
       updated_ms, last_error, last_status
FROM pager_outbox ORDER BY created_ms DESC, id DESC LIMIT ?1)sql";

constexpr std::string_view kSelectOutboxStats = R"sql(
SELECT channel,
       sum(state = 'pending'),
       coalesce(min(CASE WHEN state = 'pending' THEN created_ms END), 0),
       coalesce(min(CASE WHEN state = 'pending' THEN next_attempt_ms END), 0),
       sum(state = 'delivered' AND updated_ms >= ?1),
       sum(state = 'failed' AND updated_ms >= ?1),
       sum(state = 'dead' AND updated_ms >= ?1),
       coalesce(max(CASE WHEN state = 'dead' THEN updated_ms END), 0)
FROM pager_outbox GROUP BY channel ORDER BY channel)sql";

// --- decoding rows ---

Result<StoredEntry> DecodeEntry(const Statement& row) {
  StoredEntry out;
  MemoryEntry& e = out.entry;
  e.id = row.Text(0);
  e.ns = row.Text(1);
  e.content = row.Text(2);
  e.context = row.Text(3);
  MANN_ASSIGN_OR_RETURN(e.tags, internal::DecodeStrings(row.Text(4), "tags", e.id));
  MANN_ASSIGN_OR_RETURN(e.metadata, internal::DecodeObject(row.Text(5), "metadata", e.id));
  e.importance = row.Double(6);
  e.usage_count = row.Int(7);
  e.last_access_ms = row.Int(8);
  e.created_ms = row.Int(9);
  e.updated_ms = row.Int(10);
  e.version = row.Int(11);
  e.content_hash = row.Text(12);
  e.language = row.Text(13);
  MANN_ASSIGN_OR_RETURN(out.terms, internal::DecodeStrings(row.Text(14), "terms", e.id));
  out.encoder_id = row.Text(15);
  MANN_ASSIGN_OR_RETURN(out.embedding, internal::DecodeFloats(row.Blob(16), e.id));
  return out;
}

Result<HistoryRecord> DecodeHistory(const Statement& row) {
  HistoryRecord h;
  h.seq = row.Int(0);
  h.entry_id = row.Text(1);
  h.ns = row.Text(2);
  const std::string_view action = row.Text(3);
  std::optional<HistoryAction> parsed = ParseHistoryAction(action);
  if (!parsed) {
    return DataLossError(fmt::format(
        "entry {}: history row {} has unknown action \"{}\"; the database is damaged or was "
        "written by a newer mann",
        h.entry_id, h.seq, action));
  }
  h.action = *parsed;
  h.version = row.Int(4);
  h.content = row.Text(5);
  h.context = row.Text(6);
  MANN_ASSIGN_OR_RETURN(h.tags, internal::DecodeStrings(row.Text(7), "history.tags", h.entry_id));
  MANN_ASSIGN_OR_RETURN(h.metadata,
                        internal::DecodeObject(row.Text(8), "history.metadata", h.entry_id));
  h.importance = row.Double(9);
  h.at_ms = row.Int(10);
  h.source = row.Text(11);
  h.reason = row.Text(12);
  return h;
}

Result<OutboxDelivery> DecodeDelivery(const Statement& row) {
  OutboxDelivery d;
  d.id = row.Text(0);
  d.channel = row.Text(1);
  d.notification_id = row.Text(2);
  d.notification = row.Text(3);
  const std::string_view state = row.Text(4);
  std::optional<OutboxState> parsed = ParseOutboxState(state);
  if (!parsed) {
    return DataLossError(fmt::format(
        "outbox delivery {} has unknown state \"{}\"; the database is damaged or was written by "
        "a newer mann",
        d.id, state));
  }
  d.state = *parsed;
  d.attempts = row.Int(5);
  d.created_ms = row.Int(6);
  d.next_attempt_ms = row.Int(7);
  d.updated_ms = row.Int(8);
  d.last_error = row.Text(9);
  d.last_status = static_cast<int>(row.Int(10));
  return d;
}

// SQLite takes a signed 64-bit LIMIT.
std::int64_t SqlLimit(std::size_t limit) {
  return static_cast<std::int64_t>(
      std::min<std::size_t>(limit, std::numeric_limits<std::int64_t>::max()));
}

// --- what the writer thread applies ---

struct Fence {};  // applies nothing; Flush() waits for it to come out of the queue

struct OutboxInsert {
  std::vector<OutboxDelivery> rows;
};

// One attempt on a pending row, ending in state `to`.
struct OutboxUpdate {
  OutboxState to = OutboxState::kPending;
  DeliveryOutcome outcome;
};

struct OutboxPrune {
  TimestampMs before_ms = 0;
  std::int64_t* deleted = nullptr;  // owned by the caller, who waits for the outcome
};

using WriteOp =
    std::variant<Mutation, ChatSession, ChatTurn, OutboxInsert, OutboxUpdate, OutboxPrune, Fence>;

bool IsFence(const WriteOp& op) { return std::holds_alternative<Fence>(op); }

// A caller blocked in Commit(). Set() notifies while holding the mutex, so the caller cannot
// wake, return and destroy the waiter before Set() is done with it.
class Waiter {
 public:
  void Set(Status s) {
    std::lock_guard lock(mu_);
    status_ = std::move(s);
    done_ = true;
    cv_.notify_one();
  }
  Status Wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return done_; });
    return std::move(status_);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  Status status_;
};

// At most one of `done` and `promise` is set; neither for CommitLater().
struct Job {
  WriteOp op;
  Waiter* done = nullptr;                       // Commit(): owned by the blocked caller
  std::optional<std::promise<Status>> promise;  // Enqueue(): the caller holds the future
};

template <typename... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};
template <typename... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

// The write connection and its statements. Used only by the writer thread after Open().
class Writer {
 public:
  static Result<std::unique_ptr<Writer>> Create(Connection conn) {
    auto w = std::unique_ptr<Writer>(new Writer(std::move(conn)));
    const std::pair<Statement*, std::string_view> statements[] = {
        {&w->begin_, "BEGIN IMMEDIATE"},
        {&w->commit_, "COMMIT"},
        {&w->rollback_, "ROLLBACK"},
        {&w->upsert_entry_, kUpsertEntry},
        {&w->delete_entry_, kDeleteEntry},
        {&w->delete_history_, kDeleteHistory},
        {&w->insert_history_, kInsertHistory},
        {&w->update_usage_, kUpdateUsage},
        {&w->add_counters_, kAddCounters},
        {&w->upsert_session_, kUpsertSession},
        {&w->insert_turn_, kInsertTurn},
        {&w->touch_session_, kTouchSession},
        {&w->insert_delivery_, kInsertDelivery},
        {&w->finish_attempt_, kFinishAttempt},
        {&w->prune_deliveries_, kPruneDeliveries},
    };
    for (const auto& [stmt, sql] : statements) {
      MANN_ASSIGN_OR_RETURN(*stmt, Statement::Prepare(w->conn_, sql));
    }
    return w;
  }

  // What one transaction attempt produced. `begun` is false when the transaction never
  // started (the lock was not obtained), in which case retrying members alone cannot help.
  struct Outcome {
    Status status;
    bool begun = false;
  };

  // Applies every non-fence op of `jobs` in one transaction.
  Outcome ApplyInTransaction(std::span<const Job* const> jobs) {
    Outcome out;
    out.status = RunOnce(begin_, "begin transaction");
    if (!out.status.ok()) {
      RollbackIfOpen();  // BEGIN can fail after taking a lock; make sure none is left
      return out;
    }
    out.begun = true;
    for (const Job* job : jobs) {
      out.status = Apply(job->op);
      if (!out.status.ok()) break;
    }
    if (out.status.ok()) out.status = RunOnce(commit_, "commit");
    if (!out.status.ok()) RollbackIfOpen();
    return out;
  }

 private:
  explicit Writer(Connection conn) : conn_(std::move(conn)) {}

  Status RunOnce(Statement& stmt, std::string_view what) {
    ScopedReset reset(stmt);
    return stmt.Run(what);
  }

  void RollbackIfOpen() {
    // Some errors (SQLITE_FULL, I/O errors) roll the transaction back by themselves.
    if (sqlite3_get_autocommit(conn_.get()) != 0) return;
    Status s = RunOnce(rollback_, "rollback");
    if (!s.ok())
      log::Get("store")->error("rollback failed file={} error={}", conn_.path(), s.ToString());
  }

  Status Apply(const WriteOp& op) {
    return std::visit(Overloaded{
                          [&](const Mutation& m) { return ApplyMutation(m); },
                          [&](const ChatSession& s) { return ApplySession(s); },
                          [&](const ChatTurn& t) { return ApplyTurn(t); },
                          [&](const OutboxInsert& o) { return ApplyOutboxInsert(o); },
                          [&](const OutboxUpdate& o) { return ApplyOutboxUpdate(o); },
                          [&](const OutboxPrune& o) { return ApplyOutboxPrune(o); },
                          [&](const Fence&) { return Status::Ok(); },
                      },
                      op);
  }

  // The order is part of the contract: forgets, deletes, upserts, history, usage, counters.
  Status ApplyMutation(const Mutation& m) {
    for (const std::string& id : m.forgets) {
      MANN_RETURN_IF_ERROR(RunWithId(delete_entry_, id, "forget entry"));
      MANN_RETURN_IF_ERROR(RunWithId(delete_history_, id, "forget history"));
    }
    for (const std::string& id : m.deletes) {
      MANN_RETURN_IF_ERROR(RunWithId(delete_entry_, id, "delete entry"));
    }
    for (const StoredEntry& s : m.upserts) MANN_RETURN_IF_ERROR(UpsertEntry(s));
    for (const HistoryRecord& h : m.history) MANN_RETURN_IF_ERROR(InsertHistory(h));
    for (const UsageUpdate& u : m.usage) {
      ScopedReset reset(update_usage_);
      update_usage_.Bind(1, u.entry_id).Bind(2, u.usage_count).Bind(3, u.last_access_ms);
      MANN_RETURN_IF_ERROR(update_usage_.Run("update usage of entry " + u.entry_id));
    }
    for (const CounterDelta& c : m.counters) {
      ScopedReset reset(add_counters_);
      add_counters_.Bind(1, c.ns).Bind(2, c.reads).Bind(3, c.writes).Bind(4, c.evictions);
      MANN_RETURN_IF_ERROR(add_counters_.Run("add counters of namespace " + c.ns));
    }
    return Status::Ok();
  }

  Status RunWithId(Statement& stmt, const std::string& id, std::string_view what) {
    ScopedReset reset(stmt);
    stmt.Bind(1, id);
    return stmt.Run(fmt::format("{} {}", what, id));
  }

  Status UpsertEntry(const StoredEntry& s) {
    const MemoryEntry& e = s.entry;
    const std::vector<unsigned char> embedding = internal::EncodeFloats(s.embedding);
    ScopedReset reset(upsert_entry_);
    upsert_entry_.Bind(1, e.id)
        .Bind(2, e.ns)
        .Bind(3, e.content)
        .Bind(4, e.context)
        .Bind(5, internal::EncodeStrings(e.tags))
        .Bind(6, internal::EncodeObject(e.metadata))
        .Bind(7, e.importance)
        .Bind(8, e.usage_count)
        .Bind(9, e.last_access_ms)
        .Bind(10, e.created_ms)
        .Bind(11, e.updated_ms)
        .Bind(12, e.version)
        .Bind(13, e.content_hash)
        .Bind(14, e.language)
        .Bind(15, internal::EncodeStrings(s.terms))
        .Bind(16, s.encoder_id)
        .BindBlob(17, embedding);
    return upsert_entry_.Run("upsert entry " + e.id);
  }

  Status InsertHistory(const HistoryRecord& h) {
    ScopedReset reset(insert_history_);
    insert_history_.Bind(1, h.entry_id)
        .Bind(2, h.ns)
        .Bind(3, HistoryActionName(h.action))
        .Bind(4, h.version)
        .Bind(5, h.content)
        .Bind(6, h.context)
        .Bind(7, internal::EncodeStrings(h.tags))
        .Bind(8, internal::EncodeObject(h.metadata))
        .Bind(9, h.importance)
        .Bind(10, h.at_ms)
        .Bind(11, h.source)
        .Bind(12, h.reason);
    return insert_history_.Run("append history of entry " + h.entry_id);
  }

  Status ApplySession(const ChatSession& s) {
    ScopedReset reset(upsert_session_);
    upsert_session_.Bind(1, s.id).Bind(2, s.ns).Bind(3, s.created_ms).Bind(4, s.updated_ms);
    return upsert_session_.Run("save session " + s.id);
  }

  Status ApplyTurn(const ChatTurn& t) {
    {
      ScopedReset reset(insert_turn_);
      insert_turn_.Bind(1, t.session_id)
          .Bind(2, t.seq)
          .Bind(3, t.role)
          .Bind(4, t.text)
          .Bind(5, t.at_ms);
      Status s = insert_turn_.Run(fmt::format("append turn {} of session {}", t.seq, t.session_id));
      if (s.code() == StatusCode::kFailedPrecondition) {
        return NotFoundError(fmt::format(
            "append turn {}: session {} does not exist; save the session before its turns", t.seq,
            t.session_id));
      }
      if (s.code() == StatusCode::kAlreadyExists) {
        return AlreadyExistsError(
            fmt::format("session {} already has a turn {}", t.session_id, t.seq));
      }
      MANN_RETURN_IF_ERROR(s);
    }
    ScopedReset reset(touch_session_);
    touch_session_.Bind(1, t.session_id).Bind(2, t.at_ms);
    return touch_session_.Run("touch session " + t.session_id);
  }

  Status ApplyOutboxInsert(const OutboxInsert& insert) {
    for (const OutboxDelivery& d : insert.rows) {
      ScopedReset reset(insert_delivery_);
      insert_delivery_.Bind(1, d.id)
          .Bind(2, d.channel)
          .Bind(3, d.notification_id)
          .Bind(4, d.notification)
          .Bind(5, d.created_ms)
          .Bind(6, d.next_attempt_ms);
      Status s = insert_delivery_.Run("enqueue outbox delivery " + d.id);
      if (s.code() == StatusCode::kAlreadyExists) {
        return AlreadyExistsError(
            fmt::format("outbox already holds delivery {} or notification {} for channel {}", d.id,
                        d.notification_id, d.channel));
      }
      MANN_RETURN_IF_ERROR(s);
    }
    return Status::Ok();
  }

  Status ApplyOutboxUpdate(const OutboxUpdate& update) {
    const DeliveryOutcome& o = update.outcome;
    ScopedReset reset(finish_attempt_);
    finish_attempt_.Bind(1, o.id)
        .Bind(2, OutboxStateName(update.to))
        .Bind(3, o.next_attempt_ms)
        .Bind(4, o.at_ms)
        .Bind(5, o.error)
        .Bind(6, static_cast<std::int64_t>(o.status));
    MANN_RETURN_IF_ERROR(finish_attempt_.Run("record attempt on outbox delivery " + o.id));
    if (sqlite3_changes(conn_.get()) == 0) {
      return NotFoundError(fmt::format(
          "outbox delivery {} is not pending: it was never enqueued or is already final", o.id));
    }
    return Status::Ok();
  }

  Status ApplyOutboxPrune(const OutboxPrune& prune) {
    ScopedReset reset(prune_deliveries_);
    prune_deliveries_.Bind(1, prune.before_ms);
    MANN_RETURN_IF_ERROR(prune_deliveries_.Run("prune outbox"));
    // Assigned, not added: a group that fails is applied again alone.
    if (prune.deleted != nullptr) *prune.deleted = sqlite3_changes64(conn_.get());
    return Status::Ok();
  }

  Connection conn_;
  Statement begin_, commit_, rollback_;
  Statement upsert_entry_, delete_entry_, delete_history_, insert_history_, update_usage_,
      add_counters_, upsert_session_, insert_turn_, touch_session_;
  Statement insert_delivery_, finish_attempt_, prune_deliveries_;
};

// The read connection and its statements; every use holds `mu`.
struct Reader {
  std::mutex mu;
  Connection conn;
  Statement select_history, select_counters, select_session, select_recent_turns;
  Statement select_due_deliveries, select_recent_deliveries, select_outbox_stats;

  Status Prepare() {
    const std::pair<Statement*, std::string_view> statements[] = {
        {&select_history, kSelectHistory},
        {&select_counters, kSelectCounters},
        {&select_session, kSelectSession},
        {&select_recent_turns, kSelectRecentTurns},
        {&select_due_deliveries, kSelectDueDeliveries},
        {&select_recent_deliveries, kSelectRecentDeliveries},
        {&select_outbox_stats, kSelectOutboxStats},
    };
    for (const auto& [stmt, sql] : statements) {
      MANN_ASSIGN_OR_RETURN(*stmt, Statement::Prepare(conn, sql));
    }
    return Status::Ok();
  }
};

Status ValidateOptions(const SqliteOptions& o) {
  if (o.path.empty()) return InvalidArgumentError("store path must not be empty");
  if (o.busy_timeout_ms < 0) {
    return InvalidArgumentError(
        fmt::format("busy_timeout_ms must be >= 0, got {}", o.busy_timeout_ms));
  }
  if (o.max_group == 0) return InvalidArgumentError("max_group must be at least 1, got 0");
  if (o.max_page_count < 0) {
    return InvalidArgumentError(
        fmt::format("max_page_count must be >= 0 (0 = unlimited), got {}", o.max_page_count));
  }
  return Status::Ok();
}

// Puts the write connection into the mode the durability contract relies on.
Status ConfigureWriter(Connection& conn, const SqliteOptions& options) {
  // SQLite silently opens a file it cannot write in read-only mode; refuse instead.
  if (sqlite3_db_readonly(conn.get(), "main") == 1) {
    return internal::SqliteError(SQLITE_READONLY, conn.path(), "open");
  }

  MANN_ASSIGN_OR_RETURN(Statement wal, Statement::Prepare(conn, "PRAGMA journal_mode = WAL"));
  MANN_ASSIGN_OR_RETURN(bool row, wal.Step("enable WAL"));
  const std::string mode = row ? std::string(wal.Text(0)) : std::string();
  wal.Reset();
  if (mode != "wal") {
    return FailedPreconditionError(fmt::format(
        "could not put {} in WAL mode (journal mode is \"{}\"); keep the database on a local "
        "file system",
        conn.path(), mode));
  }

  MANN_RETURN_IF_ERROR(conn.Exec("PRAGMA synchronous = FULL", "set synchronous"));
  MANN_RETURN_IF_ERROR(conn.Exec("PRAGMA foreign_keys = ON", "enable foreign keys"));
  if (options.max_page_count > 0) {
    MANN_RETURN_IF_ERROR(conn.Exec(
        fmt::format("PRAGMA max_page_count = {}", options.max_page_count), "set max_page_count"));
  }
  return Status::Ok();
}

}  // namespace

struct SqliteStore::Impl {
  // Held shared for the store's lifetime so `mann restore` sees the file is in use; declared
  // first so that it is released after every connection has closed.
  internal::DatabaseLock lock;
  SqliteOptions options;
  std::unique_ptr<Writer> writer;  // null when read-only
  Reader reader;

  std::mutex queue_mu;
  std::condition_variable queue_cv;
  std::deque<Job> queue;  // guarded by queue_mu
  bool stopping = false;  // guarded by queue_mu
  std::thread thread;

  // Writer-thread only: the first CommitLater failure since the last Flush().
  Status later_error;

  std::atomic<std::uint64_t> transactions{0}, writes{0}, failed{0}, split_groups{0};

  Status ReadOnlyError() const {
    return FailedPreconditionError(
        fmt::format("{} was opened read-only; writes are refused", options.path));
  }

  // Queues `op` and waits for its outcome.
  Status Submit(WriteOp op) {
    Waiter done;
    {
      std::lock_guard lock(queue_mu);
      if (stopping) return FailedPreconditionError("store " + options.path + " is closing");
      queue.push_back(Job{std::move(op), &done, std::nullopt});
    }
    queue_cv.notify_one();
    return done.Wait();
  }

  // Queues `op`; the returned future becomes ready with its outcome.
  std::future<Status> SubmitAsync(WriteOp op) {
    std::promise<Status> promise;
    std::future<Status> outcome = promise.get_future();
    {
      std::lock_guard lock(queue_mu);
      if (!stopping) {
        queue.push_back(Job{std::move(op), nullptr, std::move(promise)});
        queue_cv.notify_one();
        return outcome;
      }
    }
    promise.set_value(FailedPreconditionError("store " + options.path + " is closing"));
    return outcome;
  }

  void SubmitLater(WriteOp op) {
    {
      std::lock_guard lock(queue_mu);
      if (!stopping) {
        queue.push_back(Job{std::move(op), nullptr, std::nullopt});
        queue_cv.notify_one();
        return;
      }
    }
    log::Get("store")->error("write dropped file={}: the store is closing", options.path);
  }

  void WriterLoop() {
    std::vector<Job> batch;
    for (;;) {
      {
        std::unique_lock lock(queue_mu);
        queue_cv.wait(lock, [this] { return !queue.empty() || stopping; });
        if (queue.empty()) return;  // stopping, and everything queued has been applied
        const std::size_t n = std::min(queue.size(), options.max_group);
        for (std::size_t i = 0; i < n; ++i) {
          batch.push_back(std::move(queue.front()));
          queue.pop_front();
        }
      }
      RunBatch(batch);
      batch.clear();
    }
  }

  // Commits `batch` as one group; when the group fails, retries each member alone so that
  // every caller learns its own outcome.
  void RunBatch(std::vector<Job>& batch) {
    std::vector<const Job*> work;
    for (const Job& job : batch) {
      if (!IsFence(job.op)) work.push_back(&job);
    }
    std::vector<Status> results(batch.size());

    if (!work.empty()) {
      Writer::Outcome group = writer->ApplyInTransaction(work);
      if (group.status.ok()) {
        transactions.fetch_add(1, std::memory_order_relaxed);
      } else if (!group.begun || work.size() == 1) {
        for (std::size_t i = 0; i < batch.size(); ++i) {
          if (!IsFence(batch[i].op)) results[i] = group.status;
        }
      } else {
        split_groups.fetch_add(1, std::memory_order_relaxed);
        log::Get("store")->warn("group commit failed, retrying one by one file={} size={} error={}",
                                options.path, work.size(), group.status.ToString());
        for (std::size_t i = 0; i < batch.size(); ++i) {
          if (IsFence(batch[i].op)) continue;
          const Job* one[] = {&batch[i]};
          Writer::Outcome alone = writer->ApplyInTransaction(one);
          if (alone.status.ok()) transactions.fetch_add(1, std::memory_order_relaxed);
          results[i] = alone.status;
        }
      }
    }

    for (std::size_t i = 0; i < batch.size(); ++i) Deliver(batch[i], std::move(results[i]));
  }

  void Deliver(Job& job, Status result) {
    if (IsFence(job.op)) {
      job.done->Set(std::exchange(later_error, Status::Ok()));
      return;
    }
    (result.ok() ? writes : failed).fetch_add(1, std::memory_order_relaxed);
    if (job.done != nullptr) {
      job.done->Set(std::move(result));
      return;
    }
    if (job.promise) {
      job.promise->set_value(std::move(result));
      return;
    }
    if (!result.ok()) {
      log::Get("store")->warn("deferred write failed file={} error={}", options.path,
                              result.ToString());
      if (later_error.ok()) later_error = std::move(result);
    }
  }
};

// --- SqliteStore ---

SqliteStore::SqliteStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SqliteStore::~SqliteStore() {
  if (!impl_->thread.joinable()) return;
  {
    std::lock_guard lock(impl_->queue_mu);
    impl_->stopping = true;
  }
  impl_->queue_cv.notify_all();
  impl_->thread.join();
}

int SqliteStore::SchemaVersion() { return internal::LatestSchemaVersion(); }

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const SqliteOptions& options) {
  MANN_RETURN_IF_ERROR(ValidateOptions(options));
  auto impl = std::make_unique<Impl>();
  impl->options = options;

  // Step 0: the lock comes before any connection, so a restore cannot swap the file between
  // our open and our lock.
  MANN_ASSIGN_OR_RETURN(impl->lock, internal::DatabaseLock::Acquire(
                                        options.path, internal::DatabaseLock::Mode::kShared,
                                        std::chrono::milliseconds(options.busy_timeout_ms)));

  // Step 1: the write connection creates, configures and migrates the file.
  if (!options.read_only) {
    MANN_ASSIGN_OR_RETURN(Connection conn,
                          Connection::Open(options.path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                           options.busy_timeout_ms));
    MANN_RETURN_IF_ERROR(ConfigureWriter(conn, options));
    MANN_RETURN_IF_ERROR(internal::Migrate(conn));
    MANN_ASSIGN_OR_RETURN(impl->writer, Writer::Create(std::move(conn)));
  }

  // Step 2: the read connection; WAL lets it read while the writer writes.
  MANN_ASSIGN_OR_RETURN(impl->reader.conn, Connection::Open(options.path, SQLITE_OPEN_READONLY,
                                                            options.busy_timeout_ms));
  if (options.read_only) MANN_RETURN_IF_ERROR(internal::CheckSchemaReadOnly(impl->reader.conn));
  MANN_RETURN_IF_ERROR(impl->reader.Prepare());

  // Step 3: the writer thread owns the write connection from here on.
  if (impl->writer) impl->thread = std::thread([raw = impl.get()] { raw->WriterLoop(); });
  log::Get("store")->info("store opened file={} read_only={} schema={}", options.path,
                          options.read_only, SchemaVersion());
  return std::unique_ptr<SqliteStore>(new SqliteStore(std::move(impl)));
}

Status SqliteStore::Commit(Mutation m) {
  if (!impl_->writer) return impl_->ReadOnlyError();
  if (m.empty()) return Status::Ok();
  MANN_RETURN_IF_ERROR(ValidateMutation(m));
  return impl_->Submit(std::move(m));
}

std::future<Status> SqliteStore::Enqueue(Mutation m) {
  auto ready = [](Status s) {
    std::promise<Status> done;
    done.set_value(std::move(s));
    return done.get_future();
  };
  if (!impl_->writer) return ready(impl_->ReadOnlyError());
  if (m.empty()) return ready(Status::Ok());
  if (Status s = ValidateMutation(m); !s.ok()) return ready(std::move(s));
  return impl_->SubmitAsync(std::move(m));
}

void SqliteStore::CommitLater(Mutation m) {
  if (!impl_->writer) {
    log::Get("store")->error("deferred write refused file={}: opened read-only",
                             impl_->options.path);
    return;
  }
  if (m.empty()) return;
  if (Status s = ValidateMutation(m); !s.ok()) {
    log::Get("store")->error("deferred write refused file={} error={}", impl_->options.path,
                             s.ToString());
    return;
  }
  impl_->SubmitLater(std::move(m));
}

Status SqliteStore::Flush() {
  if (!impl_->writer) return Status::Ok();
  return impl_->Submit(Fence{});
}

// Load uses a connection of its own: the scan is one consistent snapshot, it never blocks
// History() and friends, and `fn` may call back into the store.
Status SqliteStore::Load(const std::function<Status(StoredEntry&&)>& fn) {
  MANN_ASSIGN_OR_RETURN(Connection conn, Connection::Open(impl_->options.path, SQLITE_OPEN_READONLY,
                                                          impl_->options.busy_timeout_ms));
  MANN_ASSIGN_OR_RETURN(Statement stmt, Statement::Prepare(conn, kSelectEntries));
  for (;;) {
    MANN_ASSIGN_OR_RETURN(bool row, stmt.Step("load entries"));
    if (!row) return Status::Ok();
    MANN_ASSIGN_OR_RETURN(StoredEntry entry, DecodeEntry(stmt));
    MANN_RETURN_IF_ERROR(fn(std::move(entry)));
  }
}

Result<std::vector<HistoryRecord>> SqliteStore::History(const std::string& ns,
                                                        const std::string& entry_id) {
  Reader& r = impl_->reader;
  std::lock_guard lock(r.mu);
  ScopedReset reset(r.select_history);
  r.select_history.Bind(1, entry_id).Bind(2, ns);
  std::vector<HistoryRecord> out;
  for (;;) {
    MANN_ASSIGN_OR_RETURN(bool row, r.select_history.Step("read history of entry " + entry_id));
    if (!row) return out;
    MANN_ASSIGN_OR_RETURN(HistoryRecord h, DecodeHistory(r.select_history));
    out.push_back(std::move(h));
  }
}

Result<std::vector<NamespaceCounters>> SqliteStore::Counters() {
  Reader& r = impl_->reader;
  std::lock_guard lock(r.mu);
  ScopedReset reset(r.select_counters);
  std::vector<NamespaceCounters> out;
  for (;;) {
    MANN_ASSIGN_OR_RETURN(bool row, r.select_counters.Step("read counters"));
    if (!row) return out;
    out.push_back(NamespaceCounters{std::string(r.select_counters.Text(0)),
                                    r.select_counters.Int(1), r.select_counters.Int(2),
                                    r.select_counters.Int(3)});
  }
}

Status SqliteStore::SaveSession(const ChatSession& session) {
  if (!impl_->writer) return impl_->ReadOnlyError();
  if (session.id.empty()) return InvalidArgumentError("session id must not be empty");
  return impl_->Submit(session);
}

Result<std::optional<ChatSession>> SqliteStore::GetSession(const std::string& id) {
  Reader& r = impl_->reader;
  std::lock_guard lock(r.mu);
  ScopedReset reset(r.select_session);
  r.select_session.Bind(1, id);
  MANN_ASSIGN_OR_RETURN(bool row, r.select_session.Step("read session " + id));
  if (!row) return std::optional<ChatSession>();
  return std::optional<ChatSession>(ChatSession{std::string(r.select_session.Text(0)),
                                                std::string(r.select_session.Text(1)),
                                                r.select_session.Int(2), r.select_session.Int(3)});
}

// Also raises the session's updated_ms to the turn's at_ms.
Status SqliteStore::AppendTurn(const ChatTurn& turn) {
  if (!impl_->writer) return impl_->ReadOnlyError();
  if (turn.session_id.empty()) return InvalidArgumentError("turn session_id must not be empty");
  return impl_->Submit(turn);
}

Result<std::vector<ChatTurn>> SqliteStore::RecentTurns(const std::string& session_id,
                                                       std::size_t limit) {
  const std::int64_t capped = SqlLimit(limit);
  Reader& r = impl_->reader;
  std::lock_guard lock(r.mu);
  ScopedReset reset(r.select_recent_turns);
  r.select_recent_turns.Bind(1, session_id).Bind(2, capped);
  std::vector<ChatTurn> out;
  for (;;) {
    MANN_ASSIGN_OR_RETURN(bool row, r.select_recent_turns.Step("read turns of " + session_id));
    if (!row) break;
    const Statement& s = r.select_recent_turns;
    out.push_back(ChatTurn{std::string(s.Text(0)), s.Int(1), std::string(s.Text(2)),
                           std::string(s.Text(3)), s.Int(4)});
  }
  std::reverse(out.begin(), out.end());  // the query walks newest first to apply the limit
  return out;
}

// --- the pager outbox ---

namespace {

Status ValidateDelivery(const OutboxDelivery& d) {
  const auto missing = [&](std::string_view field) {
    return InvalidArgumentError(fmt::format("outbox delivery {}: {} must not be empty",
                                            d.id.empty() ? "(no id)" : d.id, field));
  };
  if (d.id.empty()) return missing("id");
  if (d.channel.empty()) return missing("channel");
  if (d.notification_id.empty()) return missing("notification_id");
  if (d.notification.empty()) return missing("notification");
  if (d.state != OutboxState::kPending || d.attempts != 0) {
    return InvalidArgumentError(fmt::format(
        "outbox delivery {}: a new delivery must be pending with 0 attempts, got {} with {}", d.id,
        OutboxStateName(d.state), d.attempts));
  }
  return Status::Ok();
}

// Reads every row `stmt` yields (already bound) as deliveries.
Result<std::vector<OutboxDelivery>> ReadDeliveries(Statement& stmt, std::string_view what) {
  std::vector<OutboxDelivery> out;
  for (;;) {
    MANN_ASSIGN_OR_RETURN(bool row, stmt.Step(what));
    if (!row) return out;
    MANN_ASSIGN_OR_RETURN(OutboxDelivery d, DecodeDelivery(stmt));
    out.push_back(std::move(d));
  }
}

}  // namespace

Status SqliteStore::EnqueueDeliveries(std::vector<OutboxDelivery> rows) {
  if (!impl_->writer) return impl_->ReadOnlyError();
  if (rows.empty()) return Status::Ok();
  for (const OutboxDelivery& d : rows) MANN_RETURN_IF_ERROR(ValidateDelivery(d));
  return impl_->Submit(OutboxInsert{std::move(rows)});
}

Result<std::vector<OutboxDelivery>> SqliteStore::DueDeliveries(const std::string& channel,
                                                               TimestampMs due_by_ms,
                                                               std::size_t limit) {
  Reader& r = impl_->reader;
  std::lock_guard lock(r.mu);
  ScopedReset reset(r.select_due_deliveries);
  r.select_due_deliveries.Bind(1, channel).Bind(2, due_by_ms).Bind(3, SqlLimit(limit));
  return ReadDeliveries(r.select_due_deliveries, "read due outbox deliveries of " + channel);
}

namespace {

Status ValidateOutcome(const DeliveryOutcome& o) {
  if (o.id.empty()) return InvalidArgumentError("delivery outcome: id must not be empty");
  return Status::Ok();
}

}  // namespace

Status SqliteStore::RecordDeliveryAttempt(const DeliveryOutcome& outcome) {
  if (!impl_->writer) return impl_->ReadOnlyError();
  MANN_RETURN_IF_ERROR(ValidateOutcome(outcome));
  return impl_->Submit(OutboxUpdate{OutboxState::kPending, outcome});
}

Status SqliteStore::MarkDelivered(const DeliveryOutcome& outcome) {
  if (!impl_->writer) return impl_->ReadOnlyError();
  MANN_RETURN_IF_ERROR(ValidateOutcome(outcome));
  return impl_->Submit(OutboxUpdate{OutboxState::kDelivered, outcome});
}

Status SqliteStore::MarkFailed(const DeliveryOutcome& outcome) {
  if (!impl_->writer) return impl_->ReadOnlyError();
  MANN_RETURN_IF_ERROR(ValidateOutcome(outcome));
  return impl_->Submit(OutboxUpdate{OutboxState::kFailed, outcome});
}

Status SqliteStore::MarkDead(const DeliveryOutcome& outcome) {
  if (!impl_->writer) return impl_->ReadOnlyError();
  MANN_RETURN_IF_ERROR(ValidateOutcome(outcome));
  return impl_->Submit(OutboxUpdate{OutboxState::kDead, outcome});
}

Result<std::vector<OutboxChannelStats>> SqliteStore::OutboxStats(TimestampMs since_ms) {
  Reader& r = impl_->reader;
  std::lock_guard lock(r.mu);
  Statement& s = r.select_outbox_stats;
  ScopedReset reset(s);
  s.Bind(1, since_ms);
  std::vector<OutboxChannelStats> out;
  for (;;) {
    MANN_ASSIGN_OR_RETURN(bool row, s.Step("read outbox statistics"));
    if (!row) return out;
    OutboxChannelStats c;
    c.channel = s.Text(0);
    c.pending = s.Int(1);
    c.oldest_pending_created_ms = s.Int(2);
    c.next_attempt_ms = s.Int(3);
    c.delivered_since = s.Int(4);
    c.failed_since = s.Int(5);
    c.dead_since = s.Int(6);
    c.last_dead_ms = s.Int(7);
    out.push_back(std::move(c));
  }
}

Result<std::vector<OutboxDelivery>> SqliteStore::RecentDeliveries(std::size_t limit) {
  Reader& r = impl_->reader;
  std::lock_guard lock(r.mu);
  ScopedReset reset(r.select_recent_deliveries);
  r.select_recent_deliveries.Bind(1, SqlLimit(limit));
  return ReadDeliveries(r.select_recent_deliveries, "read recent outbox deliveries");
}

Result<std::int64_t> SqliteStore::PruneDeliveries(TimestampMs before_ms) {
  if (!impl_->writer) return impl_->ReadOnlyError();
  std::int64_t deleted = 0;
  MANN_RETURN_IF_ERROR(impl_->Submit(OutboxPrune{before_ms, &deleted}));
  return deleted;
}

// A connection of its own, like Load(): a full check can take seconds on a large file and must
// not stall History() and the other reads meanwhile.
Status SqliteStore::CheckIntegrity() {
  MANN_ASSIGN_OR_RETURN(Connection conn, Connection::Open(impl_->options.path, SQLITE_OPEN_READONLY,
                                                          impl_->options.busy_timeout_ms));
  MANN_ASSIGN_OR_RETURN(Statement check, Statement::Prepare(conn, "PRAGMA integrity_check"));
  MANN_ASSIGN_OR_RETURN(bool row, check.Step("integrity check"));
  const std::string first = row ? std::string(check.Text(0)) : std::string("no result");
  if (first == "ok") return Status::Ok();
  return DataLossError(fmt::format(
      "{} failed its integrity check: {}; restore a copy from a backup or move it aside",
      impl_->options.path, first));
}

std::string SqliteStore::Describe() const {
  return "sqlite:" + impl_->options.path + (impl_->options.read_only ? " (read-only)" : "");
}

SqliteStats SqliteStore::Stats() const {
  return SqliteStats{impl_->transactions.load(), impl_->writes.load(), impl_->failed.load(),
                     impl_->split_groups.load()};
}

}  // namespace mann::store
