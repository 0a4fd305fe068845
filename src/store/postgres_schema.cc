#include "postgres_schema.h"

#include <iterator>
#include <string_view>

#include <fmt/format.h>

#include <mann/core/log.h>

namespace mann::store::internal {
namespace {

// Append-only: never edit a released step, add a new one. JSON columns are TEXT, not jsonb:
// jsonb reorders keys and drops duplicates, and an entry must come back byte for byte. Ids,
// namespaces and channels sort with COLLATE "C", byte order as in SQLite, whatever the
// database's locale: a natural-language collation ignores the hyphens of UUIDs.
constexpr std::string_view kMigrations[] = {
    // 1: entries, history, counters, chat, the pager outbox and the replicas' change log.
    R"sql(
CREATE TABLE entries (
  id             TEXT COLLATE "C" PRIMARY KEY,
  ns             TEXT COLLATE "C" NOT NULL,
  content        TEXT NOT NULL,
  context        TEXT NOT NULL,
  tags           TEXT NOT NULL,     -- JSON array of strings
  metadata       TEXT NOT NULL,     -- JSON object
  importance     DOUBLE PRECISION NOT NULL CHECK (importance >= 0 AND importance <= 3),
  usage_count    BIGINT NOT NULL,
  last_access_ms BIGINT NOT NULL,
  created_ms     BIGINT NOT NULL,
  updated_ms     BIGINT NOT NULL,
  version        BIGINT NOT NULL,
  content_hash   TEXT NOT NULL,
  language       TEXT NOT NULL,
  terms          TEXT NOT NULL,     -- JSON array of strings: analyzer output
  encoder_id     TEXT NOT NULL,
  embedding      BYTEA NOT NULL     -- little-endian float32, 4 bytes per dimension
);
CREATE INDEX entries_ns_id ON entries (ns, id);

CREATE TABLE history (
  seq        BIGSERIAL PRIMARY KEY,
  entry_id   TEXT NOT NULL,
  ns         TEXT NOT NULL,
  action     TEXT NOT NULL,
  version    BIGINT NOT NULL,
  content    TEXT NOT NULL,
  context    TEXT NOT NULL,
  tags       TEXT NOT NULL,
  metadata   TEXT NOT NULL,
  importance DOUBLE PRECISION NOT NULL,
  at_ms      BIGINT NOT NULL,
  source     TEXT NOT NULL,
  reason     TEXT NOT NULL
);
CREATE INDEX history_entry_seq ON history (entry_id, seq);

CREATE TABLE counters (
  ns        TEXT COLLATE "C" PRIMARY KEY,
  reads     BIGINT NOT NULL DEFAULT 0,
  writes    BIGINT NOT NULL DEFAULT 0,
  evictions BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE sessions (
  id         TEXT PRIMARY KEY,
  ns         TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL
);

CREATE TABLE turns (
  session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  seq        BIGINT NOT NULL,
  role       TEXT NOT NULL,
  text       TEXT NOT NULL,
  at_ms      BIGINT NOT NULL,
  PRIMARY KEY (session_id, seq)
);

CREATE TABLE pager_outbox (
  id              TEXT COLLATE "C" PRIMARY KEY,  -- UUIDv7 from the pager: sorts by creation
  channel         TEXT COLLATE "C" NOT NULL,
  notification_id TEXT NOT NULL,
  notification    TEXT NOT NULL,     -- JSON
  state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'dead')),
  attempts        BIGINT NOT NULL CHECK (attempts >= 0),
  created_ms      BIGINT NOT NULL,
  next_attempt_ms BIGINT NOT NULL,
  updated_ms      BIGINT NOT NULL,
  last_error      TEXT NOT NULL,
  last_status     INTEGER NOT NULL,
  UNIQUE (notification_id, channel)
);
CREATE INDEX pager_outbox_due ON pager_outbox (channel, next_attempt_ms, id)
  WHERE state = 'pending';
CREATE INDEX pager_outbox_updated ON pager_outbox (updated_ms);

-- One row per entry a commit upserted, deleted or forgot. seq grows in commit order because
-- writers append under an advisory lock held until they commit.
CREATE TABLE changes (
  seq      BIGSERIAL PRIMARY KEY,
  ns       TEXT NOT NULL,
  entry_id TEXT NOT NULL,
  kind     TEXT NOT NULL CHECK (kind IN ('upsert', 'delete', 'forget')),
  at_ms    BIGINT NOT NULL DEFAULT ((extract(epoch FROM clock_timestamp()) * 1000)::bigint)
);
CREATE INDEX changes_at ON changes (at_ms);

-- The highest seq pruning removed: a reader behind it has missed changes.
CREATE TABLE change_log_state (
  id             INTEGER PRIMARY KEY CHECK (id = 1),
  pruned_through BIGINT NOT NULL
);
INSERT INTO change_log_state (id, pruned_through) VALUES (1, 0);
)sql",
};

}  // namespace

int LatestPostgresSchemaVersion() { return static_cast<int>(std::size(kMigrations)); }

std::int64_t ReadPostgresSchemaVersion(pqxx::connection& conn) {
  pqxx::read_transaction tx(conn);
  const pqxx::row exists = tx.exec1("SELECT to_regclass('schema_version') IS NOT NULL");
  if (!exists[0].as<bool>()) return 0;
  return tx.exec1("SELECT coalesce(max(version), 0) FROM schema_version")[0].as<std::int64_t>();
}

Status MigratePostgres(pqxx::connection& conn, const std::string& where) {
  pqxx::work tx(conn);
  // Held until commit: a second replica blocks here, then sees the finished schema.
  tx.exec_params("SELECT pg_advisory_xact_lock($1)", kMigrationLockKey);
  tx.exec(
      "CREATE TABLE IF NOT EXISTS schema_version ("
      "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())");
  const auto current =
      tx.exec1("SELECT coalesce(max(version), 0) FROM schema_version")[0].as<std::int64_t>();
  if (current > LatestPostgresSchemaVersion()) {
    return FailedPreconditionError(fmt::format(
        "{} has schema version {}, newer than the version {} this mann supports; upgrade mann",
        where, current, LatestPostgresSchemaVersion()));
  }
  for (int to = static_cast<int>(current) + 1; to <= LatestPostgresSchemaVersion(); ++to) {
    tx.exec(std::string(kMigrations[to - 1]));
    tx.exec_params("INSERT INTO schema_version (version) VALUES ($1)", to);
    log::Get("store")->info("schema migrated database={} version={}", where, to);
  }
  tx.commit();
  return Status::Ok();
}

}  // namespace mann::store::internal
