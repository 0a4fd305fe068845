#include "backup_command.h"

#include <ostream>
#include <vector>

#include <boost/json.hpp>
#include <fmt/format.h>

#include <mann/core/clock.h>
#include <mann/runtime/runtime.h>
#include <mann/store/backup.h>

namespace mann::cli {
namespace {

namespace json = boost::json;

json::array Strings(const std::vector<std::string>& items) {
  json::array out;
  for (const std::string& s : items) out.push_back(json::value(s));
  return out;
}

struct UploadOutcome {
  bool ran = false;
  std::string program;
  int exit_code = 0;
  int signal = 0;
  bool ok() const { return !ran || (exit_code == 0 && signal == 0); }
};

// The bound on pg_dump, pg_restore and the upload command.
store::ProcessLimits ToolLimits(const config::BackupConfig& backup) {
  store::ProcessLimits limits;
  limits.time_limit = backup.command_timeout;
  limits.limit_key = "backup.command_timeout";
  return limits;
}

// Runs backup.upload_command with the two paths appended, never through a shell.
Result<UploadOutcome> Upload(const std::string& command, const store::BackupResult& made,
                             const store::ProcessLimits& limits) {
  UploadOutcome outcome;
  if (command.empty()) return outcome;
  Result<std::vector<std::string>> words = store::SplitCommandLine(command);
  if (!words.ok())
    return InvalidArgumentError("backup.upload_command: " + words.status().message());
  std::vector<std::string> argv = std::move(*words);
  outcome.program = argv.front();
  argv.push_back(made.data_path);
  argv.push_back(made.manifest_path);
  MANN_ASSIGN_OR_RETURN(store::ProcessOutcome ran,
                        store::RunProcess(argv, {}, /*capture_stderr=*/false, limits));
  outcome.ran = true;
  outcome.exit_code = ran.exit_code;
  outcome.signal = ran.signal;
  return outcome;
}

void PrintBackup(std::ostream& out, const store::BackupResult& made) {
  const store::BackupFile& file = made.manifest.files.front();
  out << fmt::format("backup {} ({} memories, {} bytes, schema {}, {:.2f} s)\n", made.data_path,
                     made.manifest.entry_count, file.size, made.manifest.schema_version,
                     made.seconds);
  out << fmt::format("manifest {} (sha256 {})\n", made.manifest_path, file.sha256);
}

}  // namespace

int RunBackup(const config::LoadedConfig& loaded, const BackupArgs& args, Io& io) {
  const config::Config& config = loaded.config;
  if (Status st = runtime::ConfigureLogging(config.log); !st.ok()) return ReportError(io.err, st);
  if (args.retention_days && (*args.retention_days < 0 || *args.retention_days > 36'500)) {
    return ReportError(io.err, InvalidArgumentError(fmt::format(
                                   "--retention-days must be an integer in 0..36500, got {}",
                                   *args.retention_days)));
  }

  // Step 1: the backup.
  store::BackupOptions options;
  options.backend = config.storage.backend;
  options.database_path = runtime::DatabasePath(config.storage.data_dir);
  options.postgres_url = config.storage.postgres_url;
  options.postgres_connect_timeout_s =
      static_cast<int>(config.storage.postgres_connect_timeout.count());
  options.tool_limits = ToolLimits(config.backup);
  options.dir = args.dir.value_or(config.backup.dir);
  Result<store::BackupResult> made = store::MakeBackup(options);
  if (!made.ok()) return ReportError(io.err, made.status());

  // Step 2: the upload, when configured.
  Result<UploadOutcome> upload =
      Upload(config.backup.upload_command, *made, ToolLimits(config.backup));
  Status upload_error;
  if (!upload.ok() && upload.status().code() == StatusCode::kUnavailable) {
    // Stopped at backup.command_timeout: the backup itself is complete and stays.
    upload_error =
        UnavailableError(fmt::format("backup.upload_command: {}; the backup is kept at {}",
                                     upload.status().message(), made->data_path));
  } else if (!upload.ok()) {
    upload_error = upload.status();
  } else if (!upload->ok()) {
    upload_error = UnavailableError(
        fmt::format("backup.upload_command {} {}; the backup is kept at {}", upload->program,
                    upload->signal != 0 ? fmt::format("was killed by signal {}", upload->signal)
                                        : fmt::format("exited with {}", upload->exit_code),
                    made->data_path));
  }

  // Step 3: retention, only once the new backup is also where it was meant to go.
  store::PruneResult pruned;
  Status prune_error;
  const int retention =
      args.retention_days.value_or(static_cast<int>(config.backup.retention_days));
  if (upload_error.ok()) {
    const std::string stem = store::BackupStem(made->manifest.created_ms);
    Result<store::PruneResult> result =
        store::PruneBackups(made->dir, retention, SystemClock::Instance().NowMs(), stem);
    if (result.ok()) {
      pruned = std::move(*result);
    } else {
      prune_error = result.status();
    }
  }

  if (args.json) {
    json::object o;
    o["backup"] = made->data_path;
    o["manifest"] = made->manifest_path;
    o["contents"] = store::ManifestToJson(made->manifest);
    o["seconds"] = made->seconds;
    o["retention_days"] = retention;
    o["pruned"] = Strings(pruned.removed);
    if (upload.ok() && upload->ran) {
      o["upload"] = json::object{{"program", upload->program},
                                 {"exit_code", upload->exit_code},
                                 {"signal", upload->signal}};
    } else {
      o["upload"] = nullptr;
    }
    o["ok"] = upload_error.ok() && prune_error.ok();
    io.out << json::serialize(o) << '\n';
  } else {
    PrintBackup(io.out, *made);
    if (upload.ok() && upload->ran && upload->ok())
      io.out << "uploaded by " << upload->program << '\n';
    for (const std::string& name : pruned.removed) io.out << "pruned " << name << '\n';
  }
  io.out.flush();
  if (!upload_error.ok()) return ReportError(io.err, upload_error);
  if (!prune_error.ok()) return ReportError(io.err, prune_error.WithContext("pruning"));
  return kExitOk;
}

int RunRestore(const config::LoadedConfig& loaded, const RestoreArgs& args, Io& io) {
  const config::Config& config = loaded.config;
  if (Status st = runtime::ConfigureLogging(config.log); !st.ok()) return ReportError(io.err, st);

  store::RestoreOptions options;
  options.backup = args.backup;
  options.replace = args.force;
  options.tool_limits = ToolLimits(config.backup);
  options.postgres_url = config.storage.postgres_url;
  options.postgres_connect_timeout_s =
      static_cast<int>(config.storage.postgres_connect_timeout.count());
  options.database_path = runtime::DatabasePath(config.storage.data_dir);
  Result<store::RestoreResult> restored = store::RestoreBackup(options);
  if (!restored.ok()) return ReportError(io.err, restored.status());
  if (args.json) {
    json::object o;
    o["restored"] = restored->target;
    o["contents"] = store::ManifestToJson(restored->manifest);
    o["moved_aside"] = Strings(restored->moved_aside);
    io.out << json::serialize(o) << '\n';
  } else {
    io.out << fmt::format("restored {} memories into {}\n", restored->manifest.entry_count,
                          restored->target);
    for (const std::string& path : restored->moved_aside) {
      io.out << "kept the replaced file as " << path << '\n';
    }
  }
  return kExitOk;
}

}  // namespace mann::cli
