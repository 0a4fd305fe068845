// What the backup sources share, private to the store module: durable file steps and the
// PostgreSQL half of MakeBackup and RestoreBackup (backup_postgres.cc).
#pragma once

#include <string>

#include <mann/core/status.h>
#include <mann/store/backup.h>

namespace mann::store::internal {

// fsync(2) of a file's data and of a directory's entries; Unavailable naming the path.
Status FsyncFile(const std::string& path);
Status FsyncDirectory(const std::string& dir);

// rename(2) then fsync of the directory holding both names, so the new name survives a crash.
Status RenameDurably(const std::string& from, const std::string& to, const std::string& dir);

// The size and SHA-256 of `dir`/`name`, as a manifest lists it.
Result<BackupFile> DescribeFile(const std::string& dir, const std::string& name);

// Creates `dir` (and missing parents) with mode 0700; FailedPrecondition naming it.
Status EnsurePrivateDir(const std::string& dir);

// pg_dump of options.postgres_url into <dir>/<stem>.pgdump, published and described; the
// manifest is left to the caller.
Result<BackupResult> DumpPostgres(const BackupOptions& options, const std::string& stem);

// Restores a verified .pgdump into options.postgres_url, which must hold no tables.
Result<RestoreResult> RestorePostgres(const RestoreOptions& options, const BackupManifest& manifest,
                                      const std::string& dump_path);

// A libpq URL or keyword string with its password replaced by "***", for messages.
std::string RedactPostgresUrl(const std::string& url);

}  // namespace mann::store::internal
