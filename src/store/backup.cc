#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include <boost/json.hpp>
#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <unistd.h>

#include <mann/core/entry_json.h>
#include <mann/core/log.h>
#include <mann/core/version.h>
#include <mann/store/backup.h>

#include "backup_internal.h"
#include "database_lock.h"
#include "sqlite_db.h"
#include "sqlite_schema.h"

namespace mann::store {

namespace fs = std::filesystem;
namespace json = boost::json;
using internal::Connection;
using internal::DatabaseLock;
using internal::Statement;

namespace {

constexpr std::string_view kStemPrefix = "mann-";
// "mann-" + "20261203T212800.123Z"
constexpr std::size_t kStemSize = kStemPrefix.size() + 20;
constexpr std::string_view kSuffixes[] = {".db", ".pgdump", ".manifest.json"};
constexpr std::string_view kPartial = ".partial";
constexpr std::string_view kManifestSuffix = ".manifest.json";

// How long a backup waits for a restore that holds the database, and SQLite for its locks.
constexpr std::chrono::milliseconds kLockWait{5000};
constexpr int kBusyTimeoutMs = 5000;

std::string ErrnoText() { return std::strerror(errno); }

// Removes a file of ours when the scope ends, unless released: a failed step leaves no debris.
class RemoveOnFailure {
 public:
  explicit RemoveOnFailure(std::string path) : path_(std::move(path)) {}
  ~RemoveOnFailure() {
    if (path_.empty()) return;
    std::error_code ec;
    fs::remove(path_, ec);
    fs::remove(path_ + "-journal", ec);
  }
  RemoveOnFailure(const RemoveOnFailure&) = delete;
  RemoveOnFailure& operator=(const RemoveOnFailure&) = delete;
  void Release() { path_.clear(); }

 private:
  std::string path_;
};

Status WriteWholeFile(const std::string& path, std::string_view bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return UnavailableError(fmt::format("cannot create {}: {}", path, ErrnoText()));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string error = ErrnoText();
      ::close(fd);
      return UnavailableError(fmt::format("cannot write {}: {}", path, error));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const std::string error = ErrnoText();
    ::close(fd);
    return UnavailableError(fmt::format("cannot fsync {}: {}", path, error));
  }
  if (::close(fd) != 0) return UnavailableError(fmt::format("cannot close {}", path));
  return Status::Ok();
}

std::string DirectoryOf(const std::string& path) {
  const fs::path dir = fs::path(path).parent_path();
  return dir.empty() ? std::string(".") : dir.string();
}

// ---- SQLite ----

// integrity_check, schema version and entry count of a SQLite copy, opened read-only.
struct SqliteFacts {
  std::int64_t schema_version = 0;
  std::int64_t entry_count = 0;
};

Result<SqliteFacts> CheckSqliteCopy(const std::string& path) {
  MANN_ASSIGN_OR_RETURN(Connection conn,
                        Connection::Open(path, SQLITE_OPEN_READONLY, kBusyTimeoutMs));
  MANN_ASSIGN_OR_RETURN(std::int64_t app, conn.QueryInt("PRAGMA application_id", "read copy"));
  if (app != internal::kApplicationId) {
    return FailedPreconditionError(
        fmt::format("{} is not a mann database (application_id {:#x})", path, app));
  }
  MANN_ASSIGN_OR_RETURN(Statement check, Statement::Prepare(conn, "PRAGMA integrity_check"));
  MANN_ASSIGN_OR_RETURN(bool row, check.Step("integrity check"));
  const std::string first = row ? std::string(check.Text(0)) : std::string("no result");
  check.Reset();
  if (first != "ok") {
    return DataLossError(fmt::format("{} failed its integrity check: {}", path, first));
  }
  SqliteFacts facts;
  MANN_ASSIGN_OR_RETURN(facts.schema_version, conn.QueryInt("PRAGMA user_version", "read copy"));
  if (facts.schema_version > internal::LatestSchemaVersion()) {
    return FailedPreconditionError(fmt::format(
        "{} has schema version {}, newer than the version {} this mann supports; use a newer "
        "mann",
        path, facts.schema_version, internal::LatestSchemaVersion()));
  }
  MANN_ASSIGN_OR_RETURN(facts.entry_count,
                        conn.QueryInt("SELECT count(*) FROM entries", "count entries"));
  return facts;
}

// Copies the live database into `copy_path` with the online backup API. One step of -1 pages
// copies everything inside a single read transaction: a consistent snapshot that, in WAL mode,
// never blocks the writer. Step-wise copying would restart whenever the writer commits.
Status CopySqlite(const std::string& source_path, const std::string& copy_path) {
  MANN_ASSIGN_OR_RETURN(Connection source,
                        Connection::Open(source_path, SQLITE_OPEN_READONLY, kBusyTimeoutMs));
  MANN_ASSIGN_OR_RETURN(
      Connection copy,
      Connection::Open(copy_path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, kBusyTimeoutMs));
  sqlite3_backup* backup = sqlite3_backup_init(copy.get(), "main", source.get(), "main");
  if (backup == nullptr) return copy.Error(sqlite3_errcode(copy.get()), "start backup");

  // BUSY and LOCKED are transient (a checkpoint, a writer in rollback mode): retry, bounded.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  int rc = SQLITE_OK;
  for (;;) {
    rc = sqlite3_backup_step(backup, -1);
    if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) break;
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const int finish = sqlite3_backup_finish(backup);
  if (rc != SQLITE_DONE) return internal::SqliteError(rc, source_path, "backup");
  if (finish != SQLITE_OK) return copy.Error(finish, "finish backup");

  // The copy carries the source's WAL flag; a backup is one self-contained file.
  MANN_ASSIGN_OR_RETURN(Statement mode, Statement::Prepare(copy, "PRAGMA journal_mode = DELETE"));
  MANN_ASSIGN_OR_RETURN(bool row, mode.Step("set journal mode of the copy"));
  const std::string journal = row ? std::string(mode.Text(0)) : std::string();
  mode.Reset();
  if (journal != "delete") {
    return InternalError(
        fmt::format("could not take {} out of WAL mode (journal mode {})", copy_path, journal));
  }
  return Status::Ok();
}

Result<BackupResult> BackupSqlite(const BackupOptions& options, const std::string& stem) {
  std::error_code ec;
  if (!fs::exists(options.database_path, ec)) {
    return NotFoundError(fmt::format(
        "no database at {}; nothing to back up (check storage.data_dir)", options.database_path));
  }
  // Shared, like a store: a restore cannot replace the file while it is being read.
  MANN_ASSIGN_OR_RETURN(
      DatabaseLock lock,
      DatabaseLock::Acquire(options.database_path, DatabaseLock::Mode::kShared, kLockWait));

  BackupResult result;
  result.dir = options.dir;
  const std::string name = stem + ".db";
  const std::string partial = (fs::path(options.dir) / (name + std::string(kPartial))).string();
  RemoveOnFailure cleanup(partial);

  // Step 1: copy.
  const auto started = std::chrono::steady_clock::now();
  MANN_RETURN_IF_ERROR(CopySqlite(options.database_path, partial));

  // Step 2: check the copy, not the source: the copy is what a restore will read.
  Result<SqliteFacts> facts = CheckSqliteCopy(partial);
  if (!facts.ok()) return facts.status().WithContext("backup copy");
  result.manifest.schema_version = facts->schema_version;
  result.manifest.entry_count = facts->entry_count;

  // Step 3: publish.
  MANN_RETURN_IF_ERROR(internal::FsyncFile(partial));
  MANN_ASSIGN_OR_RETURN(BackupFile file, internal::DescribeFile(options.dir, name + ".partial"));
  file.name = name;
  result.data_path = (fs::path(options.dir) / name).string();
  MANN_RETURN_IF_ERROR(internal::RenameDurably(partial, result.data_path, options.dir));
  cleanup.Release();
  result.manifest.files.push_back(std::move(file));
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return result;
}

// A stem no file of the directory uses yet: two backups in one millisecond get the next one.
std::string FreshStem(const std::string& dir, TimestampMs ms) {
  for (int attempt = 0; attempt < 1000; ++attempt, ++ms) {
    const std::string stem = BackupStem(ms);
    bool taken = false;
    for (std::string_view suffix : kSuffixes) {
      std::error_code ec;
      const fs::path base = fs::path(dir) / (stem + std::string(suffix));
      if (fs::exists(base, ec) || fs::exists(base.string() + std::string(kPartial), ec)) {
        taken = true;
      }
    }
    if (!taken) return stem;
  }
  return BackupStem(ms);  // a thousand backups in a second: let the exclusive create fail
}

// ---- Restore (SQLite) ----

// True when the file at `path` holds data worth keeping: any memory, history row or chat
// session. An unreadable or foreign file counts as holding data: it is not ours to judge.
bool HoldsData(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return false;
  if (fs::file_size(path, ec) == 0 && !ec && !fs::exists(path + "-wal", ec)) return false;
  Result<Connection> conn = Connection::Open(path, SQLITE_OPEN_READONLY, kBusyTimeoutMs);
  if (!conn.ok()) return true;
  Result<std::int64_t> rows = conn->QueryInt(
      "SELECT (SELECT count(*) FROM entries) + (SELECT count(*) FROM history) + "
      "(SELECT count(*) FROM sessions)",
      "count rows");
  return !rows.ok() || *rows > 0;
}

// Moves <db>, <db>-wal and <db>-shm to <db>.replaced-<stamp>[...] so that the old database
// stays openable as it was.
Result<std::vector<std::string>> MoveAside(const std::string& db, TimestampMs now_ms) {
  const std::string aside = fmt::format("{}.replaced-{}", db, BackupStem(now_ms).substr(5));
  std::vector<std::string> moved;
  for (std::string_view companion : {"", "-wal", "-shm", "-journal"}) {
    const std::string from = db + std::string(companion);
    std::error_code ec;
    if (!fs::exists(from, ec)) continue;
    const std::string to = aside + std::string(companion);
    if (fs::exists(to, ec)) {
      return AlreadyExistsError(fmt::format("{} exists already; move it away and retry", to));
    }
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return UnavailableError(fmt::format("cannot move {} to {}: {}", from, to, ErrnoText()));
    }
    moved.push_back(to);
  }
  MANN_RETURN_IF_ERROR(internal::FsyncDirectory(DirectoryOf(db)));
  return moved;
}

Result<RestoreResult> RestoreSqlite(const RestoreOptions& options, const BackupManifest& manifest,
                                    const std::string& copy_path, TimestampMs now_ms) {
  RestoreResult result;
  result.manifest = manifest;
  result.target = options.database_path;
  const std::string& db = options.database_path;

  // Step 1: the copy itself must be sound, whatever its checksum says.
  Result<SqliteFacts> facts = CheckSqliteCopy(copy_path);
  if (!facts.ok()) return facts.status().WithContext("backup " + copy_path);

  // Step 2: nobody may use the target while it is replaced, and no store may open it meanwhile.
  MANN_RETURN_IF_ERROR(internal::EnsurePrivateDir(DirectoryOf(db)));
  MANN_ASSIGN_OR_RETURN(DatabaseLock lock,
                        DatabaseLock::Acquire(db, DatabaseLock::Mode::kExclusive));
  if (HoldsData(db) && !options.replace) {
    return FailedPreconditionError(fmt::format(
        "{} already holds a database with data; restore into an empty data directory, or pass "
        "--force to replace it (the current files are kept as {}.replaced-<time>)",
        db, db));
  }

  // Step 3: copy beside the target, check the bytes arrived intact, then swap.
  const std::string dir = DirectoryOf(db);
  const std::string restoring = db + ".restoring";
  RemoveOnFailure cleanup(restoring);
  std::error_code ec;
  fs::remove(restoring, ec);  // debris of an interrupted restore; the name is ours
  fs::copy_file(copy_path, restoring, ec);
  if (ec) {
    return UnavailableError(
        fmt::format("cannot copy {} to {}: {}", copy_path, restoring, ec.message()));
  }
  MANN_RETURN_IF_ERROR(internal::FsyncFile(restoring));
  MANN_ASSIGN_OR_RETURN(std::string sha, Sha256OfFile(restoring));
  if (sha != manifest.files.front().sha256) {
    return DataLossError(fmt::format("checksum mismatch for {} after copying it to {}",
                                     manifest.files.front().name, restoring));
  }
  MANN_ASSIGN_OR_RETURN(result.moved_aside, MoveAside(db, now_ms));
  MANN_RETURN_IF_ERROR(internal::RenameDurably(restoring, db, dir));
  cleanup.Release();
  return result;
}

// The manifest path for a manifest, or for the data file beside it.
std::string ManifestPathFor(const std::string& backup) {
  if (backup.ends_with(kManifestSuffix)) return backup;
  for (std::string_view suffix : {".db", ".pgdump"}) {
    if (backup.ends_with(suffix)) {
      return backup.substr(0, backup.size() - suffix.size()) + std::string(kManifestSuffix);
    }
  }
  return backup;
}

}  // namespace

// ---- Shared file steps ----

namespace internal {

Status FsyncFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return UnavailableError(fmt::format("cannot open {}: {}", path, ErrnoText()));
  const int rc = ::fsync(fd);
  const std::string error = rc != 0 ? ErrnoText() : std::string();
  ::close(fd);
  if (rc != 0) return UnavailableError(fmt::format("cannot fsync {}: {}", path, error));
  return Status::Ok();
}

Status FsyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return UnavailableError(fmt::format("cannot open {}: {}", dir, ErrnoText()));
  const int rc = ::fsync(fd);
  const std::string error = rc != 0 ? ErrnoText() : std::string();
  ::close(fd);
  if (rc != 0) return UnavailableError(fmt::format("cannot fsync {}: {}", dir, error));
  return Status::Ok();
}

Status RenameDurably(const std::string& from, const std::string& to, const std::string& dir) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return UnavailableError(fmt::format("cannot rename {} to {}: {}", from, to, ErrnoText()));
  }
  return FsyncDirectory(dir);
}

Result<BackupFile> DescribeFile(const std::string& dir, const std::string& name) {
  const std::string path = (fs::path(dir) / name).string();
  BackupFile file;
  file.name = name;
  std::error_code ec;
  file.size = fs::file_size(path, ec);
  if (ec) return NotFoundError(fmt::format("cannot read {}: {}", path, ec.message()));
  MANN_ASSIGN_OR_RETURN(file.sha256, Sha256OfFile(path));
  return file;
}

Status EnsurePrivateDir(const std::string& dir) {
  if (dir.empty()) return InvalidArgumentError("the directory name is empty");
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return Status::Ok();
  fs::create_directories(dir, ec);
  if (ec) {
    return FailedPreconditionError(
        fmt::format("cannot create backup directory {}: {}", dir, ec.message()));
  }
  fs::permissions(dir, fs::perms::owner_all, ec);
  return Status::Ok();
}

}  // namespace internal

// ---- Manifest ----

json::object ManifestToJson(const BackupManifest& m) {
  json::array files;
  for (const BackupFile& f : m.files) {
    files.push_back(json::object{{"name", f.name}, {"size", f.size}, {"sha256", f.sha256}});
  }
  return json::object{{"format", m.format},
                      {"backend", m.backend},
                      {"created", FormatTimestamp(m.created_ms)},
                      {"created_ms", m.created_ms},
                      {"mann_version", m.mann_version},
                      {"schema_version", m.schema_version},
                      {"entry_count", m.entry_count},
                      {"files", std::move(files)}};
}

Result<BackupManifest> ParseManifest(std::string_view text, std::string_view where) {
  auto bad = [&](std::string_view why) {
    return DataLossError(fmt::format("{} is not a valid mann backup manifest: {}", where, why));
  };
  boost::system::error_code ec;
  json::value doc = json::parse(text, ec);
  if (ec || !doc.is_object()) return bad("not a JSON object");
  const json::object& o = doc.as_object();
  auto integer = [&](std::string_view key) -> std::optional<std::int64_t> {
    const json::value* v = o.if_contains(key);
    if (v == nullptr) return std::nullopt;
    if (v->is_int64()) return v->as_int64();
    if (v->is_uint64() && v->as_uint64() <= INT64_MAX)
      return static_cast<std::int64_t>(v->as_uint64());
    return std::nullopt;
  };
  auto text_of = [&](std::string_view key) -> std::optional<std::string> {
    const json::value* v = o.if_contains(key);
    if (v == nullptr || !v->is_string()) return std::nullopt;
    return std::string(v->as_string());
  };

  BackupManifest m;
  const auto format = integer("format");
  if (!format) return bad("\"format\" is missing");
  if (*format != BackupManifest::kFormat) {
    return FailedPreconditionError(fmt::format(
        "{} has manifest format {}; this mann reads format {}: use the mann that made it", where,
        *format, BackupManifest::kFormat));
  }
  const auto backend = text_of("backend");
  if (!backend || (*backend != "sqlite" && *backend != "postgres")) {
    return bad("\"backend\" must be \"sqlite\" or \"postgres\"");
  }
  m.backend = *backend;
  const auto created = integer("created_ms");
  const auto schema = integer("schema_version");
  const auto entries = integer("entry_count");
  if (!created || !schema || !entries) {
    return bad("\"created_ms\", \"schema_version\" and \"entry_count\" must be integers");
  }
  m.created_ms = *created;
  m.schema_version = *schema;
  m.entry_count = *entries;
  m.mann_version = text_of("mann_version").value_or("");

  const json::value* files = o.if_contains("files");
  if (files == nullptr || !files->is_array() || files->as_array().empty()) {
    return bad("\"files\" must be a non-empty array");
  }
  for (const json::value& item : files->as_array()) {
    const json::object* f = item.if_object();
    const json::value* name = f ? f->if_contains("name") : nullptr;
    const json::value* size = f ? f->if_contains("size") : nullptr;
    const json::value* sha = f ? f->if_contains("sha256") : nullptr;
    if (name == nullptr || !name->is_string() || size == nullptr || !size->is_number() ||
        sha == nullptr || !sha->is_string()) {
      return bad("each file needs \"name\", \"size\" and \"sha256\"");
    }
    BackupFile file;
    file.name = std::string(name->as_string());
    // A name is a plain file name: a manifest must not point a restore anywhere else.
    if (file.name.empty() || file.name.find('/') != std::string::npos || file.name == "." ||
        file.name == "..") {
      return bad(fmt::format("file name \"{}\" is not a plain file name", file.name));
    }
    boost::system::error_code size_ec;
    file.size = size->to_number<std::uint64_t>(size_ec);
    if (size_ec) return bad("a file size is not a non-negative integer");
    file.sha256 = std::string(sha->as_string());
    m.files.push_back(std::move(file));
  }
  return m;
}

Status WriteManifest(const std::string& dir, const std::string& name,
                     const BackupManifest& manifest) {
  const std::string path = (fs::path(dir) / name).string();
  const std::string partial = path + std::string(kPartial);
  RemoveOnFailure cleanup(partial);
  MANN_RETURN_IF_ERROR(WriteWholeFile(partial, json::serialize(ManifestToJson(manifest)) + "\n"));
  MANN_RETURN_IF_ERROR(internal::RenameDurably(partial, path, dir));
  cleanup.Release();
  return Status::Ok();
}

Result<BackupManifest> ReadManifest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!fs::exists(path, ec)) {
      return NotFoundError(fmt::format("backup manifest {} does not exist", path));
    }
    return UnavailableError(fmt::format("cannot read backup manifest {}", path));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return ParseManifest(text.str(), path);
}

Result<std::string> Sha256OfFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return NotFoundError(fmt::format("{} does not exist", path));
    return UnavailableError(fmt::format("cannot read {}: {}", path, ErrnoText()));
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    ::close(fd);
    return InternalError("SHA-256 is unavailable in OpenSSL");
  }
  std::array<char, 1 << 16> buffer;
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string error = ErrnoText();
      ::close(fd);
      return UnavailableError(fmt::format("cannot read {}: {}", path, error));
    }
    if (n == 0) break;
    EVP_DigestUpdate(ctx.get(), buffer.data(), static_cast<std::size_t>(n));
  }
  ::close(fd);
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx.get(), digest.data(), &length);
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

Status VerifyBackupFiles(const BackupManifest& manifest, const std::string& dir) {
  for (const BackupFile& file : manifest.files) {
    const std::string path = (fs::path(dir) / file.name).string();
    std::error_code ec;
    const std::uint64_t size = fs::file_size(path, ec);
    if (ec) {
      return NotFoundError(fmt::format("backup file {} is missing ({}); the backup is incomplete",
                                       path, ec.message()));
    }
    MANN_ASSIGN_OR_RETURN(std::string sha, Sha256OfFile(path));
    if (sha != file.sha256) {
      return DataLossError(fmt::format(
          "checksum mismatch for {}: the manifest says SHA-256 {}, the file has {} ({} bytes, "
          "{} expected); the backup is damaged, use another one",
          path, file.sha256, sha, size, file.size));
    }
    if (size != file.size) {
      return DataLossError(fmt::format("size mismatch for {}: {} bytes, the manifest says {}", path,
                                       size, file.size));
    }
  }
  return Status::Ok();
}

// ---- Names and retention ----

std::string BackupStem(TimestampMs ms) {
  const std::string iso = FormatTimestamp(ms);  // 2026-12-03T21:28:00.123Z
  std::string compact;
  for (char c : iso) {
    if (c != '-' && c != ':') compact += c;
  }
  return std::string(kStemPrefix) + compact;
}

std::optional<TimestampMs> StampOfBackupName(std::string_view name) {
  if (name.size() < kStemSize || !name.starts_with(kStemPrefix)) return std::nullopt;
  std::string_view rest = name.substr(kStemSize);
  if (rest.ends_with(kPartial)) rest.remove_suffix(kPartial.size());
  if (std::find(std::begin(kSuffixes), std::end(kSuffixes), rest) == std::end(kSuffixes)) {
    return std::nullopt;
  }
  // 20261203T212800.123Z: digits where digits belong, exactly.
  const std::string_view stamp = name.substr(kStemPrefix.size(), 20);
  for (std::size_t i = 0; i < stamp.size(); ++i) {
    const char c = stamp[i];
    const bool ok = i == 8    ? c == 'T'
                    : i == 15 ? c == '.'
                    : i == 19 ? c == 'Z'
                              : std::isdigit(static_cast<unsigned char>(c)) != 0;
    if (!ok) return std::nullopt;
  }
  auto num = [&](std::size_t at, std::size_t len) {
    int v = 0;
    for (std::size_t i = at; i < at + len; ++i) v = v * 10 + (stamp[i] - '0');
    return v;
  };
  std::tm tm{};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(4, 2) - 1;
  tm.tm_mday = num(6, 2);
  tm.tm_hour = num(9, 2);
  tm.tm_min = num(11, 2);
  tm.tm_sec = num(13, 2);
  if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
      tm.tm_sec > 60) {
    return std::nullopt;
  }
  const std::time_t seconds = ::timegm(&tm);
  return static_cast<TimestampMs>(seconds) * 1000 + num(16, 3);
}

Result<PruneResult> PruneBackups(const std::string& dir, int retention_days, TimestampMs now_ms,
                                 std::string_view keep_stem) {
  PruneResult result;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return UnavailableError(fmt::format("cannot list {}: {}", dir, ec.message()));
  const TimestampMs cutoff = now_ms - static_cast<TimestampMs>(retention_days) * 86'400'000;
  Status first_error;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const std::string name = it->path().filename().string();
    const std::optional<TimestampMs> stamp = StampOfBackupName(name);
    if (!stamp || !it->is_regular_file(ec)) continue;  // not ours: never touched
    const bool current = !keep_stem.empty() && name.starts_with(keep_stem);
    if (retention_days == 0 || current || *stamp >= cutoff) {
      result.kept.push_back(name);
      continue;
    }
    std::error_code remove_ec;
    fs::remove(it->path(), remove_ec);
    if (remove_ec) {
      if (first_error.ok()) {
        first_error = UnavailableError(fmt::format("cannot remove old backup {}: {}",
                                                   it->path().string(), remove_ec.message()));
      }
      continue;
    }
    result.removed.push_back(name);
  }
  if (ec) return UnavailableError(fmt::format("cannot list {}: {}", dir, ec.message()));
  if (!first_error.ok()) return first_error;
  std::sort(result.removed.begin(), result.removed.end());
  std::sort(result.kept.begin(), result.kept.end());
  if (!result.removed.empty()) MANN_RETURN_IF_ERROR(internal::FsyncDirectory(dir));
  return result;
}

// ---- Backup and restore ----

Result<BackupResult> MakeBackup(const BackupOptions& options) {
  const Clock& clock = options.clock != nullptr ? *options.clock : SystemClock::Instance();
  if (options.backend != "sqlite" && options.backend != "postgres") {
    return InvalidArgumentError(fmt::format(
        "storage.backend \"{}\" cannot be backed up: sqlite or postgres", options.backend));
  }
  MANN_RETURN_IF_ERROR(internal::EnsurePrivateDir(options.dir));
  const TimestampMs created_ms = clock.NowMs();
  const std::string stem = FreshStem(options.dir, created_ms);

  Result<BackupResult> made = options.backend == "sqlite" ? BackupSqlite(options, stem)
                                                          : internal::DumpPostgres(options, stem);
  if (!made.ok()) return made.status();
  BackupResult& result = *made;
  result.manifest.backend = options.backend;
  result.manifest.created_ms = *StampOfBackupName(stem + ".db");
  result.manifest.mann_version = kVersion;

  const std::string manifest_name = stem + std::string(kManifestSuffix);
  MANN_RETURN_IF_ERROR(WriteManifest(options.dir, manifest_name, result.manifest));
  result.manifest_path = (fs::path(options.dir) / manifest_name).string();
  log::Get("backup")->info("backup made file={} entries={} bytes={} seconds={:.3f}",
                           result.data_path, result.manifest.entry_count,
                           result.manifest.files.front().size, result.seconds);
  return made;
}

Result<RestoreResult> RestoreBackup(const RestoreOptions& options) {
  const Clock& clock = options.clock != nullptr ? *options.clock : SystemClock::Instance();
  const std::string manifest_path = ManifestPathFor(options.backup);
  MANN_ASSIGN_OR_RETURN(BackupManifest manifest, ReadManifest(manifest_path));
  const std::string dir = DirectoryOf(manifest_path);
  MANN_RETURN_IF_ERROR(VerifyBackupFiles(manifest, dir));
  const std::string data_path = (fs::path(dir) / manifest.files.front().name).string();

  Result<RestoreResult> restored = manifest.backend == "sqlite"
                                       ? RestoreSqlite(options, manifest, data_path, clock.NowMs())
                                       : internal::RestorePostgres(options, manifest, data_path);
  if (restored.ok()) {
    log::Get("backup")->info("backup restored from={} into={} entries={}", manifest_path,
                             restored->target, manifest.entry_count);
  }
  return restored;
}

Result<bool> DatabaseInUse(const std::string& database_path) {
  return DatabaseLock::IsHeld(database_path);
}

}  // namespace mann::store
