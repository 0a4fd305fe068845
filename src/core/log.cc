#include <mutex>
#include <unordered_map>
#include <vector>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <mann/core/log.h>

namespace mann::log {
namespace {

struct Registry {
  std::mutex mu;
  std::vector<spdlog::sink_ptr> sinks;  // guarded by mu
  spdlog::level::level_enum level = spdlog::level::info;
  std::string pattern = "%Y-%m-%dT%H:%M:%S.%eZ %l [%n] %v";
  std::unordered_map<std::string, std::shared_ptr<spdlog::logger>> loggers;  // guarded by mu
};

Registry& registry() {
  static Registry* r = [] {
    auto* reg = new Registry;
    reg->sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
    return reg;
  }();
  return *r;
}

void Apply(Registry& r, spdlog::logger& logger) {
  logger.sinks() = r.sinks;
  logger.set_level(r.level);
  logger.set_pattern(r.pattern, spdlog::pattern_time_type::utc);
  logger.flush_on(spdlog::level::warn);
}

}  // namespace

Result<spdlog::level::level_enum> ParseLevel(std::string_view name) {
  static constexpr std::pair<std::string_view, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace},       {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},         {"warn", spdlog::level::warn},
      {"warning", spdlog::level::warn},      {"error", spdlog::level::err},
      {"critical", spdlog::level::critical}, {"off", spdlog::level::off},
  };
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& [n, l] : kLevels) {
    if (n == lower) return l;
  }
  return InvalidArgumentError("unknown log level '" + std::string(name) +
                              "'; allowed: trace, debug, info, warn, error, critical, off");
}

Status Configure(const LogOptions& options) {
  MANN_ASSIGN_OR_RETURN(auto level, ParseLevel(options.level));
  spdlog::sink_ptr sink;
  if (options.file.empty()) {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  } else {
    try {
      sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.file);
    } catch (const spdlog::spdlog_ex& e) {
      return FailedPreconditionError("cannot open log file " + options.file + ": " + e.what() +
                                     "; check that its directory exists and is writable");
    }
  }
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  r.sinks = {sink};
  r.level = level;
  for (auto& [name, logger] : r.loggers) Apply(r, *logger);
  return Status::Ok();
}

std::shared_ptr<spdlog::logger> Get(const std::string& component) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  auto it = r.loggers.find(component);
  if (it != r.loggers.end()) return it->second;
  auto logger = std::make_shared<spdlog::logger>(component);
  Apply(r, *logger);
  r.loggers.emplace(component, logger);
  return logger;
}

}  // namespace mann::log
