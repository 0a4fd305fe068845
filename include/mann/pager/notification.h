// Notification: one message the pager delivers to its channels (Slack, PagerDuty, email, a
// webhook), and its JSON form, which is what the outbox stores.
//
// An alert's lifecycle produces notifications of several kinds that share one dedup_key: the
// trigger when it starts firing, renotifications while it keeps firing, and the resolve when it
// clears. Receivers that deduplicate (PagerDuty) key on dedup_key; `id` is unique per
// notification and names it in the outbox and in the email Message-ID.
//
// The JSON form:
//   {"id": "0193...", "dedup_key": "memory_utilization", "kind": "trigger", "level": "warning",
//    "title": "Memory utilization above 90%", "message": "...",
//    "time": "2026-12-03T15:28:49.473Z", "service": "mann@db1",
//    "metadata": {"namespace": "default", "value": "0.93"}}
// Times are ISO 8601 UTC with milliseconds; metadata keeps its order.
//
// Thread-safety: values and pure functions.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <mann/core/severity.h>
#include <mann/core/status.h>

namespace mann::pager {

using Level = Severity;  // the monitor's too

enum class Kind {
  kTrigger,   // an alert started firing
  kRenotify,  // it is still firing (a reminder)
  kResolve,   // it stopped
  kTest,      // `mann alert test`: checks a channel end to end
};

// "info", "warning", "error", "critical"; ParseLevel accepts exactly these.
inline std::string_view LevelName(Level level) { return SeverityName(level); }
inline std::optional<Level> ParseLevel(std::string_view name) { return ParseSeverity(name); }
// "trigger", "renotify", "resolve", "test".
std::string_view KindName(Kind kind);
std::optional<Kind> ParseKind(std::string_view name);

struct Notification {
  std::string id;         // a UUID; the pager fills an empty one
  std::string dedup_key;  // the alert's identity across trigger, renotify and resolve
  Kind kind = Kind::kTrigger;
  Level level = Level::kInfo;
  std::string title;                           // one line
  std::string message;                         // free text, may span lines
  std::chrono::system_clock::time_point time;  // when it happened; the pager fills the epoch
  std::string service;                         // the sender, e.g. "mann@hostname"
  std::vector<std::pair<std::string, std::string>> metadata;  // keys unique, order kept

  friend bool operator==(const Notification&, const Notification&) = default;
};

// The checks Pager::Notify applies: InvalidArgument naming the field unless title is non-empty,
// dedup_key is at most 255 bytes (PagerDuty's limit), and metadata keys are non-empty and
// unique. (Bytes that are not UTF-8 are not an error: Notify replaces them with U+FFFD, since
// losing an alert over one bad byte would be worse.)
Status Validate(const Notification& n);

// `n` with every text field made valid UTF-8 (see ToValidUtf8).
Notification WithValidUtf8(Notification n);

// The notification's time as ISO 8601 UTC with milliseconds, and as whole seconds since the
// epoch (rounded down).
std::string FormatTime(const Notification& n);
std::int64_t EpochSeconds(const Notification& n);

boost::json::object ToJson(const Notification& n);
// The inverse of ToJson. InvalidArgument naming the field that is missing, of the wrong type or
// out of range. Unknown fields are ignored, so a newer mann's rows still load.
Result<Notification> FromJson(const boost::json::value& json);
Result<Notification> FromJsonText(std::string_view text);

}  // namespace mann::pager
