// The PostgreSQL half of MakeBackup and RestoreBackup: pg_dump and pg_restore driven with argv,
// the connection handed to them through libpq's environment variables so that no password
// appears on a command line (where `ps` would show it).

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <libpq-fe.h>

#include <mann/core/strings.h>
#include <mann/store/backup.h>

#include "backup_internal.h"

namespace mann::store::internal {
namespace {

namespace fs = std::filesystem;

struct ConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Conn = std::unique_ptr<PGconn, ConnDeleter>;
using PgResult = std::unique_ptr<PGresult, ResultDeleter>;

std::string OneLine(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  return std::string(TrimSpace(text));
}

Result<Conn> Connect(const std::string& url, int connect_timeout_s) {
  // The URL is expanded after connect_timeout, so a connect_timeout in the URL wins.
  const std::string timeout = std::to_string(connect_timeout_s);
  const char* keywords[] = {"connect_timeout", "dbname", nullptr};
  const char* values[] = {timeout.c_str(), url.c_str(), nullptr};
  Conn conn(PQconnectdbParams(keywords, values, /*expand_dbname=*/1));
  if (!conn || PQstatus(conn.get()) != CONNECTION_OK) {
    return UnavailableError(fmt::format("cannot connect to PostgreSQL {}: {}",
                                        RedactPostgresUrl(url),
                                        conn ? OneLine(PQerrorMessage(conn.get())) : "no memory"));
  }
  return conn;
}

// Runs `sql`; returns its rows (PGRES_TUPLES_OK) or nothing (PGRES_COMMAND_OK).
Result<PgResult> Exec(PGconn* conn, const std::string& sql, std::string_view what) {
  PgResult result(PQexec(conn, sql.c_str()));
  const ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    return UnavailableError(fmt::format("PostgreSQL {}: {}", what, OneLine(PQerrorMessage(conn))));
  }
  return result;
}

Result<std::int64_t> QueryInt(PGconn* conn, const std::string& sql, std::string_view what) {
  MANN_ASSIGN_OR_RETURN(PgResult rows, Exec(conn, sql, what));
  if (PQntuples(rows.get()) < 1 || PQgetisnull(rows.get(), 0, 0)) return std::int64_t{0};
  return std::stoll(PQgetvalue(rows.get(), 0, 0));
}

// How a child tool connects: "NAME=value" for every connection setting of `url`, under the
// variable libpq reads it from, and the database name (pg_restore needs it as --dbname).
struct ToolConnection {
  std::vector<std::string> env;
  std::string dbname;
};

Result<ToolConnection> ConnectionEnvironment(const std::string& url, int connect_timeout_s) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &error);
  if (options == nullptr) {
    std::string why = error != nullptr ? OneLine(error) : "out of memory";
    PQfreemem(error);
    return InvalidArgumentError(
        fmt::format("storage.postgres_url is not a valid PostgreSQL "
                    "connection string: {}",
                    why));
  }
  ToolConnection tool;
  // Before the URL's own settings, which replace it when they hold a connect_timeout.
  tool.env.push_back(fmt::format("PGCONNECT_TIMEOUT={}", connect_timeout_s));
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr || *o->val == '\0') continue;
    if (std::string_view(o->keyword) == "dbname") tool.dbname = o->val;
    if (o->envvar != nullptr) tool.env.push_back(fmt::format("{}={}", o->envvar, o->val));
  }
  PQconninfoFree(options);
  if (tool.dbname.empty()) {
    return InvalidArgumentError("storage.postgres_url names no database (.../DBNAME)");
  }
  return tool;
}

std::vector<std::string> SplitPath(std::string_view text) {
  std::vector<std::string> dirs;
  std::size_t start = 0;
  for (;;) {
    const std::size_t colon = text.find(':', start);
    dirs.emplace_back(text.substr(start, colon == std::string_view::npos ? colon : colon - start));
    if (colon == std::string_view::npos) return dirs;
    start = colon + 1;
  }
}

// The program in PATH, else the newest /usr/lib/postgresql/<version>/bin has it (Debian keeps
// the server's tools there), else FailedPrecondition saying what to install.
Result<std::string> FindTool(const std::string& name) {
  const char* path = std::getenv("PATH");
  for (const std::string& dir : SplitPath(path != nullptr ? path : "")) {
    std::error_code ec;
    if (!dir.empty() && fs::exists(fs::path(dir) / name, ec))
      return (fs::path(dir) / name).string();
  }
  std::string best;
  int best_version = -1;
  std::error_code ec;
  for (fs::directory_iterator it("/usr/lib/postgresql", ec), end; !ec && it != end;
       it.increment(ec)) {
    const fs::path candidate = it->path() / "bin" / name;
    const std::string version = it->path().filename().string();
    if (version.empty() || version.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code exists_ec;
    if (fs::exists(candidate, exists_ec) && std::stoi(version) > best_version) {
      best_version = std::stoi(version);
      best = candidate.string();
    }
  }
  if (!best.empty()) return best;
  return FailedPreconditionError(fmt::format(
      "{} was not found in PATH or /usr/lib/postgresql/*/bin; install postgresql-client", name));
}

Status RunTool(const std::vector<std::string>& argv, const std::vector<std::string>& env,
               const ProcessLimits& limits) {
  MANN_ASSIGN_OR_RETURN(ProcessOutcome outcome,
                        RunProcess(argv, env, /*capture_stderr=*/true, limits));
  if (outcome.exit_code == 0) return Status::Ok();
  const std::string how = outcome.signal != 0
                              ? fmt::format("was killed by signal {}", outcome.signal)
                              : fmt::format("exited with {}", outcome.exit_code);
  return UnavailableError(fmt::format("{} {}: {}", fs::path(argv.front()).filename().string(), how,
                                      OneLine(outcome.stderr_tail)));
}

// Tables and views in the schemas a restore would write to; the system's own do not count.
constexpr std::string_view kUserRelations = R"sql(
SELECT count(*) FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
)sql";

// `sql` when `table` exists, else 0: a database mann never started on has no tables yet, and
// PostgreSQL refuses to even plan a query naming a missing table.
Result<std::int64_t> QueryIntIfTable(PGconn* conn, std::string_view table, const std::string& sql,
                                     std::string_view what) {
  MANN_ASSIGN_OR_RETURN(
      std::int64_t exists,
      QueryInt(conn, fmt::format("SELECT (to_regclass('{}') IS NOT NULL)::int", table), what));
  if (exists == 0) return std::int64_t{0};
  return QueryInt(conn, sql, what);
}

// The live memories; the schema version as PostgresStore records it (its highest migration).
Result<std::int64_t> EntryCount(PGconn* conn) {
  return QueryIntIfTable(conn, "entries", "SELECT count(*) FROM entries", "count entries");
}
Result<std::int64_t> SchemaVersion(PGconn* conn) {
  return QueryIntIfTable(conn, "schema_version",
                         "SELECT coalesce(max(version), 0) FROM schema_version",
                         "read schema version");
}

}  // namespace

std::string RedactPostgresUrl(const std::string& url) {
  // URL form: scheme://user:password@host...; keyword form: password=... .
  std::string out = url;
  const auto scheme = out.find("://");
  if (scheme != std::string::npos) {
    const auto at = out.find('@', scheme + 3);
    const auto colon = out.find(':', scheme + 3);
    if (at != std::string::npos && colon != std::string::npos && colon < at) {
      out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  for (const std::string_view key : {"password=", "password%3D"}) {
    for (auto pos = out.find(key); pos != std::string::npos; pos = out.find(key, pos + 1)) {
      const auto start = pos + key.size();
      auto end = out.find_first_of(" &", start);
      if (end == std::string::npos) end = out.size();
      out.replace(start, end - start, "***");
    }
  }
  return out;
}

Result<BackupResult> DumpPostgres(const BackupOptions& options, const std::string& stem) {
  if (options.postgres_url.empty()) {
    return InvalidArgumentError(
        "storage.postgres_url is empty; set it (MANN_DATABASE_URL) to back up PostgreSQL");
  }
  MANN_ASSIGN_OR_RETURN(std::string pg_dump, FindTool("pg_dump"));
  MANN_ASSIGN_OR_RETURN(
      ToolConnection tool,
      ConnectionEnvironment(options.postgres_url, options.postgres_connect_timeout_s));
  MANN_ASSIGN_OR_RETURN(Conn conn,
                        Connect(options.postgres_url, options.postgres_connect_timeout_s));

  // Step 1: one snapshot for the count and the dump. The exporting transaction must stay open
  // until pg_dump has imported it, so it ends only after the dump.
  MANN_RETURN_IF_ERROR(
      Exec(conn.get(), "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "begin").status());
  MANN_ASSIGN_OR_RETURN(PgResult snapshot,
                        Exec(conn.get(), "SELECT pg_export_snapshot()", "export snapshot"));
  const std::string snapshot_id = PQgetvalue(snapshot.get(), 0, 0);
  BackupResult result;
  result.dir = options.dir;
  MANN_ASSIGN_OR_RETURN(result.manifest.entry_count, EntryCount(conn.get()));
  MANN_ASSIGN_OR_RETURN(result.manifest.schema_version, SchemaVersion(conn.get()));

  // Step 2: dump into a temporary name.
  const std::string name = stem + ".pgdump";
  const std::string partial = (fs::path(options.dir) / (name + ".partial")).string();
  const auto started = std::chrono::steady_clock::now();
  Status dumped = RunTool({pg_dump, "--format=custom", "--no-password", "--snapshot=" + snapshot_id,
                           "--file=" + partial},
                          tool.env, options.tool_limits);
  Exec(conn.get(), "COMMIT", "end snapshot").status().IgnoreError();  // read-only: nothing lost
  if (!dumped.ok()) {
    std::error_code ec;
    fs::remove(partial, ec);
    return dumped;
  }

  // Step 3: publish, as for SQLite.
  Status published = FsyncFile(partial);
  Result<BackupFile> file =
      published.ok() ? DescribeFile(options.dir, name + ".partial") : Result<BackupFile>(published);
  result.data_path = (fs::path(options.dir) / name).string();
  if (file.ok()) published = RenameDurably(partial, result.data_path, options.dir);
  if (!file.ok() || !published.ok()) {
    std::error_code ec;
    fs::remove(partial, ec);
    return file.ok() ? published : file.status();
  }
  file->name = name;
  result.manifest.files.push_back(std::move(*file));
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return result;
}

Result<RestoreResult> RestorePostgres(const RestoreOptions& options, const BackupManifest& manifest,
                                      const std::string& dump_path) {
  if (options.postgres_url.empty()) {
    return InvalidArgumentError(
        "storage.postgres_url is empty; set it to the (empty) database to restore into");
  }
  MANN_ASSIGN_OR_RETURN(std::string pg_restore, FindTool("pg_restore"));
  MANN_ASSIGN_OR_RETURN(
      ToolConnection tool,
      ConnectionEnvironment(options.postgres_url, options.postgres_connect_timeout_s));
  RestoreResult result;
  result.manifest = manifest;
  result.target = RedactPostgresUrl(options.postgres_url);

  // Step 1: only into an empty database. Replacing a shared database under running replicas
  // is the administrator's decision (drop and create it), not a flag's.
  {
    MANN_ASSIGN_OR_RETURN(Conn conn,
                          Connect(options.postgres_url, options.postgres_connect_timeout_s));
    MANN_ASSIGN_OR_RETURN(std::int64_t relations,
                          QueryInt(conn.get(), std::string(kUserRelations), "list tables"));
    if (relations > 0) {
      return FailedPreconditionError(fmt::format(
          "PostgreSQL database {} is not empty ({} tables, views or sequences); restore into a "
          "new, empty database (createdb) and point storage.postgres_url at it",
          result.target, relations));
    }
  }

  // Step 2: all or nothing.
  MANN_RETURN_IF_ERROR(
      RunTool({pg_restore, "--no-password", "--exit-on-error", "--single-transaction", "--no-owner",
               "--dbname=" + tool.dbname, dump_path},
              tool.env, options.tool_limits));

  // Step 3: the restored database holds what the manifest promised.
  MANN_ASSIGN_OR_RETURN(Conn conn,
                        Connect(options.postgres_url, options.postgres_connect_timeout_s));
  MANN_ASSIGN_OR_RETURN(std::int64_t entries, EntryCount(conn.get()));
  if (entries != manifest.entry_count) {
    return DataLossError(fmt::format("restored {} memories into {}, but the manifest lists {}",
                                     entries, result.target, manifest.entry_count));
  }
  return result;
}

}  // namespace mann::store::internal
