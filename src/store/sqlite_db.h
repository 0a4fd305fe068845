// Thin RAII layer over the SQLite C API, private to the store module.
//
// Connection owns one sqlite3 handle; Statement owns one prepared statement and is meant to be
// prepared once and reused. SqliteError() is the one place where SQLite result codes become a
// Status; everything else in the module goes through it.
//
// Thread-safety: neither type is thread-safe; each is used by one thread at a time (the writer
// thread, or a caller holding the read mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <sqlite3.h>

#include <mann/core/status.h>

namespace mann::store::internal {

// Maps a SQLite result code (primary or extended) onto a Status whose message names `path` and
// says what the operator can do. `what` is the operation that failed ("begin transaction");
// `detail` is sqlite3_errmsg() text, used for codes without a canonical message.
Status SqliteError(int rc, std::string_view path, std::string_view what,
                   std::string_view detail = {});

class Connection {
 public:
  // Opens `path` with sqlite3_open_v2 `flags` and extended result codes on, and sets the busy
  // timeout. Errors are mapped by SqliteError (CANTOPEN names the directory).
  static Result<Connection> Open(const std::string& path, int flags, int busy_timeout_ms);

  Connection() = default;
  Connection(Connection&&) = default;
  Connection& operator=(Connection&&) = default;

  sqlite3* get() const { return db_.get(); }
  const std::string& path() const { return path_; }

  // Runs one or more statements that return no rows of interest.
  Status Exec(std::string_view sql, std::string_view what);

  // Runs a statement returning one integer (a PRAGMA read) and returns it.
  Result<std::int64_t> QueryInt(std::string_view sql, std::string_view what);

  // The Status for `rc` just returned by a call on this connection.
  Status Error(int rc, std::string_view what) const;

 private:
  struct Closer {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
  };
  std::unique_ptr<sqlite3, Closer> db_;
  std::string path_;
};

class Statement {
 public:
  static Result<Statement> Prepare(const Connection& conn, std::string_view sql);

  Statement() = default;
  Statement(Statement&&) = default;
  Statement& operator=(Statement&&) = default;

  // Binders take 1-based parameter indexes and return *this for chaining. A bind failure (only
  // possible for oversized values) is remembered and reported by the next Step().
  Statement& Bind(int index, std::string_view text);
  Statement& Bind(int index, std::int64_t value);
  Statement& Bind(int index, double value);
  Statement& BindBlob(int index, std::span<const unsigned char> bytes);
  Statement& BindNull(int index);

  // Advances the statement: true when a row is available, false when done.
  Result<bool> Step(std::string_view what);

  // Runs a statement expected to produce no rows (INSERT, UPDATE, DELETE).
  Status Run(std::string_view what);

  // Column readers, 0-based, valid until the next Step() or Reset().
  std::string_view Text(int column) const;
  std::int64_t Int(int column) const;
  double Double(int column) const;
  std::span<const unsigned char> Blob(int column) const;
  bool IsNull(int column) const;

  // Makes the statement ready for reuse: resets it and clears its bindings. A reset statement
  // holds no read snapshot, so a half-read query cannot pin the WAL.
  void Reset();

 private:
  struct Finalizer {
    void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
  };
  std::unique_ptr<sqlite3_stmt, Finalizer> stmt_;
  std::string path_;  // for error messages; the handle comes from sqlite3_db_handle()
  int bind_rc_ = SQLITE_OK;
};

// Resets a statement when it leaves scope, however the scope is left.
class ScopedReset {
 public:
  explicit ScopedReset(Statement& stmt) : stmt_(stmt) {}
  ~ScopedReset() { stmt_.Reset(); }
  ScopedReset(const ScopedReset&) = delete;
  ScopedReset& operator=(const ScopedReset&) = delete;

 private:
  Statement& stmt_;
};

}  // namespace mann::store::internal
