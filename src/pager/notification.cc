#include <set>
#include <string>
#include <utility>

#include <boost/json.hpp>
#include <fmt/format.h>

#include <mann/core/clock.h>
#include <mann/core/entry_json.h>
#include <mann/core/utf8.h>
#include <mann/pager/notification.h>

#include "curl_util.h"

namespace mann::pager {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::system_clock;

constexpr Kind kKinds[] = {Kind::kTrigger, Kind::kRenotify, Kind::kResolve, Kind::kTest};

// PagerDuty refuses longer dedup keys.
constexpr std::size_t kMaxDedupKey = 255;

TimestampMs ToMs(system_clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(t.time_since_epoch()).count();
}

Result<std::string> StringField(const json::object& o, std::string_view name, bool required) {
  const json::value* v = o.if_contains(name);
  if (v == nullptr) {
    if (!required) return std::string();
    return InvalidArgumentError(fmt::format("notification JSON: field \"{}\" is missing", name));
  }
  if (!v->is_string()) {
    return InvalidArgumentError(
        fmt::format("notification JSON: field \"{}\" must be a string", name));
  }
  return std::string(v->get_string());
}

}  // namespace

std::string_view KindName(Kind kind) {
  switch (kind) {
    case Kind::kTrigger:
      return "trigger";
    case Kind::kRenotify:
      return "renotify";
    case Kind::kResolve:
      return "resolve";
    case Kind::kTest:
      return "test";
  }
  return "trigger";  // unreachable: every enumerator is handled above
}

std::optional<Kind> ParseKind(std::string_view name) {
  for (Kind kind : kKinds) {
    if (KindName(kind) == name) return kind;
  }
  return std::nullopt;
}

Status Validate(const Notification& n) {
  if (n.title.empty()) {
    return InvalidArgumentError(
        fmt::format("notification {}: title must not be empty", n.id.empty() ? "(new)" : n.id));
  }
  if (n.dedup_key.size() > kMaxDedupKey) {
    return InvalidArgumentError(fmt::format(
        "notification {}: dedup_key is {} bytes, at most {} are allowed (PagerDuty's limit)",
        n.id.empty() ? "(new)" : n.id, n.dedup_key.size(), kMaxDedupKey));
  }
  std::set<std::string_view> keys;
  for (const auto& [key, value] : n.metadata) {
    if (key.empty()) {
      return InvalidArgumentError(
          fmt::format("notification \"{}\": a metadata key is empty", n.title));
    }
    if (!keys.insert(key).second) {
      return InvalidArgumentError(
          fmt::format("notification \"{}\": metadata key \"{}\" appears twice", n.title, key));
    }
  }
  return Status::Ok();
}

Notification WithValidUtf8(Notification n) {
  for (std::string* field : {&n.id, &n.dedup_key, &n.title, &n.message, &n.service}) {
    *field = ToValidUtf8(*field);
  }
  for (auto& [key, value] : n.metadata) {
    key = ToValidUtf8(key);
    value = ToValidUtf8(value);
  }
  return n;
}

std::string FormatTime(const Notification& n) { return FormatTimestamp(ToMs(n.time)); }

std::int64_t EpochSeconds(const Notification& n) {
  return std::chrono::floor<std::chrono::seconds>(n.time.time_since_epoch()).count();
}

json::object ToJson(const Notification& n) {
  json::object metadata;
  metadata.reserve(n.metadata.size());
  for (const auto& [key, value] : n.metadata) metadata[key] = value;
  return json::object{
      {"id", n.id},
      {"dedup_key", n.dedup_key},
      {"kind", KindName(n.kind)},
      {"level", LevelName(n.level)},
      {"title", n.title},
      {"message", n.message},
      {"time", FormatTime(n)},
      {"service", n.service},
      {"metadata", std::move(metadata)},
  };
}

Result<Notification> FromJson(const json::value& value) {
  const json::object* o = value.if_object();
  if (o == nullptr) return InvalidArgumentError("notification JSON must be an object");
  Notification n;
  MANN_ASSIGN_OR_RETURN(n.id, StringField(*o, "id", true));
  MANN_ASSIGN_OR_RETURN(n.dedup_key, StringField(*o, "dedup_key", false));
  MANN_ASSIGN_OR_RETURN(n.title, StringField(*o, "title", true));
  MANN_ASSIGN_OR_RETURN(n.message, StringField(*o, "message", false));
  MANN_ASSIGN_OR_RETURN(n.service, StringField(*o, "service", false));

  MANN_ASSIGN_OR_RETURN(std::string kind, StringField(*o, "kind", true));
  std::optional<Kind> parsed_kind = ParseKind(kind);
  if (!parsed_kind) {
    return InvalidArgumentError(fmt::format(
        "notification JSON: kind \"{}\" is not trigger, renotify, resolve or test", kind));
  }
  n.kind = *parsed_kind;

  MANN_ASSIGN_OR_RETURN(std::string level, StringField(*o, "level", true));
  std::optional<Level> parsed_level = ParseLevel(level);
  if (!parsed_level) {
    return InvalidArgumentError(fmt::format(
        "notification JSON: level \"{}\" is not info, warning, error or critical", level));
  }
  n.level = *parsed_level;

  MANN_ASSIGN_OR_RETURN(std::string time, StringField(*o, "time", true));
  MANN_ASSIGN_OR_RETURN(TimestampMs ms, ParseTimestamp(time, "notification JSON field \"time\""));
  n.time = system_clock::time_point(milliseconds(ms));

  if (const json::value* metadata = o->if_contains("metadata"); metadata != nullptr) {
    if (!metadata->is_object()) {
      return InvalidArgumentError("notification JSON: field \"metadata\" must be an object");
    }
    for (const auto& item : metadata->get_object()) {
      if (!item.value().is_string()) {
        return InvalidArgumentError(fmt::format(
            "notification JSON: metadata \"{}\" must be a string", std::string(item.key())));
      }
      n.metadata.emplace_back(std::string(item.key()), std::string(item.value().get_string()));
    }
  }
  return n;
}

Result<Notification> FromJsonText(std::string_view text) {
  boost::system::error_code ec;
  const json::value value = json::parse(text, ec);
  if (ec) {
    return InvalidArgumentError(fmt::format("notification JSON does not parse: {}", ec.message()));
  }
  return FromJson(value);
}

}  // namespace mann::pager
