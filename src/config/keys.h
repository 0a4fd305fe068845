// Internal to the config module: the key table with its constraints and field bindings, and the
// value helpers shared by every layer (text parsing, checking, formatting, key suggestions).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <mann/config/config.h>

namespace mann::config::internal {

// The constraint a well-typed value must meet. Rule text is generated from it (except for
// Predicate, which carries its own), so the check and its documentation cannot drift apart.
struct AnyBool {};
struct IntRange {
  std::int64_t min;
  std::int64_t max;
};
struct NumberRange {
  double min;
  double max;  // +infinity: no upper bound
  bool min_open = false;
  bool max_open = false;
};
struct Choice {
  std::vector<std::string_view> allowed;  // matched case-insensitively, stored lower-case
  // Values that name a real but unavailable option, with the reason ("is not available yet").
  std::vector<std::pair<std::string_view, std::string_view>> reserved;
};
struct Predicate {
  bool (*ok)(const std::string& value);
  std::string_view rule;
  // When set, says what is wrong with a value `ok` refused (the parser's own message), so the
  // error points at the bad part of a long value rather than only restating the rule. Only for
  // keys that are not secret: the explanation may quote the value.
  std::string (*explain)(const std::string& value) = nullptr;
};
using Constraint = std::variant<AnyBool, IntRange, NumberRange, Choice, Predicate>;

struct KeySpec {
  KeyInfo info;
  Constraint constraint;
  void (*assign)(Config& config, const Value& value);  // value already checked
  // When set, the default is computed from the environment instead of parsed from default_text.
  Value (*computed_default)(const Environment& env) = nullptr;
};

// Every key, in the order of ConfigKeys().
const std::vector<KeySpec>& KeySpecs();

// Index into KeySpecs() of a dotted key (exact match), or nullopt.
std::optional<std::size_t> FindKeyIndex(std::string_view key);

// The closest known dotted key to a mistyped one (also matches environment variable names and
// bare leaf names such as "port"), or nullopt when nothing is close.
std::optional<std::string> SuggestKey(std::string_view unknown);

// Parses environment or flag text as `type`. Booleans: true/false/1/0/yes/no/on/off in any case.
// Integers and numbers: the whole text (surrounding blanks aside), no overflow, no nan/inf.
// Returns nullopt when the text is malformed.
std::optional<Value> ParseText(ValueType type, std::string_view text);

// Checks a value of the right type against the key's constraint, lower-casing a Choice in place.
// Returns nullopt when valid, else the message tail "server.port must be an integer in 1..65535".
std::optional<std::string> Check(const KeySpec& spec, Value& value);

// TOML-like text: true, 8000, 0.8, "info" (quoted and escaped).
std::string FormatValue(const Value& value);

// A double-quoted, escaped rendering of arbitrary text, safe to print on one line.
std::string Quote(std::string_view text);

}  // namespace mann::config::internal
