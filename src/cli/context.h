// What every `mann` subcommand shares: the global options, the output streams and their
// terminal properties, configuration loading, and the mapping from Status to exit code.
//
// Exit codes: 0 success; 1 a failure (not found, storage error); 2 a usage error (bad flags or
// option values, invalid configuration). Errors are printed to standard error as
// `error: <message>`, one line per problem.
#pragma once

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include <mann/config/config.h>
#include <mann/core/status.h>

namespace mann::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct GlobalOptions {
  std::optional<std::string> config_path;  // --config
  std::optional<std::string> data_dir;     // --data-dir
  std::optional<std::string> log_level;    // --log-level
  std::vector<std::string> sets;           // --set KEY=VALUE, in order
  std::string ns = "default";              // -u/--user
};

// Where a command writes, and what those places are.
struct Io {
  std::ostream& out;
  std::ostream& err;
  bool out_is_tty = false;
  bool err_is_tty = false;
  bool in_is_tty = false;
};

// The process's standard streams with isatty() applied.
Io StandardIo();

// Prints `error: <line>` for every line of the status message; returns the exit code for it
// (kExitUsage for InvalidArgument, kExitFailure otherwise).
int ReportError(std::ostream& err, const Status& status);

// Loads the configuration from --config, the environment and the flags (--set first, then
// --data-dir and --log-level, so the dedicated flags win). InvalidArgument for a malformed
// --set. When log.level was not set anywhere the command line logs warnings and above only, so
// informational lines do not interleave with command output.
Result<config::LoadedConfig> LoadCliConfig(const GlobalOptions& options,
                                           const config::Environment& env);

// True when colour may be used on a stream: it is a terminal, NO_COLOR is unset or empty
// (https://no-color.org), TERM is not "dumb" and the user did not pass --no-color.
bool ColorAllowed(bool is_tty, const config::Environment& env, bool no_color_flag);

}  // namespace mann::cli
