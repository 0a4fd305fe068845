// Logging: one facility for the whole process, one named logger per component.
//
//   auto log = mann::log::Get("store");
//   log->warn("commit failed file={} error={}: check free disk space", path, status.ToString());
//
// Messages start with the event, carry ids as key=value pairs, and a warning says what the
// operator can do. spdlog checks the level before formatting, so debug lines cost little when
// disabled.
//
// Delivery: on a terminal every line is written as it is logged. Anywhere else (a pipe to
// journald or a container runtime, a file) lines are gathered and written in blocks, at most
// kFlushInterval after they were logged, at once for a warning or worse (and everything before
// it), and at exit: one write(2) per line, under the sink's lock, made I/O threads queue for each
// other on every request. What a crash can lose is the last interval's info and debug lines.
//
// Thread-safety: loggers are safe to use from any thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include <mann/core/status.h>

namespace mann::log {

// The longest a line waits in a block before it is written.
inline constexpr std::chrono::milliseconds kFlushInterval{200};

struct LogOptions {
  std::string level = "info";  // trace, debug, info, warn, error, critical, off
  std::string file;            // empty: standard error
  // "text": `2026-12-03T15:28:49.473Z warning [encoder] message`, for people.
  // "json": one JSON object per line, for log collectors:
  //   {"time":"2026-12-03T15:28:49.473Z","level":"warning","logger":"encoder","message":"..."}
  // A message that is itself a JSON object (the HTTP access log) has its members merged into
  // the line instead of being quoted as "message".
  std::string format = "text";
};

// Parses a level name; InvalidArgument for anything else.
Result<spdlog::level::level_enum> ParseLevel(std::string_view name);

// (Re)configures every logger; loggers created earlier keep working with the new sinks.
Status Configure(const LogOptions& options);

// The logger for `component`, created on first use.
std::shared_ptr<spdlog::logger> Get(const std::string& component);

}  // namespace mann::log
