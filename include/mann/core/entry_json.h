// JSON shapes shared by the command line and the REST API: entries (also the JSON Lines
// export/import format), history rows, write outcomes, search hits and statistics, plus the time
// format they share.
//
// An exported entry carries every field of MemoryEntry:
//   {"id": "0193...", "namespace": "default", "content": "...", "context": "", "tags": [...],
//    "metadata": {...}, "importance_weight": 1.0, "usage_count": 0,
//    "created_at": "2025-12-03T00:00:00.000Z", "updated_at": "...", "last_access_at": "...",
//    "version": 1, "content_hash": "...", "language": "en"}
// Times are ISO 8601 in UTC with milliseconds, so an export round-trips exactly.
//
// Thread-safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <mann/core/clock.h>
#include <mann/core/entry.h>
#include <mann/core/memory_bank.h>
#include <mann/core/status.h>

namespace mann {

// "2025-12-03T00:00:00.000Z".
std::string FormatTimestamp(TimestampMs ms);

// Accepts milliseconds since the epoch ("1764720000000") or ISO 8601: a date ("2025-12-03",
// midnight UTC) or a date and time ("2025-12-03T10:30", ":45", ".123"; a space may replace the
// T) with an optional zone ("Z", "+07:00", "-0500"; none means UTC). InvalidArgument naming
// `what` (e.g. "--since") and the accepted forms otherwise.
Result<TimestampMs> ParseTimestamp(std::string_view text, std::string_view what);

// A JSON array of strings (tags).
boost::json::array StringsToJson(const std::vector<std::string>& items);

boost::json::object EntryToJson(const MemoryEntry& entry);

// The inverse of EntryToJson for one import line. Only "content" is required; "id" may be absent
// (a new entry) and "user_id" is accepted for "namespace". Absent times are nullopt-like: they stay
// 0 and the caller decides. Fields of the wrong type are InvalidArgument naming the field; unknown
// fields are ignored so a newer export still imports.
struct ImportedEntry {
  MemoryEntry entry;
  bool has_id = false;
  bool has_namespace = false;
};
Result<ImportedEntry> EntryFromJson(const boost::json::value& value);

boost::json::object HistoryToJson(const HistoryRecord& record);
boost::json::object OutcomeToJson(const WriteOutcome& outcome);
boost::json::object HitToJson(const SearchHit& hit);
boost::json::object NamespaceStatsToJson(const NamespaceStats& stats);
boost::json::object StatsToJson(const BankStats& stats);

// Parses a JSON document; InvalidArgument naming `what` with the parser's reason.
Result<boost::json::value> ParseJson(std::string_view text, std::string_view what);

// Shortens `text` to at most `max_chars` code points on one line (newlines become spaces), with
// an ellipsis when cut. Never splits a UTF-8 sequence.
std::string OneLine(std::string_view text, std::size_t max_chars);

}  // namespace mann
