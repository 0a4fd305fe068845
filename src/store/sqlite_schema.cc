#include "sqlite_schema.h"

#include <iterator>
#include <string_view>

#include <fmt/format.h>

#include <mann/core/log.h>

namespace mann::store::internal {
namespace {

// Append-only: never edit a released step, add a new one.
constexpr std::string_view kMigrations[] = {
    // 1: the initial schema.
    R"sql(
PRAGMA application_id = 1835101806;

CREATE TABLE entries (
  id             TEXT PRIMARY KEY NOT NULL,
  ns             TEXT NOT NULL,
  content        TEXT NOT NULL,
  context        TEXT NOT NULL,
  tags           TEXT NOT NULL,     -- JSON array of strings
  metadata       TEXT NOT NULL,     -- JSON object
  importance     REAL NOT NULL CHECK (importance >= 0 AND importance <= 3),
  usage_count    INTEGER NOT NULL,
  last_access_ms INTEGER NOT NULL,
  created_ms     INTEGER NOT NULL,
  updated_ms     INTEGER NOT NULL,
  version        INTEGER NOT NULL,
  content_hash   TEXT NOT NULL,
  language       TEXT NOT NULL,
  terms          TEXT NOT NULL,     -- JSON array of strings: analyzer output
  encoder_id     TEXT NOT NULL,
  embedding      BLOB NOT NULL      -- little-endian float32, 4 bytes per dimension
);
CREATE INDEX entries_ns_id ON entries (ns, id);

CREATE TABLE history (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  entry_id   TEXT NOT NULL,
  ns         TEXT NOT NULL,
  action     TEXT NOT NULL,
  version    INTEGER NOT NULL,
  content    TEXT NOT NULL,
  context    TEXT NOT NULL,
  tags       TEXT NOT NULL,
  metadata   TEXT NOT NULL,
  importance REAL NOT NULL,
  at_ms      INTEGER NOT NULL,
  source     TEXT NOT NULL,
  reason     TEXT NOT NULL
);
CREATE INDEX history_entry_seq ON history (entry_id, seq);

CREATE TABLE counters (
  ns        TEXT PRIMARY KEY NOT NULL,
  reads     INTEGER NOT NULL DEFAULT 0,
  writes    INTEGER NOT NULL DEFAULT 0,
  evictions INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE sessions (
  id         TEXT PRIMARY KEY NOT NULL,
  ns         TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);

CREATE TABLE turns (
  session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  seq        INTEGER NOT NULL,
  role       TEXT NOT NULL,
  text       TEXT NOT NULL,
  at_ms      INTEGER NOT NULL,
  PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
)sql",

    // 2: the pager's outbox, one row per (notification, channel).
    R"sql(
CREATE TABLE pager_outbox (
  id              TEXT PRIMARY KEY NOT NULL,  -- UUIDv7 from the pager: sorts by creation
  channel         TEXT NOT NULL,
  notification_id TEXT NOT NULL,
  notification    TEXT NOT NULL,              -- JSON
  state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'dead')),
  attempts        INTEGER NOT NULL CHECK (attempts >= 0),
  created_ms      INTEGER NOT NULL,
  next_attempt_ms INTEGER NOT NULL,
  updated_ms      INTEGER NOT NULL,
  last_error      TEXT NOT NULL,
  last_status     INTEGER NOT NULL,
  UNIQUE (notification_id, channel)
);
-- The worker's query: a channel's pending rows by due time. Final rows stay out of the index.
CREATE INDEX pager_outbox_due ON pager_outbox (channel, next_attempt_ms, id)
  WHERE state = 'pending';
-- Pruning and the health check's "dead in the last hour".
CREATE INDEX pager_outbox_updated ON pager_outbox (updated_ms);
)sql",
};

static_assert(kApplicationId == 1835101806, "migration 1 spells the application id in decimal");

struct FileVersion {
  std::int64_t application_id = 0;
  std::int64_t user_version = 0;
  std::int64_t tables = 0;
};

Result<FileVersion> ReadVersion(Connection& conn) {
  FileVersion v;
  MANN_ASSIGN_OR_RETURN(v.application_id,
                        conn.QueryInt("PRAGMA application_id", "read application id"));
  MANN_ASSIGN_OR_RETURN(v.user_version, conn.QueryInt("PRAGMA user_version", "read schema"));
  MANN_ASSIGN_OR_RETURN(
      v.tables,
      conn.QueryInt("SELECT count(*) FROM sqlite_schema WHERE type = 'table'", "read schema"));
  return v;
}

// Refuses a foreign file or one from a newer mann.
Status CheckVersion(const Connection& conn, const FileVersion& v) {
  const bool foreign_id = v.application_id != 0 && v.application_id != kApplicationId;
  const bool foreign_tables = v.application_id == 0 && v.user_version == 0 && v.tables > 0;
  if (foreign_id || foreign_tables) {
    return FailedPreconditionError(fmt::format(
        "{} is a SQLite database of another application (application_id {:#x}, {} tables); "
        "point mann at its own file",
        conn.path(), v.application_id, v.tables));
  }
  if (v.user_version > LatestSchemaVersion()) {
    return FailedPreconditionError(fmt::format(
        "{} has schema version {}, newer than the version {} this mann supports; upgrade mann "
        "or restore a backup made by this version",
        conn.path(), v.user_version, LatestSchemaVersion()));
  }
  return Status::Ok();
}

// Applies migration `to` (1-based) in its own transaction, unless another process got there
// first while we waited for the write lock.
Status ApplyOne(Connection& conn, int to) {
  MANN_RETURN_IF_ERROR(conn.Exec("BEGIN IMMEDIATE", "begin migration"));
  auto rollback = [&conn](Status s) {
    if (sqlite3_get_autocommit(conn.get()) == 0) {
      conn.Exec("ROLLBACK", "roll back migration").IgnoreError();  // `s` is the error to report
    }
    return s;
  };

  Result<std::int64_t> current = conn.QueryInt("PRAGMA user_version", "read schema");
  if (!current.ok()) return rollback(current.status());
  if (*current >= to) return conn.Exec("COMMIT", "commit migration");

  Status s = conn.Exec(kMigrations[to - 1], fmt::format("migrate to schema {}", to));
  if (s.ok()) s = conn.Exec(fmt::format("PRAGMA user_version = {}", to), "set schema version");
  if (s.ok()) s = conn.Exec("COMMIT", "commit migration");
  if (!s.ok()) return rollback(s);
  log::Get("store")->info("schema migrated file={} version={}", conn.path(), to);
  return Status::Ok();
}

}  // namespace

int LatestSchemaVersion() { return static_cast<int>(std::size(kMigrations)); }

Status Migrate(Connection& conn) {
  MANN_ASSIGN_OR_RETURN(FileVersion v, ReadVersion(conn));
  MANN_RETURN_IF_ERROR(CheckVersion(conn, v));
  for (int to = static_cast<int>(v.user_version) + 1; to <= LatestSchemaVersion(); ++to) {
    MANN_RETURN_IF_ERROR(ApplyOne(conn, to));
  }
  return Status::Ok();
}

Status CheckSchemaReadOnly(Connection& conn) {
  MANN_ASSIGN_OR_RETURN(FileVersion v, ReadVersion(conn));
  MANN_RETURN_IF_ERROR(CheckVersion(conn, v));
  if (v.user_version < LatestSchemaVersion()) {
    return FailedPreconditionError(fmt::format(
        "{} has schema version {} but this mann needs {}; open it once without read-only so "
        "it can be migrated",
        conn.path(), v.user_version, LatestSchemaVersion()));
  }
  return Status::Ok();
}

}  // namespace mann::store::internal
