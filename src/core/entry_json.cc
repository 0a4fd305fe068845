#include <charconv>
#include <chrono>
#include <cmath>

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <mann/core/entry_json.h>

namespace mann {
namespace {

namespace json = boost::json;
using std::chrono::days;
using std::chrono::milliseconds;
using std::chrono::sys_days;

// Reads exactly `width` digits at `pos`; advances it.
std::optional<int> Digits(std::string_view s, std::size_t& pos, std::size_t width) {
  if (pos + width > s.size()) return std::nullopt;
  int v = 0;
  for (std::size_t i = 0; i < width; ++i) {
    const char c = s[pos + i];
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  pos += width;
  return v;
}

bool Eat(std::string_view s, std::size_t& pos, char c) {
  if (pos < s.size() && s[pos] == c) {
    ++pos;
    return true;
  }
  return false;
}

// The ISO 8601 subset described in the header; nullopt when malformed.
std::optional<TimestampMs> ParseIso(std::string_view s) {
  std::size_t pos = 0;
  auto y = Digits(s, pos, 4);
  if (!y || !Eat(s, pos, '-')) return std::nullopt;
  auto mo = Digits(s, pos, 2);
  if (!mo || !Eat(s, pos, '-')) return std::nullopt;
  auto d = Digits(s, pos, 2);
  if (!d) return std::nullopt;
  const std::chrono::year_month_day ymd{std::chrono::year{*y},
                                        std::chrono::month{static_cast<unsigned>(*mo)},
                                        std::chrono::day{static_cast<unsigned>(*d)}};
  if (!ymd.ok()) return std::nullopt;
  std::int64_t ms =
      std::chrono::duration_cast<milliseconds>(sys_days{ymd}.time_since_epoch()).count();
  if (pos == s.size()) return ms;

  if (!Eat(s, pos, 'T') && !Eat(s, pos, 't') && !Eat(s, pos, ' ')) return std::nullopt;
  auto h = Digits(s, pos, 2);
  if (!h || *h > 23 || !Eat(s, pos, ':')) return std::nullopt;
  auto mi = Digits(s, pos, 2);
  if (!mi || *mi > 59) return std::nullopt;
  int sec = 0, frac_ms = 0;
  if (Eat(s, pos, ':')) {
    auto se = Digits(s, pos, 2);
    if (!se || *se > 60) return std::nullopt;  // 60: a leap second, folded into the next minute
    sec = *se;
    if (Eat(s, pos, '.') || Eat(s, pos, ',')) {
      // Any number of fraction digits; the first three are milliseconds.
      std::size_t n = 0;
      while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
        if (n < 3) frac_ms = frac_ms * 10 + (s[pos] - '0');
        ++n;
        ++pos;
      }
      if (n == 0) return std::nullopt;
      for (std::size_t i = n; i < 3; ++i) frac_ms *= 10;
    }
  }
  ms += ((*h * 60LL + *mi) * 60LL + sec) * 1000LL + frac_ms;

  if (pos == s.size() || Eat(s, pos, 'Z') || Eat(s, pos, 'z')) {
    return pos == s.size() ? std::optional<TimestampMs>(ms) : std::nullopt;
  }
  const char sign = s[pos];
  if (sign != '+' && sign != '-') return std::nullopt;
  ++pos;
  auto oh = Digits(s, pos, 2);
  if (!oh || *oh > 23) return std::nullopt;
  Eat(s, pos, ':');
  auto om = Digits(s, pos, 2);
  if (!om || *om > 59 || pos != s.size()) return std::nullopt;
  const std::int64_t offset_ms = (*oh * 60LL + *om) * 60'000LL;
  return sign == '+' ? ms - offset_ms : ms + offset_ms;
}

Status FieldError(std::string_view field, std::string_view expected) {
  return InvalidArgumentError(fmt::format("field \"{}\" must be {}", field, expected));
}

Result<std::string> GetString(const json::object& o, std::string_view field, bool* present) {
  const json::value* v = o.if_contains(field);
  *present = v != nullptr && !v->is_null();
  if (!*present) return std::string();
  if (!v->is_string()) return FieldError(field, "a string");
  return std::string(v->as_string());
}

Result<std::optional<double>> GetNumber(const json::object& o, std::string_view field) {
  const json::value* v = o.if_contains(field);
  if (v == nullptr || v->is_null()) return std::optional<double>();
  if (!v->is_number()) return FieldError(field, "a number");
  return std::optional<double>(v->to_number<double>());
}

Result<std::optional<std::int64_t>> GetInteger(const json::object& o, std::string_view field,
                                               std::int64_t min) {
  const json::value* v = o.if_contains(field);
  if (v == nullptr || v->is_null()) return std::optional<std::int64_t>();
  std::int64_t out = 0;
  if (v->is_int64()) {
    out = v->as_int64();
  } else if (v->is_uint64() && v->as_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
    out = static_cast<std::int64_t>(v->as_uint64());
  } else if (v->is_double() && std::trunc(v->as_double()) == v->as_double() &&
             std::abs(v->as_double()) < 9e15) {
    out = static_cast<std::int64_t>(v->as_double());
  } else {
    return FieldError(field, fmt::format("an integer >= {}", min));
  }
  if (out < min) return FieldError(field, fmt::format("an integer >= {}", min));
  return std::optional<std::int64_t>(out);
}

// Times import as ISO 8601 text or as epoch milliseconds.
Result<TimestampMs> GetTime(const json::object& o, std::string_view field) {
  const json::value* v = o.if_contains(field);
  if (v == nullptr || v->is_null()) return TimestampMs{0};
  if (v->is_string()) {
    auto t = ParseIso(std::string_view(v->as_string()));
    if (!t) return FieldError(field, "an ISO 8601 time such as 2025-12-03T10:30:00.000Z");
    return *t;
  }
  MANN_ASSIGN_OR_RETURN(auto ms, GetInteger(o, field, 0));
  return *ms;
}

json::object SummaryToJson(const Summary& s) {
  return {{"min", s.min}, {"mean", s.mean}, {"max", s.max}};
}

}  // namespace

json::array StringsToJson(const std::vector<std::string>& items) {
  json::array out;
  for (const auto& s : items) out.emplace_back(s);
  return out;
}

std::string FormatTimestamp(TimestampMs ms) {
  const auto tp = std::chrono::sys_time<milliseconds>(milliseconds(ms));
  const auto day = std::chrono::floor<days>(tp);
  const std::chrono::year_month_day ymd{day};
  const std::chrono::hh_mm_ss hms{tp - day};
  return fmt::format("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}.{:03d}Z", int(ymd.year()),
                     unsigned(ymd.month()), unsigned(ymd.day()), hms.hours().count(),
                     hms.minutes().count(), hms.seconds().count(), hms.subseconds().count());
}

Result<TimestampMs> ParseTimestamp(std::string_view text, std::string_view what) {
  const auto all_digits = !text.empty() && text.find_first_not_of("0123456789") == text.npos;
  if (all_digits) {
    TimestampMs ms = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
    if (ec == std::errc() && end == text.data() + text.size()) return ms;
  } else if (auto t = ParseIso(text)) {
    return *t;
  }
  return InvalidArgumentError(fmt::format(
      "{} must be an ISO 8601 time (2025-12-03, 2025-12-03T10:30:00Z, 2025-12-03T17:30+07:00) "
      "or milliseconds since the epoch, got \"{}\"",
      what, text));
}

json::object EntryToJson(const MemoryEntry& e) {
  json::object o;
  o["id"] = e.id;
  o["namespace"] = e.ns;
  o["content"] = e.content;
  o["context"] = e.context;
  o["tags"] = StringsToJson(e.tags);
  o["metadata"] = e.metadata;
  o["importance_weight"] = e.importance;
  o["usage_count"] = e.usage_count;
  o["created_at"] = FormatTimestamp(e.created_ms);
  o["updated_at"] = FormatTimestamp(e.updated_ms);
  o["last_access_at"] = FormatTimestamp(e.last_access_ms);
  o["version"] = e.version;
  o["content_hash"] = e.content_hash;
  o["language"] = e.language;
  return o;
}

Result<ImportedEntry> EntryFromJson(const json::value& value) {
  if (!value.is_object()) return InvalidArgumentError("each line must be a JSON object");
  const json::object& o = value.as_object();
  ImportedEntry out;
  MemoryEntry& e = out.entry;
  bool present = false;

  MANN_ASSIGN_OR_RETURN(e.content, GetString(o, "content", &present));
  if (!present) return InvalidArgumentError("field \"content\" is required");
  MANN_ASSIGN_OR_RETURN(e.id, GetString(o, "id", &out.has_id));
  MANN_ASSIGN_OR_RETURN(e.ns, GetString(o, "namespace", &out.has_namespace));
  if (!out.has_namespace) {
    MANN_ASSIGN_OR_RETURN(e.ns, GetString(o, "user_id", &out.has_namespace));
  }
  MANN_ASSIGN_OR_RETURN(e.context, GetString(o, "context", &present));
  MANN_ASSIGN_OR_RETURN(e.content_hash, GetString(o, "content_hash", &present));
  MANN_ASSIGN_OR_RETURN(e.language, GetString(o, "language", &present));

  if (const json::value* tags = o.if_contains("tags"); tags != nullptr && !tags->is_null()) {
    if (!tags->is_array()) return FieldError("tags", "an array of strings");
    for (const json::value& t : tags->as_array()) {
      if (!t.is_string()) return FieldError("tags", "an array of strings");
      e.tags.emplace_back(t.as_string());
    }
  }
  if (const json::value* m = o.if_contains("metadata"); m != nullptr && !m->is_null()) {
    if (!m->is_object()) return FieldError("metadata", "an object");
    e.metadata = m->as_object();
  }

  MANN_ASSIGN_OR_RETURN(auto importance, GetNumber(o, "importance_weight"));
  if (!importance) {
    MANN_ASSIGN_OR_RETURN(importance, GetNumber(o, "importance"));
  }
  if (importance) e.importance = *importance;
  MANN_ASSIGN_OR_RETURN(auto usage, GetInteger(o, "usage_count", 0));
  if (usage) e.usage_count = *usage;
  MANN_ASSIGN_OR_RETURN(auto version, GetInteger(o, "version", 1));
  if (version) e.version = *version;
  MANN_ASSIGN_OR_RETURN(e.created_ms, GetTime(o, "created_at"));
  MANN_ASSIGN_OR_RETURN(e.updated_ms, GetTime(o, "updated_at"));
  MANN_ASSIGN_OR_RETURN(e.last_access_ms, GetTime(o, "last_access_at"));
  return out;
}

json::object HistoryToJson(const HistoryRecord& h) {
  json::object o;
  o["seq"] = h.seq;
  o["id"] = h.entry_id;
  o["namespace"] = h.ns;
  o["action"] = HistoryActionName(h.action);
  o["version"] = h.version;
  o["content"] = h.content;
  o["context"] = h.context;
  o["tags"] = StringsToJson(h.tags);
  o["metadata"] = h.metadata;
  o["importance_weight"] = h.importance;
  o["at"] = FormatTimestamp(h.at_ms);
  o["source"] = h.source;
  o["reason"] = h.reason;
  return o;
}

json::object OutcomeToJson(const WriteOutcome& w) {
  json::object o;
  o["action"] = WriteActionName(w.action);
  o["id"] = w.memory_id;
  o["similarity"] = w.similarity;
  o["reason"] = w.reason;
  o["version"] = w.version;
  o["evicted_ids"] = StringsToJson(w.evicted_ids);
  return o;
}

json::object HitToJson(const SearchHit& hit) {
  json::object o;
  o["memory"] = EntryToJson(hit.entry);
  o["similarity"] = hit.similarity;
  o["score"] = hit.score;
  o["attention"] = hit.attention;
  o["dense"] = hit.dense;
  o["lexical"] = hit.lexical;
  return o;
}

json::object NamespaceStatsToJson(const NamespaceStats& s) {
  json::object o;
  o["namespace"] = s.ns;
  o["total_memories"] = s.total_memories;
  o["utilization"] = s.utilization;
  o["reads"] = s.reads;
  o["writes"] = s.writes;
  o["evictions"] = s.evictions;
  o["importance"] = SummaryToJson(s.importance);
  o["usage"] = SummaryToJson(s.usage);
  return o;
}

json::object StatsToJson(const BankStats& s) {
  json::object o;
  o["overall"] = NamespaceStatsToJson(s.overall);
  json::array spaces;
  for (const auto& n : s.namespaces) spaces.push_back(NamespaceStatsToJson(n));
  o["namespaces"] = std::move(spaces);
  o["memory_size"] = s.memory_size;
  o["max_memory_capacity"] = s.max_memory_capacity;
  json::object decisions;
  for (auto a :
       {WriteAction::kAdd, WriteAction::kUpdate, WriteAction::kDelete, WriteAction::kNoop}) {
    decisions[WriteActionName(a)] = s.write_decisions[static_cast<int>(a)];
  }
  o["write_decisions"] = std::move(decisions);
  return o;
}

Result<json::value> ParseJson(std::string_view text, std::string_view what) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) return InvalidArgumentError(fmt::format("{} is not valid JSON: {}", what, ec.message()));
  return v;
}

std::string OneLine(std::string_view text, std::size_t max_chars) {
  std::string out;
  std::size_t chars = 0;
  for (std::size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    std::size_t len = c < 0x80           ? 1
                      : (c >> 5) == 0x6  ? 2
                      : (c >> 4) == 0xE  ? 3
                      : (c >> 3) == 0x1E ? 4
                                         : 1;
    if (i + len > text.size()) len = text.size() - i;
    if (chars == max_chars) {
      // Leave room for the ellipsis by dropping the last kept character.
      std::size_t cut = out.size();
      while (cut > 0 && (static_cast<unsigned char>(out[cut - 1]) & 0xC0) == 0x80) --cut;
      if (cut > 0) --cut;
      out.resize(cut);
      out += "…";
      return out;
    }
    if (c == '\n' || c == '\r' || c == '\t') {
      out += ' ';
    } else {
      out.append(text.substr(i, len));
    }
    ++chars;
    i += len;
  }
  return out;
}

}  // namespace mann
