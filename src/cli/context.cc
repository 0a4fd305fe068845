#include "context.h"

#include <iostream>
#include <sstream>

#include <fmt/format.h>
#include <unistd.h>

namespace mann::cli {

Io StandardIo() {
  return Io{std::cout, std::cerr, ::isatty(STDOUT_FILENO) == 1, ::isatty(STDERR_FILENO) == 1,
            ::isatty(STDIN_FILENO) == 1};
}

int ReportError(std::ostream& err, const Status& status) {
  std::istringstream lines(status.message().empty() ? status.ToString() : status.message());
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.empty()) err << "error: " << line << '\n';
  }
  err.flush();
  return status.code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
}

Result<config::LoadedConfig> LoadCliConfig(const GlobalOptions& options,
                                           const config::Environment& env) {
  config::ConfigInputs inputs;
  inputs.file = options.config_path;
  inputs.env = env;
  for (const std::string& set : options.sets) {
    const auto eq = set.find('=');
    if (eq == std::string::npos || eq == 0) {
      return InvalidArgumentError(fmt::format(
          "--set expects KEY=VALUE (e.g. --set memory.memory_size=2000), got \"{}\"", set));
    }
    inputs.overrides.emplace_back(set.substr(0, eq), set.substr(eq + 1));
  }
  if (options.data_dir) inputs.overrides.emplace_back("storage.data_dir", *options.data_dir);
  if (options.log_level) inputs.overrides.emplace_back("log.level", *options.log_level);

  auto loaded = config::LoadConfig(inputs);
  if (!loaded.ok()) {
    // A missing --config file is a usage problem like any other bad input.
    return InvalidArgumentError(loaded.status().message());
  }
  const config::Setting* level = loaded->Find("log.level");
  if (level != nullptr && level->origin == "default") loaded->config.log.level = "warn";
  return loaded;
}

bool ColorAllowed(bool is_tty, const config::Environment& env, bool no_color_flag) {
  if (!is_tty || no_color_flag) return false;
  if (auto it = env.find("NO_COLOR"); it != env.end() && !it->second.empty()) return false;
  if (auto it = env.find("TERM"); it != env.end() && it->second == "dumb") return false;
  return true;
}

}  // namespace mann::cli
