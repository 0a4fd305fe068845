#include "sqlite_db.h"

#include <filesystem>
#include <string>

#include <fmt/format.h>

namespace mann::store::internal {
namespace {

std::string Prefixed(std::string_view what, std::string message) {
  if (what.empty()) return message;
  return fmt::format("{}: {}", what, message);
}

std::string DirectoryOf(std::string_view path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  return dir.empty() ? std::string(".") : dir.string();
}

}  // namespace

Status SqliteError(int rc, std::string_view path, std::string_view what, std::string_view detail) {
  const int primary = rc & 0xff;
  const std::string sqlite_text = detail.empty() ? sqlite3_errstr(rc) : std::string(detail);
  switch (primary) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return UnavailableError(Prefixed(
          what, fmt::format("database {} is locked by another process; stop the other mann "
                            "process or wait",
                            path)));
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return FailedPreconditionError(Prefixed(
          what, fmt::format("database {} cannot be written; check permissions of the file, of "
                            "its -wal and -shm companions and of directory {}",
                            path, DirectoryOf(path))));
    case SQLITE_FULL:
      return ResourceExhaustedError(Prefixed(
          what, fmt::format("disk full writing {}; free space on its file system (or raise the "
                            "database size limit) and retry",
                            path)));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return DataLossError(Prefixed(
          what, fmt::format("{} is not a valid mann database or is corrupt; restore a copy from a "
                            "backup or move it aside",
                            path)));
    case SQLITE_CANTOPEN:
      return FailedPreconditionError(Prefixed(
          what, fmt::format("cannot open database {}; check that directory {} exists and that "
                            "this user may read and write it and the file",
                            path, DirectoryOf(path))));
    case SQLITE_IOERR:
      return UnavailableError(
          Prefixed(what, fmt::format("I/O error on {} ({}); check the disk and the system log",
                                     path, sqlite_text)));
    case SQLITE_NOMEM:
      return ResourceExhaustedError(Prefixed(what, fmt::format("out of memory using {}", path)));
    case SQLITE_TOOBIG:
      return InvalidArgumentError(
          Prefixed(what, fmt::format("value too large to store in {}", path)));
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) {
        return AlreadyExistsError(Prefixed(what, sqlite_text));
      }
      if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        return FailedPreconditionError(Prefixed(what, sqlite_text));
      }
      return InvalidArgumentError(Prefixed(what, sqlite_text));
    case SQLITE_INTERRUPT:
      return UnavailableError(Prefixed(what, fmt::format("interrupted using {}", path)));
    default:
      return InternalError(Prefixed(
          what, fmt::format("unexpected sqlite error {} on {}: {}", rc, path, sqlite_text)));
  }
}

// --- Connection ---

Result<Connection> Connection::Open(const std::string& path, int flags, int busy_timeout_ms) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  Connection conn;
  conn.db_.reset(raw);  // sqlite3_open_v2 may return a handle even on failure; always close it
  conn.path_ = path;
  if (rc != SQLITE_OK) {
    return SqliteError(rc, path, "open", raw != nullptr ? sqlite3_errmsg(raw) : "");
  }
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, busy_timeout_ms);
  return conn;
}

Status Connection::Exec(std::string_view sql, std::string_view what) {
  const std::string text(sql);
  char* message = nullptr;
  const int rc = sqlite3_exec(db_.get(), text.c_str(), nullptr, nullptr, &message);
  std::string detail = message != nullptr ? message : "";
  sqlite3_free(message);
  if (rc != SQLITE_OK) return SqliteError(rc, path_, what, detail);
  return Status::Ok();
}

Result<std::int64_t> Connection::QueryInt(std::string_view sql, std::string_view what) {
  MANN_ASSIGN_OR_RETURN(Statement stmt, Statement::Prepare(*this, sql));
  MANN_ASSIGN_OR_RETURN(bool row, stmt.Step(what));
  if (!row) return InternalError(fmt::format("{}: `{}` returned no row", what, sql));
  return stmt.Int(0);
}

Status Connection::Error(int rc, std::string_view what) const {
  return SqliteError(rc, path_, what, db_ ? sqlite3_errmsg(db_.get()) : "");
}

// --- Statement ---

Result<Statement> Statement::Prepare(const Connection& conn, std::string_view sql) {
  sqlite3_stmt* raw = nullptr;
  const int rc = sqlite3_prepare_v3(conn.get(), sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
  Statement stmt;
  stmt.stmt_.reset(raw);
  stmt.path_ = conn.path();
  if (rc != SQLITE_OK) return conn.Error(rc, "prepare statement");
  if (raw == nullptr) return InternalError(fmt::format("empty SQL statement: `{}`", sql));
  return stmt;
}

Statement& Statement::Bind(int index, std::string_view text) {
  const int rc = sqlite3_bind_text64(stmt_.get(), index, text.data(), text.size(), SQLITE_TRANSIENT,
                                     SQLITE_UTF8);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Statement& Statement::Bind(int index, std::int64_t value) {
  const int rc = sqlite3_bind_int64(stmt_.get(), index, value);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Statement& Statement::Bind(int index, double value) {
  const int rc = sqlite3_bind_double(stmt_.get(), index, value);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Statement& Statement::BindBlob(int index, std::span<const unsigned char> bytes) {
  // A zero-length blob still binds as a blob (not NULL): the pointer must be non-null.
  static const unsigned char kEmpty = 0;
  const void* data = bytes.empty() ? &kEmpty : bytes.data();
  const int rc = sqlite3_bind_blob64(stmt_.get(), index, data, bytes.size(), SQLITE_TRANSIENT);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Statement& Statement::BindNull(int index) {
  const int rc = sqlite3_bind_null(stmt_.get(), index);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Result<bool> Statement::Step(std::string_view what) {
  sqlite3* db = sqlite3_db_handle(stmt_.get());
  if (bind_rc_ != SQLITE_OK) return SqliteError(bind_rc_, path_, what, sqlite3_errmsg(db));
  const int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteError(rc, path_, what, sqlite3_errmsg(db));
}

Status Statement::Run(std::string_view what) {
  MANN_ASSIGN_OR_RETURN(bool row, Step(what));
  if (row) return InternalError(fmt::format("{}: statement unexpectedly returned rows", what));
  return Status::Ok();
}

std::string_view Statement::Text(int column) const {
  const auto* text = sqlite3_column_text(stmt_.get(), column);
  const int size = sqlite3_column_bytes(stmt_.get(), column);
  if (text == nullptr) return {};
  return {reinterpret_cast<const char*>(text), static_cast<std::size_t>(size)};
}

std::int64_t Statement::Int(int column) const { return sqlite3_column_int64(stmt_.get(), column); }

double Statement::Double(int column) const { return sqlite3_column_double(stmt_.get(), column); }

std::span<const unsigned char> Statement::Blob(int column) const {
  const auto* data = static_cast<const unsigned char*>(sqlite3_column_blob(stmt_.get(), column));
  const int size = sqlite3_column_bytes(stmt_.get(), column);
  if (data == nullptr) return {};
  return {data, static_cast<std::size_t>(size)};
}

bool Statement::IsNull(int column) const {
  return sqlite3_column_type(stmt_.get(), column) == SQLITE_NULL;
}

void Statement::Reset() {
  if (!stmt_) return;
  sqlite3_reset(stmt_.get());  // returns the last step's error, already reported by Step()
  sqlite3_clear_bindings(stmt_.get());
  bind_rc_ = SQLITE_OK;
}

}  // namespace mann::store::internal
