// Backups of a mann database and their restore: what `mann backup` and `mann restore` run.
//
// A backup is a *set* of files in one backup directory sharing a time stamp:
//
//   mann-20261203T212800.123Z.db              the SQLite copy (or .pgdump: a pg_dump archive)
//   mann-20261203T212800.123Z.manifest.json   what the set holds, with sizes and SHA-256
//
// Lifecycle of one backup (each step's failure leaves no file of a final name behind):
//
//   copying    data -> <name>.partial: the SQLite online backup API in one step (a single read
//              transaction, so the copy is one consistent snapshot while writers go on in WAL
//              mode), or `pg_dump --format=custom` in the snapshot the entry count was read in
//   checking   PRAGMA integrity_check on the copy (SQLite); size and SHA-256 of the copy
//   published  fsync the copy, rename it to its final name, fsync the directory
//   described  the manifest, written the same way (temporary name, fsync, rename): a manifest
//              is present only for a complete, checked backup
//   pruned     sets older than the retention are removed; only names of the exact form above
//              are ever touched, and never the set just made
//
// Restore reads a manifest, verifies every file it lists (a mismatch names the file), checks the
// copy's integrity, and replaces the target database only when no mann process holds it and it
// is empty, or when the caller says to replace it; a replaced file is moved aside, never deleted.
//
// Thread-safety: the functions are independent of each other; two backups into one directory
// at once are safe (their names differ) but pointless.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

#include <mann/core/clock.h>
#include <mann/core/status.h>

namespace mann::store {

// ---- Manifest --------------------------------------------------------------------------------

struct BackupFile {
  std::string name;  // a plain file name inside the backup directory, never a path
  std::uint64_t size = 0;
  std::string sha256;  // lower-case hex
};

struct BackupManifest {
  static constexpr int kFormat = 1;  // of the manifest itself; a newer one is refused

  int format = kFormat;
  std::string backend;  // "sqlite" or "postgres"
  TimestampMs created_ms = 0;
  std::string mann_version;  // of the mann that made it
  std::int64_t schema_version = 0;
  std::int64_t entry_count = 0;   // live memories in the snapshot, every namespace
  std::vector<BackupFile> files;  // the data file first
};

boost::json::object ManifestToJson(const BackupManifest& manifest);
// DataLoss naming `where` (the manifest's path) when `text` is not a manifest of a known format.
Result<BackupManifest> ParseManifest(std::string_view text, std::string_view where);

// Writes `manifest` as <dir>/<name> durably: a temporary file, fsync, rename, fsync of `dir`.
Status WriteManifest(const std::string& dir, const std::string& name,
                     const BackupManifest& manifest);
Result<BackupManifest> ReadManifest(const std::string& path);

// Lower-case hex SHA-256 of a file's bytes; NotFound or Unavailable naming the file.
Result<std::string> Sha256OfFile(const std::string& path);

// Checks that every file of `manifest` exists in `dir` with its size and checksum. DataLoss
// naming the first file that differs ("checksum mismatch"), NotFound for a missing one.
Status VerifyBackupFiles(const BackupManifest& manifest, const std::string& dir);

// ---- Names and retention ---------------------------------------------------------------------

// "mann-20261203T212800.123Z": fixed width, so names sort by time.
std::string BackupStem(TimestampMs ms);
// The time of a name of ours (a stem followed by ".db", ".pgdump", ".manifest.json" or one of
// them plus ".partial"), or nullopt for any other name.
std::optional<TimestampMs> StampOfBackupName(std::string_view name);

struct PruneResult {
  std::vector<std::string> removed;  // file names, sorted
  std::vector<std::string> kept;     // names of ours that are still within the retention
};

// Removes from `dir` the files of ours whose stamp is older than now - retention_days, except
// those of `keep_stem`. retention_days 0 removes nothing. Files not named like ours are never
// touched. Removal failures are reported after every other file was tried.
Result<PruneResult> PruneBackups(const std::string& dir, int retention_days, TimestampMs now_ms,
                                 std::string_view keep_stem);

// ---- Making a backup -------------------------------------------------------------------------

// How long a helper program (pg_dump, pg_restore, an upload command) may run, and how
// it is stopped when it runs over.
struct ProcessLimits {
  std::chrono::milliseconds time_limit{0};  // zero: no limit
  std::chrono::milliseconds grace{10'000};  // from SIGTERM to SIGKILL
  std::string limit_key = {};               // the setting named in the error, if any
};

struct BackupOptions {
  std::string backend = "sqlite";       // "sqlite" or "postgres"
  std::string database_path = {};       // sqlite: the live database file
  std::string postgres_url = {};        // postgres: the database to dump (a libpq URL)
  int postgres_connect_timeout_s = 10;  // unless the URL sets connect_timeout
  ProcessLimits tool_limits = {};       // for pg_dump
  std::string dir = {};                 // backup directory; created (0700) when missing
  const Clock* clock = nullptr;         // for the stamp; null: the system clock
};

struct BackupResult {
  std::string dir;
  std::string data_path;      // the published copy
  std::string manifest_path;  // its manifest
  BackupManifest manifest;
  double seconds = 0;  // copying and checking
};

// Makes one backup (see the lifecycle above). NotFound when the database does not exist;
// FailedPrecondition when it is not a mann database or the tools (pg_dump) are missing.
Result<BackupResult> MakeBackup(const BackupOptions& options);

// ---- Restoring -------------------------------------------------------------------------------

struct RestoreOptions {
  std::string backup = {};              // the manifest, or the data file beside it
  std::string database_path = {};       // sqlite: the file restored into; its directory is made
  std::string postgres_url = {};        // postgres: the database restored into; must be empty
  int postgres_connect_timeout_s = 10;  // unless the URL sets connect_timeout
  ProcessLimits tool_limits = {};       // for pg_restore
  // Replace a target that holds data; the old files are moved aside to <db>.replaced-<stamp>.
  bool replace = false;
  const Clock* clock = nullptr;
};

struct RestoreResult {
  BackupManifest manifest;
  std::string target;                    // the database file, or the URL without its password
  std::vector<std::string> moved_aside;  // paths the replaced files now have
};

// Verifies `options.backup` and restores it (see the header comment). FailedPrecondition when
// the target is in use or holds data (and `replace` is false); DataLoss for a damaged backup.
Result<RestoreResult> RestoreBackup(const RestoreOptions& options);

// ---- Running helpers -------------------------------------------------------------------------

// Splits a command line into words the way a shell would for plain words, '...' and "..."
// quotes and backslash escapes, without expanding anything: `upload --to "a b"` ->
// {"upload", "--to", "a b"}. InvalidArgument for an unterminated quote or an empty command.
Result<std::vector<std::string>> SplitCommandLine(std::string_view text);

struct ProcessOutcome {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string stderr_tail;  // the last few KiB of its standard error, when captured
};

// Runs `argv` (argv[0] looked up in PATH) without a shell, its standard output sent to our
// standard error, and waits for it. `capture_stderr` keeps its standard error for messages
// instead of passing it through. `env` entries "NAME=value" are added to our environment.
// FailedPrecondition naming the program when it cannot be started.
//
// With a time limit the program runs in a process group of its own; past the limit the group
// gets SIGTERM, and SIGKILL after `grace` if it still runs. The program is always reaped, and
// then Unavailable names it, the limit and how it was stopped. (In its own group the program
// does not see the terminal's Ctrl-C; `mann backup` is meant for timers, not for terminals.)
Result<ProcessOutcome> RunProcess(const std::vector<std::string>& argv,
                                  const std::vector<std::string>& env = {},
                                  bool capture_stderr = false, const ProcessLimits& limits = {});

// True when some process holds the database at `database_path` open through a SqliteStore (or
// a backup is reading it): its lock file beside it is held.
Result<bool> DatabaseInUse(const std::string& database_path);

}  // namespace mann::store
