// The data model of the memory bank: entries, their history, and write-head decisions.
//
// An entry belongs to exactly one namespace (a user or tenant id). Within a namespace the bank
// addresses entries by content (see read_head.h); across namespaces nothing is ever shared.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

#include <mann/core/clock.h>

namespace mann {

// The namespace used when a caller names none.
inline constexpr std::string_view kDefaultNamespace = "default";

// Importance weights lie in this closed range; anything outside is rejected, never clamped.
inline constexpr double kMinImportance = 0.0;
inline constexpr double kMaxImportance = 3.0;

struct MemoryEntry {
  std::string id;                 // UUIDv7 text form: time-ordered, unique
  std::string ns;                 // namespace
  std::string content;            // what was said, as given (NFC-normalized)
  std::string context;            // free text describing where it came from
  std::vector<std::string> tags;  // sorted, unique
  boost::json::object metadata;
  double importance = 1.0;       // in [kMinImportance, kMaxImportance]
  std::int64_t usage_count = 0;  // number of reads that returned this entry
  TimestampMs last_access_ms = 0;
  TimestampMs created_ms = 0;
  TimestampMs updated_ms = 0;
  std::int64_t version = 1;  // 1 on creation, +1 on every update
  std::string content_hash;  // hex SHA-256 of the folded content (see text::ContentKey)
  std::string language;      // "en", "vi" or "und"
};

// What the write head decided for one piece of information.
enum class WriteAction { kAdd, kUpdate, kDelete, kNoop };

// "ADD", "UPDATE", "DELETE", "NOOP".
std::string_view WriteActionName(WriteAction action);

// What history records about one change to an entry.
enum class HistoryAction {
  kCreate,  // the entry was added
  kUpdate,  // content or attributes changed (by a caller or a write-head merge)
  kDelete,  // removed by a caller or by a write-head DELETE
  kEvict,   // removed by the capacity policy
  kNoop,    // the write head found the information already present
};

// "create", "update", "delete", "evict", "noop".
std::string_view HistoryActionName(HistoryAction action);
std::optional<HistoryAction> ParseHistoryAction(std::string_view name);

// One row of an entry's history: the entry as it stood after the change (for kDelete and
// kEvict: as it stood just before removal).
struct HistoryRecord {
  std::int64_t seq = 0;  // store-assigned, increasing
  std::string entry_id;
  std::string ns;
  HistoryAction action = HistoryAction::kCreate;
  std::int64_t version = 0;
  std::string content;
  std::string context;
  std::vector<std::string> tags;
  boost::json::object metadata;
  double importance = 1.0;
  TimestampMs at_ms = 0;
  std::string source;  // who decided: "api", "write_head", "chat", "capacity", "import", "cli"
  std::string reason;  // why, in a few words ("similarity 0.87 >= 0.80")
};

}  // namespace mann
