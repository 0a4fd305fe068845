#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <fmt/format.h>
#include <pqxx/pqxx>
#include <sys/socket.h>

#include <mann/core/log.h>
#include <mann/store/postgres_store.h>

#include "postgres_schema.h"
#include "sqlite_codec.h"

namespace mann::store {
namespace {

using SteadyClock = std::chrono::steady_clock;

// --- SQL ---

constexpr const char* kEntryColumns =
    "id, ns, content, context, tags, metadata, importance, usage_count, last_access_ms, "
    "created_ms, updated_ms, version, content_hash, language, terms, encoder_id, embedding";

constexpr const char* kUpsertEntry = R"sql(
INSERT INTO entries (id, ns, content, context, tags, metadata, importance, usage_count,
                     last_access_ms, created_ms, updated_ms, version, content_hash, language,
                     terms, encoder_id, embedding)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
ON CONFLICT (id) DO UPDATE SET
  ns = excluded.ns, content = excluded.content, context = excluded.context,
  tags = excluded.tags, metadata = excluded.metadata, importance = excluded.importance,
  usage_count = excluded.usage_count, last_access_ms = excluded.last_access_ms,
  created_ms = excluded.created_ms, updated_ms = excluded.updated_ms,
  version = excluded.version, content_hash = excluded.content_hash,
  language = excluded.language, terms = excluded.terms, encoder_id = excluded.encoder_id,
  embedding = excluded.embedding)sql";

constexpr const char* kInsertHistory = R"sql(
INSERT INTO history (entry_id, ns, action, version, content, context, tags, metadata,
                     importance, at_ms, source, reason)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12))sql";

constexpr const char* kSelectHistory = R"sql(
SELECT seq, entry_id, ns, action, version, content, context, tags, metadata, importance, at_ms,
       source, reason
FROM history WHERE entry_id = $1 AND ns = $2 ORDER BY seq)sql";

// Replicas bump usage of one entry independently and none sees the others' bumps, so a write
// never lowers what another replica already stored.
constexpr const char* kUpdateUsage = R"sql(
UPDATE entries SET usage_count = GREATEST(usage_count, $2),
                   last_access_ms = GREATEST(last_access_ms, $3)
WHERE id = $1)sql";

constexpr const char* kAddCounters = R"sql(
INSERT INTO counters (ns, reads, writes, evictions) VALUES ($1, $2, $3, $4)
ON CONFLICT (ns) DO UPDATE SET
  reads = counters.reads + excluded.reads, writes = counters.writes + excluded.writes,
  evictions = counters.evictions + excluded.evictions)sql";

constexpr const char* kUpsertSession = R"sql(
INSERT INTO sessions (id, ns, created_ms, updated_ms) VALUES ($1, $2, $3, $4)
ON CONFLICT (id) DO UPDATE SET ns = excluded.ns, updated_ms = excluded.updated_ms)sql";

constexpr const char* kDeliveryColumns =
    "id, channel, notification_id, notification, state, attempts, created_ms, next_attempt_ms, "
    "updated_ms, last_error, last_status";

constexpr const char* kFinishAttempt = R"sql(
UPDATE pager_outbox SET
  state = $2, attempts = attempts + 1,
  next_attempt_ms = CASE WHEN $2 = 'pending' THEN $3 ELSE next_attempt_ms END,
  updated_ms = $4, last_error = $5, last_status = $6
WHERE id = $1 AND state = 'pending')sql";

constexpr const char* kOutboxStats = R"sql(
SELECT channel,
       count(*) FILTER (WHERE state = 'pending'),
       coalesce(min(created_ms) FILTER (WHERE state = 'pending'), 0),
       coalesce(min(next_attempt_ms) FILTER (WHERE state = 'pending'), 0),
       count(*) FILTER (WHERE state = 'delivered' AND updated_ms >= $1),
       count(*) FILTER (WHERE state = 'failed' AND updated_ms >= $1),
       count(*) FILTER (WHERE state = 'dead' AND updated_ms >= $1),
       coalesce(max(updated_ms) FILTER (WHERE state = 'dead'), 0)
FROM pager_outbox GROUP BY channel ORDER BY channel)sql";

constexpr const char* kLastChangeSeq = R"sql(
SELECT GREATEST(coalesce((SELECT max(seq) FROM changes), 0),
                (SELECT pruned_through FROM change_log_state WHERE id = 1)))sql";

// The deleted rows' highest seq becomes the pruning horizon in the same statement.
constexpr const char* kPruneChanges = R"sql(
WITH gone AS (DELETE FROM changes WHERE at_ms < $1 RETURNING seq),
     horizon AS (UPDATE change_log_state
                 SET pruned_through = GREATEST(pruned_through,
                                               (SELECT coalesce(max(seq), 0) FROM gone))
                 WHERE id = 1)
SELECT count(*) FROM gone)sql";

constexpr std::size_t kLoadPage = 1000;
constexpr auto kPruneInterval = std::chrono::seconds(60);

// --- errors ---

// What went wrong with a call, and whether a fresh connection could make a retry succeed.
struct Failure {
  Status status;
  bool retry = false;  // the connection broke before anything committed
};

bool IsConnectionState(const std::string& sqlstate) {
  // 08: connection exception; 57P01..57P03: the server is shutting down or starting up.
  return sqlstate.rfind("08", 0) == 0 || sqlstate == "57P01" || sqlstate == "57P02" ||
         sqlstate == "57P03";
}

// libpq's messages span lines ("...failed: Connection refused\n\tIs the server running...");
// a log line and a JSON error read better as one.
std::string FirstLine(const char* what) {
  std::string s;
  for (const char* p = what; *p != '\0'; ++p) {
    const bool blank = *p == '\n' || *p == '\t' || *p == ' ';
    if (blank && (s.empty() || s.back() == ' ')) continue;
    s += blank ? ' ' : *p;
  }
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

// The one place that maps libpqxx exceptions onto Status codes. `what` says what was being
// done ("read history of entry X"), `where` names the server.
Failure MapException(const std::exception_ptr& error, std::string_view what,
                     const std::string& where) {
  auto unavailable = [&](std::string_view why, const char* detail) {
    return UnavailableError(
        fmt::format("PostgreSQL {}: {} failed, {}: {}", where, what, why, FirstLine(detail)));
  };
  try {
    std::rethrow_exception(error);
  } catch (const pqxx::in_doubt_error& e) {
    return {unavailable("the connection broke during commit, so its outcome is unknown", e.what()),
            false};
  } catch (const pqxx::broken_connection& e) {
    return {unavailable("the server is unreachable", e.what()), true};
  } catch (const pqxx::sql_error& e) {
    const std::string& state = e.sqlstate();
    const std::string detail = FirstLine(e.what());
    if (IsConnectionState(state)) return {unavailable("the connection was lost", e.what()), true};
    if (state == "57014") return {unavailable("the statement timed out", e.what()), false};
    if (state == "40001" || state == "40P01" || state == "55P03") {
      return {unavailable("it conflicted with a concurrent transaction", e.what()), false};
    }
    if (state == "23505") return {AlreadyExistsError(fmt::format("{}: {}", what, detail)), false};
    if (state == "23503") return {NotFoundError(fmt::format("{}: {}", what, detail)), false};
    if (state.rfind("22", 0) == 0 || state.rfind("23", 0) == 0) {
      return {InvalidArgumentError(fmt::format("{}: {}", what, detail)), false};
    }
    if (state.rfind("53", 0) == 0) {
      return {ResourceExhaustedError(fmt::format("PostgreSQL {}: {} failed: {}; free disk space "
                                                 "or connections on the server",
                                                 where, what, detail)),
              false};
    }
    if (state == "XX001" || state == "XX002") {
      return {DataLossError(fmt::format("PostgreSQL {}: {}: {}", where, what, detail)), false};
    }
    return {InternalError(fmt::format("PostgreSQL {}: {} failed ({}): {}", where, what,
                                      state.empty() ? "no SQLSTATE" : state, detail)),
            false};
  } catch (const pqxx::transaction_rollback& e) {
    return {unavailable("the server rolled the transaction back", e.what()), false};
  } catch (const pqxx::failure& e) {
    // libpq reports a lost server this way too when no SQLSTATE came with it.
    return {unavailable("the server did not answer", e.what()), true};
  } catch (const std::exception& e) {
    return {InternalError(fmt::format("PostgreSQL {}: {} failed: {}", where, what, e.what())),
            false};
  }
  return {InternalError("unreachable"), false};
}

// --- URL handling ---

bool HasPostgresScheme(std::string_view url) {
  return url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0;
}

std::string StripQuery(const std::string& url) {
  const std::size_t q = url.find('?');
  return q == std::string::npos ? url : url.substr(0, q);
}

// The URL handed to libpq: the configured one plus the timeouts this store promises.
// client_min_messages keeps NOTICEs ("relation already exists, skipping") off stderr, where
// libpqxx would print them.
std::string ConnectionString(const PostgresOptions& o) {
  const auto statement_ms = std::max<std::int64_t>(1, o.statement_timeout.count());
  // A dead peer is noticed by keepalives while idle and by tcp_user_timeout while sending. A
  // server that stops answering but keeps its TCP connection (SIGSTOP, a hung disk) fires
  // neither, since its kernel still acknowledges; the Watchdog bounds those calls.
  const auto user_timeout_ms =
      std::max<std::int64_t>(1000, std::chrono::milliseconds(o.connect_timeout).count());
  return fmt::format(
      "{}{}connect_timeout={}&keepalives=1&keepalives_idle=10&keepalives_interval=5"
      "&keepalives_count=3&tcp_user_timeout={}&application_name=mann"
      "&options=-c%20statement_timeout%3D{}%20-c%20client_min_messages%3Dwarning",
      o.url, o.url.find('?') == std::string::npos ? "?" : "&",
      std::max<std::int64_t>(1, o.connect_timeout.count()), user_timeout_ms, statement_ms);
}

Status ValidateOptions(const PostgresOptions& o) {
  if (o.url.empty()) {
    return InvalidArgumentError(
        "storage.postgres_url must be set when storage.backend is postgres (MANN_DATABASE_URL)");
  }
  if (!HasPostgresScheme(o.url)) {
    return InvalidArgumentError(
        fmt::format("storage.postgres_url must start with postgresql:// or postgres://, got \"{}\"",
                    RedactPostgresUrl(o.url)));
  }
  if (o.connect_timeout.count() < 1) {
    return InvalidArgumentError("storage.postgres_connect_timeout must be at least 1 second");
  }
  if (o.statement_timeout.count() < 1) {
    return InvalidArgumentError("statement_timeout must be positive");
  }
  if (o.max_connections < 2) {
    // Load() holds one connection while its callback may use another.
    return InvalidArgumentError(
        fmt::format("max_connections must be at least 2, got {}", o.max_connections));
  }
  if (o.max_group == 0) return InvalidArgumentError("max_group must be at least 1, got 0");
  return Status::Ok();
}

// --- decoding rows ---

std::string Text(const pqxx::field& f) { return f.is_null() ? std::string() : f.c_str(); }

Result<StoredEntry> DecodeEntry(const pqxx::row& row, int first) {
  StoredEntry out;
  MemoryEntry& e = out.entry;
  auto col = [&](int i) { return row[first + i]; };
  e.id = Text(col(0));
  e.ns = Text(col(1));
  e.content = Text(col(2));
  e.context = Text(col(3));
  MANN_ASSIGN_OR_RETURN(e.tags, internal::DecodeStrings(Text(col(4)), "tags", e.id));
  MANN_ASSIGN_OR_RETURN(e.metadata, internal::DecodeObject(Text(col(5)), "metadata", e.id));
  e.importance = col(6).as<double>();
  e.usage_count = col(7).as<std::int64_t>();
  e.last_access_ms = col(8).as<std::int64_t>();
  e.created_ms = col(9).as<std::int64_t>();
  e.updated_ms = col(10).as<std::int64_t>();
  e.version = col(11).as<std::int64_t>();
  e.content_hash = Text(col(12));
  e.language = Text(col(13));
  MANN_ASSIGN_OR_RETURN(out.terms, internal::DecodeStrings(Text(col(14)), "terms", e.id));
  out.encoder_id = Text(col(15));
  const pqxx::binarystring blob(col(16));
  MANN_ASSIGN_OR_RETURN(out.embedding, internal::DecodeFloats({blob.data(), blob.size()}, e.id));
  return out;
}

Result<HistoryRecord> DecodeHistory(const pqxx::row& row) {
  HistoryRecord h;
  h.seq = row[0].as<std::int64_t>();
  h.entry_id = Text(row[1]);
  h.ns = Text(row[2]);
  const std::string action = Text(row[3]);
  std::optional<HistoryAction> parsed = ParseHistoryAction(action);
  if (!parsed) {
    return DataLossError(fmt::format(
        "entry {}: history row {} has unknown action \"{}\"; the database is damaged or was "
        "written by a newer mann",
        h.entry_id, h.seq, action));
  }
  h.action = *parsed;
  h.version = row[4].as<std::int64_t>();
  h.content = Text(row[5]);
  h.context = Text(row[6]);
  MANN_ASSIGN_OR_RETURN(h.tags, internal::DecodeStrings(Text(row[7]), "history.tags", h.entry_id));
  MANN_ASSIGN_OR_RETURN(h.metadata,
                        internal::DecodeObject(Text(row[8]), "history.metadata", h.entry_id));
  h.importance = row[9].as<double>();
  h.at_ms = row[10].as<std::int64_t>();
  h.source = Text(row[11]);
  h.reason = Text(row[12]);
  return h;
}

Result<OutboxDelivery> DecodeDelivery(const pqxx::row& row) {
  OutboxDelivery d;
  d.id = Text(row[0]);
  d.channel = Text(row[1]);
  d.notification_id = Text(row[2]);
  d.notification = Text(row[3]);
  const std::string state = Text(row[4]);
  std::optional<OutboxState> parsed = ParseOutboxState(state);
  if (!parsed) {
    return DataLossError(fmt::format(
        "outbox delivery {} has unknown state \"{}\"; the database is damaged or was written by "
        "a newer mann",
        d.id, state));
  }
  d.state = *parsed;
  d.attempts = row[5].as<std::int64_t>();
  d.created_ms = row[6].as<std::int64_t>();
  d.next_attempt_ms = row[7].as<std::int64_t>();
  d.updated_ms = row[8].as<std::int64_t>();
  d.last_error = Text(row[9]);
  d.last_status = row[10].as<int>();
  return d;
}

Result<std::vector<OutboxDelivery>> DecodeDeliveries(const pqxx::result& rows) {
  std::vector<OutboxDelivery> out;
  out.reserve(rows.size());
  for (const pqxx::row& row : rows) {
    MANN_ASSIGN_OR_RETURN(OutboxDelivery d, DecodeDelivery(row));
    out.push_back(std::move(d));
  }
  return out;
}

// PostgreSQL takes a signed 64-bit LIMIT.
std::int64_t SqlLimit(std::size_t limit) {
  return static_cast<std::int64_t>(
      std::min<std::size_t>(limit, std::numeric_limits<std::int64_t>::max()));
}

// --- validation (the same rules as SqliteStore) ---

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

Status ValidateOutcome(const DeliveryOutcome& o) {
  if (o.id.empty()) return InvalidArgumentError("delivery outcome: id must not be empty");
  return Status::Ok();
}

// --- the watchdog ---

// Past its bound a call is also given the time libpq may take to notice the shut-down socket.
constexpr auto kWatchSlack = std::chrono::seconds(1);

// Bounds every call from the client's side. A stopped or hung server keeps its TCP connections
// up (its kernel still acknowledges), so keepalives and tcp_user_timeout never fire and its own
// statement_timeout never runs: a blocked libpq read would wait forever. Each call arms a watch
// on its connection's socket with a deadline; one thread shuts down the socket of every watch
// past its deadline, which fails the blocked read at once. (PQcancel would need the stopped
// postmaster to act on it.) Every watch has a token of its own and is cleared under the mutex
// the watchdog fires under, so once Disarm() has returned the watchdog can no longer touch that
// socket, however soon the connection is leased again. Thread-safe.
class Watchdog {
 public:
  explicit Watchdog(std::string where) : where_(std::move(where)), thread_([this] { Loop(); }) {}
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  ~Watchdog() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  // Watches socket `fd` until `deadline`; returns the watch's token.
  std::uint64_t Arm(int fd, SteadyClock::time_point deadline) {
    std::lock_guard lock(mu_);
    const std::uint64_t token = next_token_++;
    watches_.emplace(token, Watch{fd, deadline, false});
    cv_.notify_one();  // the new deadline may be the earliest
    return token;
  }

  // Moves the deadline of a watch that has not fired (a long call between two statements).
  void Extend(std::uint64_t token, int fd, SteadyClock::time_point deadline) {
    std::lock_guard lock(mu_);
    const auto it = watches_.find(token);
    if (it == watches_.end() || it->second.fired) return;
    it->second.fd = fd;
    it->second.deadline = deadline;
  }

  // Stops watching; true when the watchdog shut the socket down.
  bool Disarm(std::uint64_t token) {
    std::lock_guard lock(mu_);
    const auto it = watches_.find(token);
    if (it == watches_.end()) return false;
    const bool fired = it->second.fired;
    watches_.erase(it);
    return fired;
  }

 private:
  struct Watch {
    int fd;
    SteadyClock::time_point deadline;
    bool fired;
  };

  void Loop() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      const auto now = SteadyClock::now();
      std::optional<SteadyClock::time_point> next;
      for (auto& [token, w] : watches_) {
        if (w.fired) continue;
        if (w.deadline > now) {
          next = next ? std::min(*next, w.deadline) : w.deadline;
          continue;
        }
        w.fired = true;
        if (w.fd >= 0) ::shutdown(w.fd, SHUT_RDWR);
        log::Get("store")->warn(
            "PostgreSQL did not answer in time, shutting the connection down database={} "
            "watch={}",
            where_, token);
      }
      if (next) {
        cv_.wait_until(lock, *next);
      } else {
        cv_.wait(lock);
      }
    }
  }

  const std::string where_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::uint64_t, Watch> watches_;  // guarded by mu_
  std::uint64_t next_token_ = 1;            // guarded by mu_
  bool stopping_ = false;                   // guarded by mu_
  std::thread thread_;                      // last: it uses everything above
};

// One call's watch on its connection: armed on construction, cleared by Disarm() or at the end
// of the scope, which must come before the connection is closed or returned to the pool.
class CallWatch {
 public:
  CallWatch(Watchdog& dog, pqxx::connection& conn, std::chrono::milliseconds bound)
      : dog_(dog), conn_(conn), bound_(bound), token_(dog.Arm(conn.sock(), Deadline())) {}
  CallWatch(const CallWatch&) = delete;
  CallWatch& operator=(const CallWatch&) = delete;
  ~CallWatch() { Disarm(); }

  // A fresh bound from now, for a call that made progress (one page of a long scan).
  void Extend() { dog_.Extend(token_, conn_.sock(), Deadline()); }

  // Stops the watch; true when the watchdog shut the connection down (it must not be reused).
  bool Disarm() {
    if (armed_) {
      armed_ = false;
      fired_ = dog_.Disarm(token_);
    }
    return fired_;
  }

 private:
  SteadyClock::time_point Deadline() const { return SteadyClock::now() + bound_; }

  Watchdog& dog_;
  pqxx::connection& conn_;
  const std::chrono::milliseconds bound_;
  const std::uint64_t token_;
  bool armed_ = true;
  bool fired_ = false;
};

// What a call the watchdog cut off returns. A COMMIT cut off has an unknown outcome.
Status StalledError(const std::exception_ptr& error, std::string_view what,
                    const std::string& where, std::chrono::milliseconds bound) {
  bool in_doubt = false;
  try {
    if (error) std::rethrow_exception(error);
  } catch (const pqxx::in_doubt_error&) {
    in_doubt = true;
  } catch (...) {
  }
  return UnavailableError(fmt::format(
      "PostgreSQL {}: {} failed: PostgreSQL did not answer within {} ms (a stopped, hung or "
      "overloaded server), so the connection was shut down{}",
      where, what, bound.count(),
      in_doubt ? "; it was cut off during commit, so its outcome is unknown" : ""));
}

// --- connections ---

// A bounded set of connections, made on demand. A connection is leased to one thread at a
// time; one that broke is dropped on return, so the next lease connects afresh.
class Pool {
 public:
  Pool(const PostgresOptions& options, std::string where, std::atomic<std::uint64_t>& connects)
      : options_(options),
        conninfo_(ConnectionString(options)),
        where_(std::move(where)),
        connects_(connects) {}

  class Lease {
   public:
    Lease() = default;
    Lease(Pool* pool, std::unique_ptr<pqxx::connection> conn)
        : pool_(pool), conn_(std::move(conn)) {}
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&& other) noexcept {
      Release();
      pool_ = std::exchange(other.pool_, nullptr);
      conn_ = std::move(other.conn_);
      return *this;
    }
    ~Lease() { Release(); }

    pqxx::connection& operator*() { return *conn_; }
    // Closes the connection instead of returning it: after an error its state is unknown.
    void Discard() {
      if (conn_) conn_->disconnect();
    }

   private:
    void Release() {
      if (pool_ != nullptr && conn_) pool_->Return(std::move(conn_));
      pool_ = nullptr;
    }
    Pool* pool_ = nullptr;
    std::unique_ptr<pqxx::connection> conn_;
  };

  // An idle connection, or a new one while fewer than max_connections are open.
  Result<Lease> Acquire() {
    const auto deadline = SteadyClock::now() + options_.connect_timeout;
    std::unique_lock lock(mu_);
    for (;;) {
      if (!idle_.empty()) {
        std::unique_ptr<pqxx::connection> conn = std::move(idle_.back());
        idle_.pop_back();
        return Lease(this, std::move(conn));
      }
      if (open_ < options_.max_connections) break;
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
          open_ >= options_.max_connections) {
        return UnavailableError(fmt::format(
            "PostgreSQL {}: all {} connections stayed busy for {} s; the server is slow or "
            "overloaded",
            where_, options_.max_connections, options_.connect_timeout.count()));
      }
    }
    ++open_;
    lock.unlock();
    Result<std::unique_ptr<pqxx::connection>> conn = Connect(conninfo_, where_, connects_);
    if (!conn.ok()) {
      lock.lock();
      --open_;
      cv_.notify_one();
      return conn.status();
    }
    return Lease(this, std::move(conn).value());
  }

  // Opens one connection outside any pool (the listener uses this too).
  static Result<std::unique_ptr<pqxx::connection>> Connect(const std::string& conninfo,
                                                           const std::string& where,
                                                           std::atomic<std::uint64_t>& connects) {
    try {
      auto conn = std::make_unique<pqxx::connection>(conninfo);
      connects.fetch_add(1, std::memory_order_relaxed);
      return conn;
    } catch (...) {
      return MapException(std::current_exception(), "connect", where).status;
    }
  }

  const std::string& conninfo() const { return conninfo_; }

  // Closes every idle connection: after one call found the server stalled, the others lead
  // to the same server, and a fresh connect is bounded by connect_timeout, not the call bound.
  void CloseIdle() {
    std::lock_guard lock(mu_);
    open_ -= idle_.size();
    idle_.clear();
    cv_.notify_all();
  }

 private:
  void Return(std::unique_ptr<pqxx::connection> conn) {
    std::lock_guard lock(mu_);
    if (conn->is_open()) {
      idle_.push_back(std::move(conn));
    } else {
      --open_;
    }
    cv_.notify_one();
  }

  const PostgresOptions& options_;
  const std::string conninfo_;
  const std::string where_;
  std::atomic<std::uint64_t>& connects_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;  // guarded by mu_
  std::size_t open_ = 0;                                 // guarded by mu_: leased + idle
};

// Records the newest seq announced on mann_changes. Constructing it issues LISTEN.
class ChangeReceiver final : public pqxx::notification_receiver {
 public:
  explicit ChangeReceiver(pqxx::connection_base& conn)
      : pqxx::notification_receiver(conn, "mann_changes") {}
  void operator()(const std::string& /*payload*/, int /*backend_pid*/) override { ++count_; }
  std::uint64_t count() const { return count_; }

 private:
  std::uint64_t count_ = 0;
};

// --- what the writer thread applies ---

struct Fence {};  // applies nothing; Flush() waits for it to come out of the queue

struct Job {
  std::variant<Mutation, Fence> op;
  std::optional<std::promise<Status>> promise;  // Commit()/Enqueue()/Flush(); none: CommitLater
};

bool IsFence(const Job& job) { return std::holds_alternative<Fence>(job.op); }

struct ChangeRow {
  std::string ns;
  std::string entry_id;
  const char* kind;
};

}  // namespace

// --- the store ---

struct PostgresStore::Impl {
  explicit Impl(const PostgresOptions& o)
      : options(o),
        where(StripQuery(RedactPostgresUrl(o.url))),
        call_bound(std::chrono::duration_cast<std::chrono::milliseconds>(
            o.connect_timeout + o.statement_timeout + kWatchSlack)),
        pool(options, where, connects),
        watchdog(where) {}

  const PostgresOptions options;
  const std::string where;  // the redacted URL, for messages
  // How long one call may hold its connection before the watchdog shuts it down.
  const std::chrono::milliseconds call_bound;
  std::atomic<std::uint64_t> transactions{0}, writes{0}, failed{0}, connects{0}, pruned{0};
  Pool pool;
  Watchdog watchdog;

  // The listener: used by WaitForChanges() only, one caller at a time.
  std::mutex listen_mu;
  std::unique_ptr<pqxx::connection> listen_conn;  // guarded by listen_mu
  std::unique_ptr<ChangeReceiver> receiver;       // guarded by listen_mu; before listen_conn dies

  // The writer queue.
  std::mutex queue_mu;
  std::condition_variable queue_cv;
  std::deque<Job> queue;  // guarded by queue_mu
  bool stopping = false;  // guarded by queue_mu
  std::thread thread;
  Status later_error;  // writer thread only: first CommitLater failure since the last Flush()
  SteadyClock::time_point last_prune{};  // writer thread only

  // Runs `body(tx-capable connection)` on a leased connection and maps what it throws. When the
  // connection turns out broken before anything committed (a server restart, a terminated
  // backend, an idle connection the server dropped), retries once on a fresh one.
  // Every call is watched: past call_bound the watchdog shuts its connection down and the call
  // returns Unavailable without a retry (a stalled server would stall the retry too).
  template <typename Fn>
  auto Run(std::string_view what, Fn&& body) -> decltype(body(std::declval<pqxx::connection&>())) {
    return RunWatched(what, [&](pqxx::connection& c, CallWatch&) { return body(c); });
  }

  // Run() for a body that calls watch.Extend() between the statements of a long call.
  template <typename Fn>
  auto RunWatched(std::string_view what, Fn&& body)
      -> decltype(body(std::declval<pqxx::connection&>(), std::declval<CallWatch&>())) {
    for (int attempt = 0;; ++attempt) {
      Result<Pool::Lease> lease = pool.Acquire();
      if (!lease.ok()) return lease.status();
      CallWatch watch(watchdog, **lease, call_bound);
      try {
        auto out = body(**lease, watch);
        if (watch.Disarm()) lease->Discard();  // answered as its socket was shut down
        return out;
      } catch (...) {
        const bool stalled = watch.Disarm();
        lease->Discard();
        if (stalled) {
          pool.CloseIdle();
          return StalledError(std::current_exception(), what, where, call_bound);
        }
        Failure f = MapException(std::current_exception(), what, where);
        if (f.retry && attempt == 0) {
          log::Get("store")->info("reconnecting after a broken connection database={} during={}",
                                  where, what);
          continue;
        }
        return f.status;
      }
    }
  }

  Status Submit(Job job, bool wait) {
    std::future<Status> outcome;
    if (wait) {
      job.promise.emplace();
      outcome = job.promise->get_future();
    }
    {
      std::lock_guard lock(queue_mu);
      if (stopping) {
        return FailedPreconditionError(fmt::format("store {} is closing", where));
      }
      queue.push_back(std::move(job));
    }
    queue_cv.notify_one();
    return wait ? outcome.get() : Status::Ok();
  }

  std::future<Status> SubmitAsync(Mutation m) {
    Job job{std::move(m), std::promise<Status>()};
    std::future<Status> outcome = job.promise->get_future();
    {
      std::lock_guard lock(queue_mu);
      if (!stopping) {
        queue.push_back(std::move(job));
        queue_cv.notify_one();
        return outcome;
      }
    }
    job.promise->set_value(FailedPreconditionError(fmt::format("store {} is closing", where)));
    return outcome;
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
      MaybePrune();
    }
  }

  // Commits the batch's mutations as one transaction; when that fails for a reason other than
  // the connection, retries each alone so every caller learns its own outcome.
  void RunBatch(std::vector<Job>& batch) {
    std::vector<const Mutation*> work;
    for (const Job& job : batch) {
      if (!IsFence(job)) work.push_back(&std::get<Mutation>(job.op));
    }
    std::vector<Status> results(batch.size());
    if (!work.empty()) {
      Failure group = ApplyGroup(work);
      if (group.status.ok()) {
        transactions.fetch_add(1, std::memory_order_relaxed);
      } else if (group.retry || work.size() == 1) {
        for (std::size_t i = 0; i < batch.size(); ++i) {
          if (!IsFence(batch[i])) results[i] = group.status;
        }
      } else {
        log::Get("store")->warn(
            "group commit failed, retrying one by one database={} size={} error={}", where,
            work.size(), group.status.ToString());
        for (std::size_t i = 0; i < batch.size(); ++i) {
          if (IsFence(batch[i])) continue;
          const Mutation* one[] = {&std::get<Mutation>(batch[i].op)};
          Failure alone = ApplyGroup(one);
          if (alone.status.ok()) transactions.fetch_add(1, std::memory_order_relaxed);
          results[i] = alone.status;
        }
      }
    }
    for (std::size_t i = 0; i < batch.size(); ++i) Deliver(batch[i], std::move(results[i]));
  }

  void Deliver(Job& job, Status result) {
    if (IsFence(job)) {
      job.promise->set_value(std::exchange(later_error, Status::Ok()));
      return;
    }
    (result.ok() ? writes : failed).fetch_add(1, std::memory_order_relaxed);
    if (job.promise) {
      job.promise->set_value(std::move(result));
      return;
    }
    if (!result.ok()) {
      log::Get("store")->warn("deferred write failed database={} error={}", where,
                              result.ToString());
      if (later_error.ok()) later_error = std::move(result);
    }
  }

  // One transaction for `mutations`; a broken connection found before commit is retried once.
  // `retry` in the result says whether the failure was the connection's (then retrying members
  // alone cannot help).
  Failure ApplyGroup(std::span<const Mutation* const> mutations) {
    for (int attempt = 0;; ++attempt) {
      Result<Pool::Lease> lease = pool.Acquire();
      if (!lease.ok()) return {lease.status(), true};
      CallWatch watch(watchdog, **lease, call_bound);
      try {
        pqxx::work tx(**lease);
        std::vector<ChangeRow> changes;
        for (const Mutation* m : mutations) ApplyMutation(tx, *m, changes);
        AppendChanges(tx, changes);
        tx.commit();
        if (watch.Disarm()) lease->Discard();  // committed as its socket was shut down
        return {Status::Ok(), false};
      } catch (...) {
        const bool stalled = watch.Disarm();
        lease->Discard();
        if (stalled) {
          pool.CloseIdle();
          return {StalledError(std::current_exception(), "commit", where, call_bound), true};
        }
        Failure f = MapException(std::current_exception(), "commit", where);
        if (f.retry && attempt == 0) continue;
        return f;
      }
    }
  }

  // The order is part of the contract: forgets, deletes, upserts, history, usage, counters.
  static void ApplyMutation(pqxx::work& tx, const Mutation& m, std::vector<ChangeRow>& changes) {
    for (const std::string& id : m.forgets) {
      const pqxx::result gone =
          tx.exec_params("DELETE FROM entries WHERE id = $1 RETURNING ns", id);
      tx.exec_params("DELETE FROM history WHERE entry_id = $1", id);
      // Only a live entry is in a replica's memory; forgetting bare history changes none.
      if (!gone.empty()) changes.push_back({Text(gone[0][0]), id, "forget"});
    }
    for (const std::string& id : m.deletes) {
      const pqxx::result gone =
          tx.exec_params("DELETE FROM entries WHERE id = $1 RETURNING ns", id);
      if (!gone.empty()) changes.push_back({Text(gone[0][0]), id, "delete"});
    }
    for (const StoredEntry& s : m.upserts) {
      UpsertEntry(tx, s);
      changes.push_back({s.entry.ns, s.entry.id, "upsert"});
    }
    for (const HistoryRecord& h : m.history) {
      tx.exec_params(kInsertHistory, h.entry_id, h.ns, std::string(HistoryActionName(h.action)),
                     h.version, h.content, h.context, internal::EncodeStrings(h.tags),
                     internal::EncodeObject(h.metadata), h.importance, h.at_ms, h.source, h.reason);
    }
    for (const UsageUpdate& u : m.usage) {
      tx.exec_params(kUpdateUsage, u.entry_id, u.usage_count, u.last_access_ms);
    }
    for (const CounterDelta& c : m.counters) {
      tx.exec_params(kAddCounters, c.ns, c.reads, c.writes, c.evictions);
    }
  }

  static void UpsertEntry(pqxx::work& tx, const StoredEntry& s) {
    const MemoryEntry& e = s.entry;
    const std::vector<unsigned char> bytes = internal::EncodeFloats(s.embedding);
    const pqxx::binarystring embedding(bytes.data(), bytes.size());
    tx.exec_params(kUpsertEntry, e.id, e.ns, e.content, e.context, internal::EncodeStrings(e.tags),
                   internal::EncodeObject(e.metadata), e.importance, e.usage_count,
                   e.last_access_ms, e.created_ms, e.updated_ms, e.version, e.content_hash,
                   e.language, internal::EncodeStrings(s.terms), s.encoder_id, embedding);
  }

  // Appends the change rows last in the transaction, under the change-log lock: it is held
  // until commit, so seqs are handed out in commit order and a reader that has seen seq N can
  // never later find a new row below N. Taken last, after every row lock of this transaction,
  // so the holder waits for nothing else and the lock cannot join a deadlock.
  static void AppendChanges(pqxx::work& tx, const std::vector<ChangeRow>& changes) {
    if (changes.empty()) return;
    tx.exec_params("SELECT pg_advisory_xact_lock($1)", internal::kChangeLogLockKey);
    std::int64_t newest = 0;
    for (const ChangeRow& c : changes) {
      const pqxx::row r = tx.exec_params1(
          "INSERT INTO changes (ns, entry_id, kind) VALUES ($1, $2, $3) RETURNING seq", c.ns,
          c.entry_id, std::string(c.kind));
      newest = std::max(newest, r[0].as<std::int64_t>());
    }
    // Delivered to listeners only once the transaction commits.
    tx.exec_params("SELECT pg_notify('mann_changes', $1)", std::to_string(newest));
  }

  void MaybePrune() {
    const auto now = SteadyClock::now();
    if (last_prune != SteadyClock::time_point{} && now - last_prune < kPruneInterval) return;
    last_prune = now;
    Result<std::int64_t> n = Prune(options.change_retention);
    if (!n.ok()) {
      log::Get("store")->warn("pruning the change log failed database={} error={}", where,
                              n.status().ToString());
    }
  }

  Result<std::int64_t> Prune(std::chrono::seconds older_than) {
    const auto cutoff_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch() - older_than)
                               .count();
    return Run("prune the change log", [&](pqxx::connection& c) -> Result<std::int64_t> {
      pqxx::work tx(c);
      const auto n = tx.exec_params1(kPruneChanges, cutoff_ms)[0].as<std::int64_t>();
      tx.commit();
      pruned.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
      return n;
    });
  }

  // A direct (not queued) write in one transaction; `body` returns the call's Status.
  template <typename Fn>
  Status Write(std::string_view what, Fn&& body) {
    return Run(what, [&](pqxx::connection& c) -> Status {
      pqxx::work tx(c);
      Status s = body(tx);
      if (!s.ok()) return s;  // the transaction rolls back as it goes out of scope
      tx.commit();
      return Status::Ok();
    });
  }
  // (Re)connects the listener and issues LISTEN. REQUIRES: listen_mu held.
  Status Listen() {
    receiver.reset();
    listen_conn.reset();
    MANN_ASSIGN_OR_RETURN(listen_conn, Pool::Connect(pool.conninfo(), where, connects));
    // Issuing LISTEN is a statement like any other; waiting for notifications is bounded by
    // the caller's timeout (a select on the socket), so only this part is watched.
    CallWatch watch(watchdog, *listen_conn, call_bound);
    try {
      receiver = std::make_unique<ChangeReceiver>(*listen_conn);
    } catch (...) {
      const bool stalled = watch.Disarm();
      listen_conn.reset();
      if (stalled) {
        return StalledError(std::current_exception(), "listen for changes", where, call_bound);
      }
      return MapException(std::current_exception(), "listen for changes", where).status;
    }
    if (watch.Disarm()) {
      receiver.reset();
      listen_conn.reset();
      return StalledError(nullptr, "listen for changes", where, call_bound);
    }
    return Status::Ok();
  }

  // One attempt on a pending outbox row, ending in state `to`.
  Status FinishAttempt(OutboxState to, const DeliveryOutcome& o) {
    MANN_RETURN_IF_ERROR(ValidateOutcome(o));
    return Write("record attempt on outbox delivery " + o.id, [&](pqxx::work& tx) -> Status {
      const pqxx::result r = tx.exec_params(kFinishAttempt, o.id, std::string(OutboxStateName(to)),
                                            o.next_attempt_ms, o.at_ms, o.error, o.status);
      if (r.affected_rows() == 0) {
        return NotFoundError(fmt::format(
            "outbox delivery {} is not pending: it was never enqueued or is already final", o.id));
      }
      return Status::Ok();
    });
  }
};

PostgresStore::PostgresStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

PostgresStore::~PostgresStore() {
  if (impl_->thread.joinable()) {
    {
      std::lock_guard lock(impl_->queue_mu);
      impl_->stopping = true;
    }
    impl_->queue_cv.notify_all();
    impl_->thread.join();
  }
  std::lock_guard lock(impl_->listen_mu);
  impl_->receiver.reset();
  impl_->listen_conn.reset();
}

int PostgresStore::SchemaVersion() { return internal::LatestPostgresSchemaVersion(); }

Result<std::unique_ptr<PostgresStore>> PostgresStore::Open(const PostgresOptions& options) {
  MANN_RETURN_IF_ERROR(ValidateOptions(options));
  auto impl = std::make_unique<Impl>(options);

  // Step 1: migrate (idempotent; concurrent openers serialize on the migration lock).
  MANN_RETURN_IF_ERROR(impl->Run("migrate the schema", [&](pqxx::connection& c) {
    return internal::MigratePostgres(c, impl->where);
  }));

  // Step 2: the writer thread applies queued mutations in groups.
  impl->thread = std::thread([raw = impl.get()] { raw->WriterLoop(); });
  log::Get("store")->info("store opened database={} schema={}", impl->where, SchemaVersion());
  return std::unique_ptr<PostgresStore>(new PostgresStore(std::move(impl)));
}

Status PostgresStore::Commit(Mutation m) {
  if (m.empty()) return Status::Ok();
  MANN_RETURN_IF_ERROR(ValidateMutation(m));
  return impl_->Submit(Job{std::move(m), std::nullopt}, true);
}

std::future<Status> PostgresStore::Enqueue(Mutation m) {
  auto ready = [](Status s) {
    std::promise<Status> done;
    done.set_value(std::move(s));
    return done.get_future();
  };
  if (m.empty()) return ready(Status::Ok());
  if (Status s = ValidateMutation(m); !s.ok()) return ready(std::move(s));
  return impl_->SubmitAsync(std::move(m));
}

void PostgresStore::CommitLater(Mutation m) {
  if (m.empty()) return;
  if (Status s = ValidateMutation(m); !s.ok()) {
    log::Get("store")->error("deferred write refused database={} error={}", impl_->where,
                             s.ToString());
    return;
  }
  Status queued = impl_->Submit(Job{std::move(m), std::nullopt}, false);
  if (!queued.ok()) {
    log::Get("store")->error("write dropped database={}: {}", impl_->where, queued.ToString());
  }
}

Status PostgresStore::Flush() { return impl_->Submit(Job{Fence{}, std::nullopt}, true); }

// Keyset pages inside one REPEATABLE READ transaction: one consistent snapshot without holding
// the whole table in memory. `fn` runs between pages' rows and may use other connections.
Status PostgresStore::Load(const std::function<Status(StoredEntry&&)>& fn) {
  return impl_->RunWatched("load entries", [&](pqxx::connection& c, CallWatch& watch) -> Status {
    pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(c);
    const std::string first_page =
        fmt::format("SELECT {} FROM entries ORDER BY ns, id LIMIT {}", kEntryColumns, kLoadPage);
    const std::string next_page =
        fmt::format("SELECT {} FROM entries WHERE (ns, id) > ($1, $2) ORDER BY ns, id LIMIT {}",
                    kEntryColumns, kLoadPage);
    std::string last_ns, last_id;
    for (bool first = true;; first = false) {
      watch.Extend();  // each page is bounded, not the whole table with its callbacks
      const pqxx::result page =
          first ? tx.exec(first_page) : tx.exec_params(next_page, last_ns, last_id);
      for (const pqxx::row& row : page) {
        MANN_ASSIGN_OR_RETURN(StoredEntry entry, DecodeEntry(row, 0));
        last_ns = entry.entry.ns;
        last_id = entry.entry.id;
        MANN_RETURN_IF_ERROR(fn(std::move(entry)));
      }
      if (page.size() < kLoadPage) return Status::Ok();
    }
  });
}

Result<std::vector<HistoryRecord>> PostgresStore::History(const std::string& ns,
                                                          const std::string& entry_id) {
  return impl_->Run("read history of entry " + entry_id,
                    [&](pqxx::connection& c) -> Result<std::vector<HistoryRecord>> {
                      pqxx::read_transaction tx(c);
                      const pqxx::result rows = tx.exec_params(kSelectHistory, entry_id, ns);
                      std::vector<HistoryRecord> out;
                      out.reserve(rows.size());
                      for (const pqxx::row& row : rows) {
                        MANN_ASSIGN_OR_RETURN(HistoryRecord h, DecodeHistory(row));
                        out.push_back(std::move(h));
                      }
                      return out;
                    });
}

Result<std::vector<NamespaceCounters>> PostgresStore::Counters() {
  return impl_->Run(
      "read counters", [&](pqxx::connection& c) -> Result<std::vector<NamespaceCounters>> {
        pqxx::read_transaction tx(c);
        const pqxx::result rows =
            tx.exec("SELECT ns, reads, writes, evictions FROM counters ORDER BY ns");
        std::vector<NamespaceCounters> out;
        for (const pqxx::row& r : rows) {
          out.push_back(NamespaceCounters{Text(r[0]), r[1].as<std::int64_t>(),
                                          r[2].as<std::int64_t>(), r[3].as<std::int64_t>()});
        }
        return out;
      });
}

Status PostgresStore::SaveSession(const ChatSession& session) {
  if (session.id.empty()) return InvalidArgumentError("session id must not be empty");
  return impl_->Write("save session " + session.id, [&](pqxx::work& tx) {
    tx.exec_params(kUpsertSession, session.id, session.ns, session.created_ms, session.updated_ms);
    return Status::Ok();
  });
}

Result<std::optional<ChatSession>> PostgresStore::GetSession(const std::string& id) {
  return impl_->Run(
      "read session " + id, [&](pqxx::connection& c) -> Result<std::optional<ChatSession>> {
        pqxx::read_transaction tx(c);
        const pqxx::result rows =
            tx.exec_params("SELECT id, ns, created_ms, updated_ms FROM sessions WHERE id = $1", id);
        if (rows.empty()) return std::optional<ChatSession>();
        const pqxx::row& r = rows[0];
        return std::optional<ChatSession>(
            ChatSession{Text(r[0]), Text(r[1]), r[2].as<std::int64_t>(), r[3].as<std::int64_t>()});
      });
}

// Also raises the session's updated_ms to the turn's at_ms.
Status PostgresStore::AppendTurn(const ChatTurn& turn) {
  if (turn.session_id.empty()) return InvalidArgumentError("turn session_id must not be empty");
  const std::string what = fmt::format("append turn {} of session {}", turn.seq, turn.session_id);
  Status s = impl_->Write(what, [&](pqxx::work& tx) {
    tx.exec_params(
        "INSERT INTO turns (session_id, seq, role, text, at_ms) VALUES ($1, $2, $3, $4, $5)",
        turn.session_id, turn.seq, turn.role, turn.text, turn.at_ms);
    tx.exec_params("UPDATE sessions SET updated_ms = GREATEST(updated_ms, $2) WHERE id = $1",
                   turn.session_id, turn.at_ms);
    return Status::Ok();
  });
  if (s.code() == StatusCode::kNotFound) {
    return NotFoundError(
        fmt::format("append turn {}: session {} does not exist; save the session before its turns",
                    turn.seq, turn.session_id));
  }
  if (s.code() == StatusCode::kAlreadyExists) {
    return AlreadyExistsError(
        fmt::format("session {} already has a turn {}", turn.session_id, turn.seq));
  }
  return s;
}

Result<std::vector<ChatTurn>> PostgresStore::RecentTurns(const std::string& session_id,
                                                         std::size_t limit) {
  return impl_->Run("read turns of " + session_id,
                    [&](pqxx::connection& c) -> Result<std::vector<ChatTurn>> {
                      pqxx::read_transaction tx(c);
                      const pqxx::result rows = tx.exec_params(
                          "SELECT session_id, seq, role, text, at_ms FROM turns "
                          "WHERE session_id = $1 ORDER BY seq DESC LIMIT $2",
                          session_id, SqlLimit(limit));
                      std::vector<ChatTurn> out;
                      for (const pqxx::row& r : rows) {
                        out.push_back(ChatTurn{Text(r[0]), r[1].as<std::int64_t>(), Text(r[2]),
                                               Text(r[3]), r[4].as<std::int64_t>()});
                      }
                      std::reverse(out.begin(), out.end());  // read newest first for the limit
                      return out;
                    });
}

// --- the pager outbox ---

Status PostgresStore::EnqueueDeliveries(std::vector<OutboxDelivery> rows) {
  if (rows.empty()) return Status::Ok();
  for (const OutboxDelivery& d : rows) MANN_RETURN_IF_ERROR(ValidateDelivery(d));
  const std::string what = "enqueue outbox delivery " + rows.front().id;
  Status s = impl_->Write(what, [&](pqxx::work& tx) {
    for (const OutboxDelivery& d : rows) {
      tx.exec_params(
          "INSERT INTO pager_outbox (id, channel, notification_id, notification, state, "
          "attempts, created_ms, next_attempt_ms, updated_ms, last_error, last_status) "
          "VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $5, '', 0)",
          d.id, d.channel, d.notification_id, d.notification, d.created_ms, d.next_attempt_ms);
    }
    return Status::Ok();
  });
  if (s.code() == StatusCode::kAlreadyExists) {
    return AlreadyExistsError(fmt::format(
        "outbox already holds one of the {} deliveries (by id, or by notification and channel); "
        "first: delivery {} of notification {} for channel {}",
        rows.size(), rows.front().id, rows.front().notification_id, rows.front().channel));
  }
  return s;
}

Result<std::vector<OutboxDelivery>> PostgresStore::DueDeliveries(const std::string& channel,
                                                                 TimestampMs due_by_ms,
                                                                 std::size_t limit) {
  return impl_->Run("read due outbox deliveries of " + channel,
                    [&](pqxx::connection& c) -> Result<std::vector<OutboxDelivery>> {
                      pqxx::read_transaction tx(c);
                      return DecodeDeliveries(tx.exec_params(
                          fmt::format("SELECT {} FROM pager_outbox WHERE channel = $1 AND "
                                      "state = 'pending' AND next_attempt_ms <= $2 "
                                      "ORDER BY next_attempt_ms, id LIMIT $3",
                                      kDeliveryColumns),
                          channel, due_by_ms, SqlLimit(limit)));
                    });
}

Status PostgresStore::RecordDeliveryAttempt(const DeliveryOutcome& outcome) {
  return impl_->FinishAttempt(OutboxState::kPending, outcome);
}
Status PostgresStore::MarkDelivered(const DeliveryOutcome& outcome) {
  return impl_->FinishAttempt(OutboxState::kDelivered, outcome);
}
Status PostgresStore::MarkFailed(const DeliveryOutcome& outcome) {
  return impl_->FinishAttempt(OutboxState::kFailed, outcome);
}
Status PostgresStore::MarkDead(const DeliveryOutcome& outcome) {
  return impl_->FinishAttempt(OutboxState::kDead, outcome);
}

Result<std::vector<OutboxChannelStats>> PostgresStore::OutboxStats(TimestampMs since_ms) {
  return impl_->Run("read outbox statistics",
                    [&](pqxx::connection& c) -> Result<std::vector<OutboxChannelStats>> {
                      pqxx::read_transaction tx(c);
                      std::vector<OutboxChannelStats> out;
                      for (const pqxx::row& r : tx.exec_params(kOutboxStats, since_ms)) {
                        OutboxChannelStats s;
                        s.channel = Text(r[0]);
                        s.pending = r[1].as<std::int64_t>();
                        s.oldest_pending_created_ms = r[2].as<std::int64_t>();
                        s.next_attempt_ms = r[3].as<std::int64_t>();
                        s.delivered_since = r[4].as<std::int64_t>();
                        s.failed_since = r[5].as<std::int64_t>();
                        s.dead_since = r[6].as<std::int64_t>();
                        s.last_dead_ms = r[7].as<std::int64_t>();
                        out.push_back(std::move(s));
                      }
                      return out;
                    });
}

Result<std::vector<OutboxDelivery>> PostgresStore::RecentDeliveries(std::size_t limit) {
  return impl_->Run("read recent outbox deliveries",
                    [&](pqxx::connection& c) -> Result<std::vector<OutboxDelivery>> {
                      pqxx::read_transaction tx(c);
                      return DecodeDeliveries(
                          tx.exec_params(fmt::format("SELECT {} FROM pager_outbox "
                                                     "ORDER BY created_ms DESC, id DESC LIMIT $1",
                                                     kDeliveryColumns),
                                         SqlLimit(limit)));
                    });
}

Result<std::int64_t> PostgresStore::PruneDeliveries(TimestampMs before_ms) {
  return impl_->Run("prune outbox", [&](pqxx::connection& c) -> Result<std::int64_t> {
    pqxx::work tx(c);
    const pqxx::result r = tx.exec_params(
        "DELETE FROM pager_outbox WHERE state <> 'pending' AND updated_ms < $1", before_ms);
    tx.commit();
    return static_cast<std::int64_t>(r.affected_rows());
  });
}

// PostgreSQL checks its own pages (checksums, if enabled at initdb); what mann can check is that
// the schema is this build's and every row it will read decodes.
Status PostgresStore::CheckIntegrity() {
  return impl_->RunWatched("integrity check", [&](pqxx::connection& c, CallWatch& watch) -> Status {
    const std::int64_t version = internal::ReadPostgresSchemaVersion(c);
    if (version != SchemaVersion()) {
      return DataLossError(fmt::format(
          "{} has schema version {} but this mann writes {}; restart mann to migrate it",
          impl_->where, version, SchemaVersion()));
    }
    // Each scan is bounded on its own: together they may rightly take longer than one call.
    watch.Extend();
    pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(c);
    for (const pqxx::row& row :
         tx.exec(fmt::format("SELECT {} FROM entries ORDER BY ns, id", kEntryColumns))) {
      Result<StoredEntry> e = DecodeEntry(row, 0);
      if (!e.ok()) return e.status().WithContext(impl_->where + " failed its integrity check");
    }
    watch.Extend();
    for (const pqxx::row& row :
         tx.exec("SELECT seq, entry_id, ns, action, version, content, context, tags, metadata, "
                 "importance, at_ms, source, reason FROM history")) {
      Result<HistoryRecord> h = DecodeHistory(row);
      if (!h.ok()) return h.status().WithContext(impl_->where + " failed its integrity check");
    }
    watch.Extend();
    const pqxx::row orphans = tx.exec1(
        "SELECT count(*) FROM turns t LEFT JOIN sessions s ON s.id = t.session_id "
        "WHERE s.id IS NULL");
    if (orphans[0].as<std::int64_t>() != 0) {
      return DataLossError(impl_->where + " failed its integrity check: turns without a session");
    }
    return Status::Ok();
  });
}

std::string PostgresStore::Describe() const { return impl_->where; }

// --- the change log ---

Result<std::int64_t> PostgresStore::LastChangeSeq() {
  return impl_->Run("read the change log", [&](pqxx::connection& c) -> Result<std::int64_t> {
    pqxx::read_transaction tx(c);
    return tx.exec1(kLastChangeSeq)[0].as<std::int64_t>();
  });
}

Result<std::vector<Change>> PostgresStore::ChangesSince(std::int64_t after_seq, std::size_t limit) {
  return impl_->Run("read the change log", [&](pqxx::connection& c) -> Result<std::vector<Change>> {
    // One snapshot for the horizon check and the rows, so pruning cannot slip in between.
    pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(c);
    const auto horizon =
        tx.exec1("SELECT pruned_through FROM change_log_state WHERE id = 1")[0].as<std::int64_t>();
    if (after_seq < horizon) {
      return FailedPreconditionError(
          fmt::format("{}: changes after seq {} were pruned (kept through {}); reload everything",
                      impl_->where, after_seq, horizon));
    }
    std::string entry_columns;
    for (std::string_view col :
         {"id", "ns", "content", "context", "tags", "metadata", "importance", "usage_count",
          "last_access_ms", "created_ms", "updated_ms", "version", "content_hash", "language",
          "terms", "encoder_id", "embedding"}) {
      entry_columns += fmt::format(", e.{}", col);
    }
    const pqxx::result rows =
        tx.exec_params(fmt::format("SELECT c.seq, c.ns, c.entry_id, c.at_ms{} FROM changes c "
                                   "LEFT JOIN entries e ON e.id = c.entry_id "
                                   "WHERE c.seq > $1 ORDER BY c.seq LIMIT $2",
                                   entry_columns),
                       after_seq, SqlLimit(limit));
    std::vector<Change> out;
    out.reserve(rows.size());
    for (const pqxx::row& r : rows) {
      Change change;
      change.seq = r[0].as<std::int64_t>();
      change.ns = Text(r[1]);
      change.entry_id = Text(r[2]);
      change.at_ms = r[3].as<std::int64_t>();
      change.removed = r[4].is_null();
      if (!change.removed) {
        MANN_ASSIGN_OR_RETURN(StoredEntry e, DecodeEntry(r, 4));
        change.entry = std::move(e);
      }
      out.push_back(std::move(change));
    }
    return out;
  });
}

Status PostgresStore::WaitForChanges(std::chrono::milliseconds timeout) {
  Impl& im = *impl_;
  std::lock_guard lock(im.listen_mu);
  // Anything logged before LISTEN took effect was not announced: after (re)connecting, the
  // caller reads at once instead of waiting.
  if (im.listen_conn == nullptr || !im.listen_conn->is_open()) return im.Listen();
  try {
    const auto us = std::max<std::int64_t>(
        0, std::chrono::duration_cast<std::chrono::microseconds>(timeout).count());
    im.listen_conn->await_notification(static_cast<long>(us / 1'000'000),
                                       static_cast<long>(us % 1'000'000));
    return Status::Ok();
  } catch (...) {
    // A server restart breaks the listener while the rest works again; one fresh LISTEN
    // saves the caller a failed round and its backoff.
    Failure f = MapException(std::current_exception(), "wait for changes", im.where);
    if (f.retry && im.Listen().ok()) return Status::Ok();
    im.receiver.reset();
    im.listen_conn.reset();
    return f.status;
  }
}

Result<std::int64_t> PostgresStore::PruneChanges(std::chrono::seconds older_than) {
  return impl_->Prune(older_than);
}

PostgresStats PostgresStore::Stats() const {
  return PostgresStats{impl_->transactions.load(), impl_->writes.load(), impl_->failed.load(),
                       impl_->connects.load(), impl_->pruned.load()};
}

// --- URL redaction ---

std::string RedactPostgresUrl(const std::string& url) {
  const std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return "<unparsable PostgreSQL URL>";
  const std::size_t authority_begin = scheme_end + 3;
  const std::size_t authority_end = url.find_first_of("/?", authority_begin);
  std::string authority = url.substr(authority_begin, authority_end == std::string::npos
                                                          ? std::string::npos
                                                          : authority_end - authority_begin);
  std::string out = url.substr(0, authority_begin);
  const std::size_t at = authority.rfind('@');
  if (at != std::string::npos) {
    std::string user = authority.substr(0, at);
    if (const std::size_t colon = user.find(':'); colon != std::string::npos) user.resize(colon);
    out += user + authority.substr(at);
  } else {
    out += authority;
  }
  if (authority_end == std::string::npos) return out;

  // Path and query; a password= parameter is dropped.
  std::string rest = url.substr(authority_end);
  const std::size_t q = rest.find('?');
  if (q == std::string::npos) return out + rest;
  out += rest.substr(0, q);
  std::string kept;
  std::size_t pos = q + 1;
  while (pos <= rest.size()) {
    std::size_t amp = rest.find('&', pos);
    if (amp == std::string::npos) amp = rest.size();
    const std::string param = rest.substr(pos, amp - pos);
    if (!param.empty() && param.rfind("password=", 0) != 0) {
      kept += (kept.empty() ? "?" : "&") + param;
    }
    pos = amp + 1;
  }
  return out + kept;
}

}  // namespace mann::store
