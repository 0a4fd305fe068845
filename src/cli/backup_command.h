// `mann backup` and `mann restore`: the command-line faces of store::MakeBackup,
// store::PruneBackups and store::RestoreBackup (include/mann/store/backup.h has the lifecycle).
//
// Neither opens the memory bank or an encoder: a backup reads the database beside a running
// `mann serve`, and a restore must find the database unused.
//
//   mann backup [--dir DIR] [--retention-days N] [--json]
//       one backup of storage.backend into backup.dir; then backup.upload_command, when set,
//       runs with the backup's path and its manifest's path as two more arguments; then backups
//       older than backup.retention_days are pruned (not when the upload failed: the local
//       copies may be the only ones)
//   mann restore BACKUP [--force] [--json]
//       BACKUP is a manifest or the data file beside it; restores into storage.data_dir
//       (--data-dir), or the empty PostgreSQL database of storage.postgres_url
//
// Exit codes: 0 done; 1 the backup, the upload or the restore failed (one `error:` line says
// why; a failed upload leaves the backup in place); 2 bad flags or configuration.
#pragma once

#include <optional>
#include <string>

#include <mann/config/config.h>

#include "context.h"

namespace mann::cli {

struct BackupArgs {
  std::optional<std::string> dir;     // --dir: overrides backup.dir
  std::optional<int> retention_days;  // --retention-days: overrides the key
  bool json = false;
};
int RunBackup(const config::LoadedConfig& loaded, const BackupArgs& args, Io& io);

struct RestoreArgs {
  std::string backup;  // a manifest, or the data file beside it
  bool force = false;  // replace a database that holds data (it is moved aside, not deleted)
  bool json = false;
};
int RunRestore(const config::LoadedConfig& loaded, const RestoreArgs& args, Io& io);

}  // namespace mann::cli
