#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/json.hpp>
#include <spdlog/formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <unistd.h>

#include <mann/core/log.h>

namespace mann::log {
namespace {

constexpr std::string_view kTextPattern = "%Y-%m-%dT%H:%M:%S.%eZ %l [%n] %v";

std::string_view LevelName(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
      return "trace";
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warning";
    case spdlog::level::err:
      return "error";
    case spdlog::level::critical:
      return "critical";
    default:
      return "off";
  }
}

// One JSON object per record: time, level, logger, then the message (merged when it is a JSON
// object itself).
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    namespace json = boost::json;
    json::object line;
    const auto since_epoch = msg.time.time_since_epoch();
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count() % 1000;
    const std::time_t seconds = std::chrono::system_clock::to_time_t(msg.time);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char stamp[32];
    const std::size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
    line["time"] = fmt::format("{}.{:03d}Z", std::string_view(stamp, n), static_cast<int>(ms));
    line["level"] = LevelName(msg.level);
    line["logger"] = std::string_view(msg.logger_name.data(), msg.logger_name.size());
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    bool merged = false;
    if (!payload.empty() && payload.front() == '{') {
      std::error_code ec;
      json::value parsed = json::parse(payload, ec);
      if (!ec && parsed.is_object()) {
        for (auto& kv : parsed.as_object()) line[kv.key()] = std::move(kv.value());
        merged = true;
      }
    }
    if (!merged) line["message"] = payload;
    const std::string text = json::serialize(line);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

// Gathers formatted lines and writes them to a file descriptor in blocks: when the block is
// full, and on flush() (the flusher thread, a warning, exit).
class BlockSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit BlockSink(int fd) : fd_(fd) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    formatter_->format(msg, block_);
    if (block_.size() >= kBlockBytes) flush_();
  }

  void flush_() override {
    const char* data = block_.data();
    std::size_t left = block_.size();
    while (left > 0) {
      const ssize_t n = ::write(fd_, data, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // nowhere to report a failing log stream; drop the block
      data += n;
      left -= static_cast<std::size_t>(n);
    }
    block_.clear();
  }

 private:
  static constexpr std::size_t kBlockBytes = 64 * 1024;
  const int fd_;
  spdlog::memory_buf_t block_;
};

spdlog::sink_ptr StderrSink() {
  if (::isatty(STDERR_FILENO)) return std::make_shared<spdlog::sinks::stderr_sink_mt>();
  return std::make_shared<BlockSink>(STDERR_FILENO);
}

struct Registry {
  std::mutex mu;
  std::vector<spdlog::sink_ptr> sinks;  // guarded by mu
  spdlog::level::level_enum level = spdlog::level::info;
  bool json = false;
  std::unordered_map<std::string, std::shared_ptr<spdlog::logger>> loggers;  // guarded by mu
};

void FlushAll(Registry& r) {
  std::vector<spdlog::sink_ptr> sinks;
  {
    std::lock_guard lock(r.mu);
    sinks = r.sinks;
  }
  for (auto& sink : sinks) sink->flush();
}

// Never destroyed (loggers may be used by other static destructors), so the flusher thread,
// which only touches it, may run until the process ends; exit flushes what is left.
Registry& registry() {
  static Registry* r = [] {
    auto* reg = new Registry;
    reg->sinks.push_back(StderrSink());
    std::thread([reg] {
      for (;;) {
        std::this_thread::sleep_for(kFlushInterval);
        FlushAll(*reg);
      }
    }).detach();
    std::atexit([] { FlushAll(registry()); });
    return reg;
  }();
  return *r;
}

void Apply(Registry& r, spdlog::logger& logger) {
  logger.sinks() = r.sinks;
  logger.set_level(r.level);
  if (r.json) {
    logger.set_formatter(std::make_unique<JsonFormatter>());
  } else {
    logger.set_pattern(std::string(kTextPattern), spdlog::pattern_time_type::utc);
  }
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
  if (options.format != "text" && options.format != "json") {
    return InvalidArgumentError("unknown log format '" + options.format + "'; allowed: text, json");
  }
  spdlog::sink_ptr sink;
  if (options.file.empty()) {
    sink = StderrSink();
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
  r.json = options.format == "json";
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
