#include <algorithm>
#include <cassert>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <mann/config/config.h>
#include <mann/config/toml_types.h>

#include "keys.h"

extern char** environ;

namespace mann::config {
namespace {

using internal::Check;
using internal::FormatValue;
using internal::KeySpec;
using internal::KeySpecs;
using internal::Quote;

// The effective value of one key while layers are applied.
struct Slot {
  Value value;
  std::string origin;   // as Show() prints it: "default", "file:/p", "env:MANN_X", "flag"
  std::string where;    // as errors print it: "default", "file /p:3:8", "env", "flag"
  bool failed = false;  // some layer offered a bad value; cross-key checks skip the key
};

// Where an offered value came from, for the slot and for error messages.
struct Offer {
  std::string subject;  // `MANN_API_PORT="70000"`, `server.port=70000`
  std::string origin;
  std::string where;
};

std::string Position(const std::string& path, const toml::source_region& region) {
  return fmt::format("{}:{}:{}", path, region.begin.line, region.begin.column);
}

// The TOML value as the user wrote it, cut short so one bad array cannot flood the message.
std::string DisplayNode(const toml::node& node) {
  std::string text;
  if (const auto* s = node.as_string()) {
    text = Quote(s->get());
  } else if (const auto* f = node.as_floating_point()) {
    text = fmt::format("{}", f->get());
  } else {
    std::ostringstream os;
    node.visit([&os](const auto& n) { os << n; });
    text = os.str();
  }
  constexpr std::size_t kMax = 60;
  if (text.size() > kMax) text = text.substr(0, kMax) + "...";
  return text;
}

// A TOML value as a Value of `type`; nullopt when the TOML type does not fit. Integers are
// welcome where a number is expected (ratio = 1), never the other way round.
std::optional<Value> FromToml(ValueType type, const toml::node& node) {
  switch (type) {
    case ValueType::kBool:
      if (const auto* b = node.as_boolean()) return b->get();
      break;
    case ValueType::kInteger:
      if (const auto* i = node.as_integer()) return i->get();
      break;
    case ValueType::kNumber:
      if (const auto* f = node.as_floating_point()) return f->get();
      if (const auto* i = node.as_integer()) return static_cast<double>(i->get());
      break;
    case ValueType::kString:
      if (const auto* s = node.as_string()) return s->get();
      break;
  }
  return std::nullopt;
}

std::string UnknownKeyMessage(std::string_view key, std::string_view where) {
  std::string message = fmt::format("unknown key {} ({})", Quote(key), where);
  if (auto suggestion = internal::SuggestKey(key)) {
    message += fmt::format("; did you mean {}?", Quote(*suggestion));
  } else {
    message += ".";
  }
  // List what the section allows, or the sections themselves when the section is wrong too.
  const std::string_view section = key.substr(0, key.find('.'));
  std::vector<std::string_view> in_section;
  std::vector<std::string_view> sections;
  for (const KeySpec& spec : KeySpecs()) {
    std::string_view k = spec.info.key;
    const std::size_t dot = k.find('.');
    if (k.substr(0, dot) == section && key.find('.') != std::string_view::npos) {
      in_section.push_back(k.substr(dot + 1));
    }
    if (sections.empty() || sections.back() != k.substr(0, dot)) {
      sections.push_back(k.substr(0, dot));
    }
  }
  if (!in_section.empty()) {
    message += fmt::format(" Allowed in [{}]: {}.", section, fmt::join(in_section, ", "));
  } else {
    message += fmt::format(" Known sections: {}.", fmt::join(sections, ", "));
  }
  return message;
}

class Loader {
 public:
  explicit Loader(const ConfigInputs& inputs) : inputs_(inputs), slots_(KeySpecs().size()) {}

  Result<LoadedConfig> Run() {
    ApplyDefaults();
    ApplyFile();
    ApplyEnvironment();
    ApplyOverrides();
    ResolveDerived();
    CheckCrossKeys();
    if (!errors_.empty()) return Status(error_code_, fmt::format("{}", fmt::join(errors_, "\n")));
    return Build();
  }

 private:
  void AddError(StatusCode code, std::string message) {
    // One code for the whole load: a missing file alone is NotFound, anything mixed is invalid.
    if (errors_.empty()) {
      error_code_ = code;
    } else if (code != error_code_) {
      error_code_ = StatusCode::kInvalidArgument;
    }
    errors_.push_back(std::move(message));
  }

  // Checks `value` for key `index` and makes it the key's value, or records why not.
  void Accept(std::size_t index, Value value, Offer offer) {
    const KeySpec& spec = KeySpecs()[index];
    if (auto problem = Check(spec, value)) {
      AddError(StatusCode::kInvalidArgument,
               fmt::format("{} ({}): {}", offer.subject, offer.where, *problem));
      slots_[index].failed = true;
      return;
    }
    slots_[index].value = std::move(value);
    slots_[index].origin = std::move(offer.origin);
    slots_[index].where = std::move(offer.where);
  }

  // `name=text` for messages, with a secret's text withheld.
  static std::string Subject(const KeySpec& spec, std::string_view name, std::string_view text) {
    return fmt::format("{}={}", name, spec.info.secret ? "<redacted>" : Quote(text));
  }

  // Parses text from the environment or a flag, then accepts it.
  void AcceptText(std::size_t index, std::string_view text, Offer offer) {
    const KeySpec& spec = KeySpecs()[index];
    std::optional<Value> value = internal::ParseText(spec.info.type, text);
    if (!value) {
      AddError(StatusCode::kInvalidArgument,
               fmt::format("{} ({}): {} must be {}", offer.subject, offer.where, spec.info.key,
                           spec.info.rule));
      slots_[index].failed = true;
      return;
    }
    Accept(index, std::move(*value), std::move(offer));
  }

  void ApplyDefaults() {
    const auto& specs = KeySpecs();
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const KeySpec& spec = specs[i];
      std::optional<Value> value =
          spec.computed_default ? std::optional<Value>(spec.computed_default(inputs_.env))
                                : internal::ParseText(spec.info.type, spec.info.default_text);
      if (!value) {
        AddError(StatusCode::kInternal, fmt::format("built-in default of {} does not parse: {}",
                                                    spec.info.key, Quote(spec.info.default_text)));
        continue;
      }
      const std::string subject = fmt::format("{}={}", spec.info.key, FormatValue(*value));
      Accept(i, std::move(*value), Offer{subject, "default", "default"});
    }
  }

  // ---- File layer ----

  void ApplyFile() {
    std::string source = "--config";
    std::optional<std::string> path = inputs_.file;
    if (!path) {
      auto it = inputs_.env.find("MANN_CONFIG");
      if (it == inputs_.env.end() || it->second.empty()) return;
      path = it->second;
      source = "MANN_CONFIG";
    }
    std::optional<std::string> text = ReadFile(*path, source);
    if (!text) return;
    file_ = *path;

    toml::table root;
    try {
      root = toml::parse(*text, *path);
    } catch (const toml::parse_error& e) {
      AddError(StatusCode::kInvalidArgument,
               fmt::format("{}: invalid TOML: {}", Position(*path, e.source()), e.description()));
      return;
    }
    // toml++ keeps keys sorted by name; report in file order, as an editor would show them.
    struct Entry {
      std::string key;
      const toml::node* node;
      toml::source_position at;
    };
    std::vector<Entry> entries;
    for (auto&& [section, node] : root) {
      const toml::table* table = node.as_table();
      // A plain value, or an empty table that would otherwise pass unnoticed if misspelled.
      if (table == nullptr || (table->empty() && !IsSection(section.str()))) {
        entries.push_back({std::string(section.str()), &node, section.source().begin});
        continue;
      }
      for (auto&& [leaf, value] : *table) {
        entries.push_back(
            {fmt::format("{}.{}", section.str(), leaf.str()), &value, leaf.source().begin});
      }
    }
    std::stable_sort(entries.begin(), entries.end(), [](const Entry& x, const Entry& y) {
      return std::pair(x.at.line, x.at.column) < std::pair(y.at.line, y.at.column);
    });
    for (const Entry& e : entries) ApplyFileEntry(*path, e.key, *e.node, e.at);
  }

  std::optional<std::string> ReadFile(const std::string& path, const std::string& source) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (!std::filesystem::exists(status)) {
      AddError(StatusCode::kNotFound,
               fmt::format("config file {} (from {}) does not exist", Quote(path), source));
      return std::nullopt;
    }
    if (std::filesystem::is_directory(status)) {
      AddError(StatusCode::kInvalidArgument,
               fmt::format("config file {} (from {}) is a directory, not a TOML file", Quote(path),
                           source));
      return std::nullopt;
    }
    std::ifstream in(path, std::ios::binary);
    std::ostringstream content;
    if (in.is_open()) content << in.rdbuf();
    if (!in.is_open() || in.bad()) {
      AddError(StatusCode::kPermissionDenied,
               fmt::format("config file {} (from {}) could not be read: {}", Quote(path), source,
                           std::strerror(errno)));
      return std::nullopt;
    }
    return content.str();
  }

  static bool IsSection(std::string_view name) {
    for (const KeySpec& spec : KeySpecs()) {
      if (std::string_view(spec.info.key).substr(0, spec.info.key.find('.')) == name) return true;
    }
    return false;
  }

  // One top-level or [section] entry of the file; `at` is where its key is written.
  void ApplyFileEntry(const std::string& path, const std::string& key, const toml::node& node,
                      const toml::source_position& at) {
    const std::string key_where = fmt::format("file {}:{}:{}", path, at.line, at.column);
    const std::string where = "file " + Position(path, node.source());
    const std::optional<std::size_t> index = internal::FindKeyIndex(key);
    if (!index) {
      // A section name holding a plain value, e.g. `server = 5`.
      if (key.find('.') == std::string::npos && IsSection(key)) {
        AddError(StatusCode::kInvalidArgument,
                 fmt::format("{}={} ({}): {} must be a table ([{}] followed by its keys), got {}",
                             key, DisplayNode(node), where, key, key, TomlTypeName(node.type())));
      } else {
        AddError(StatusCode::kInvalidArgument, UnknownKeyMessage(key, key_where));
      }
      return;
    }
    const KeySpec& spec = KeySpecs()[*index];
    const std::string subject =
        fmt::format("{}={}", key, spec.info.secret ? "<redacted>" : DisplayNode(node));
    std::optional<Value> value = FromToml(spec.info.type, node);
    if (!value) {
      AddError(StatusCode::kInvalidArgument,
               fmt::format("{} ({}): {} must be {}, got {}", subject, where, key, spec.info.rule,
                           TomlTypeName(node.type())));
      slots_[*index].failed = true;
      return;
    }
    Accept(*index, std::move(*value), Offer{subject, "file:" + path, where});
  }

  // ---- Environment and flag layers ----

  void ApplyEnvironment() {
    const auto& specs = KeySpecs();
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const std::string& name = specs[i].info.env;
      if (name.empty()) continue;
      auto it = inputs_.env.find(name);
      // Empty counts as unset: compose files and shells produce `MANN_X=` for "not given".
      if (it == inputs_.env.end() || it->second.empty()) continue;
      AcceptText(i, it->second, Offer{Subject(specs[i], name, it->second), "env:" + name, "env"});
    }
  }

  void ApplyOverrides() {
    for (const auto& [key, text] : inputs_.overrides) {
      const std::optional<std::size_t> index = internal::FindKeyIndex(key);
      if (!index) {
        AddError(StatusCode::kInvalidArgument, UnknownKeyMessage(key, "flag"));
        continue;
      }
      AcceptText(*index, text, Offer{Subject(KeySpecs()[*index], key, text), "flag", "flag"});
    }
  }

  // ---- Derived values and cross-key rules ----

  std::size_t IndexOf(std::string_view key) const {
    // The keys named here are in the table by construction; a miss is a bug caught by tests.
    return internal::FindKeyIndex(key).value();
  }
  Slot& SlotOf(std::string_view key) { return slots_[IndexOf(key)]; }

  void ResolveDerived() {
    Slot& history = SlotOf("chat.history_file");
    const Slot& data_dir = SlotOf("storage.data_dir");
    if (std::get<std::string>(history.value).empty()) {
      history.value =
          (std::filesystem::path(std::get<std::string>(data_dir.value)) / "chat_history").string();
    }
    Slot& backup_dir = SlotOf("backup.dir");
    if (std::get<std::string>(backup_dir.value).empty()) {
      backup_dir.value =
          (std::filesystem::path(std::get<std::string>(data_dir.value)) / "backups").string();
    }
  }

  // `key=value (where)` for a cross-key message.
  std::string Describe(std::string_view key) {
    const Slot& slot = SlotOf(key);
    const KeySpec& spec = KeySpecs()[IndexOf(key)];
    const bool hide = spec.info.secret && !std::get<std::string>(slot.value).empty();
    std::string where = slot.where;
    if (where == "env") where = "env " + spec.info.env;
    return fmt::format("{}={} ({})", key, hide ? "<redacted>" : FormatValue(slot.value), where);
  }

  bool AnyFailed(std::initializer_list<std::string_view> keys) {
    for (std::string_view key : keys) {
      if (SlotOf(key).failed) return true;
    }
    return false;
  }

  void RequireAtLeast(std::string_view bigger, std::string_view smaller) {
    if (AnyFailed({bigger, smaller})) return;
    const Value& b = SlotOf(bigger).value;
    const Value& s = SlotOf(smaller).value;
    const bool ok = std::holds_alternative<double>(b)
                        ? std::get<double>(b) >= std::get<double>(s)
                        : std::get<std::int64_t>(b) >= std::get<std::int64_t>(s);
    if (ok) return;
    AddError(StatusCode::kInvalidArgument,
             fmt::format("{} is less than {}: {} must be >= {}", Describe(bigger),
                         Describe(smaller), bigger, smaller));
  }

  void CheckCrossKeys() {
    RequireAtLeast("memory.max_memory_capacity", "memory.memory_size");
    RequireAtLeast("memory.duplicate_threshold", "memory.update_threshold");

    if (!AnyFailed({"retrieval.dense_weight", "retrieval.lexical_weight"}) &&
        std::get<double>(SlotOf("retrieval.dense_weight").value) +
                std::get<double>(SlotOf("retrieval.lexical_weight").value) <=
            0) {
      AddError(
          StatusCode::kInvalidArgument,
          fmt::format("{} and {}: retrieval.dense_weight + retrieval.lexical_weight must be "
                      "> 0, or every memory would score 0",
                      Describe("retrieval.dense_weight"), Describe("retrieval.lexical_weight")));
    }

    if (!AnyFailed({"encoder.kind", "encoder.url", "encoder.model"}) &&
        std::get<std::string>(SlotOf("encoder.kind").value) == "remote") {
      for (const char* key : {"encoder.url", "encoder.model"}) {
        if (!std::get<std::string>(SlotOf(key).value).empty()) continue;
        AddError(StatusCode::kInvalidArgument,
                 fmt::format("{} needs {} (set {})", Describe("encoder.kind"), key,
                             std::string_view(key) == "encoder.url" ? "MANN_ENCODER_URL"
                                                                    : "MANN_ENCODER_MODEL"));
      }
    }

    if (!AnyFailed({"llm.base_url", "llm.model"}) && IsSet("llm.base_url") && !IsSet("llm.model")) {
      AddError(StatusCode::kInvalidArgument,
               fmt::format("{} needs llm.model (set MANN_LLM_MODEL)", Describe("llm.base_url")));
    }

    if (!AnyFailed({"security.cors_origins", "security.cors_allow_credentials"}) &&
        std::get<bool>(SlotOf("security.cors_allow_credentials").value) &&
        std::get<std::string>(SlotOf("security.cors_origins").value).find('*') !=
            std::string::npos) {
      AddError(StatusCode::kInvalidArgument,
               fmt::format("{} with {}: credentials cannot be combined with the * origin "
                           "(browsers refuse it, and it would let every site act as the user); "
                           "list the origins instead",
                           Describe("security.cors_allow_credentials"),
                           Describe("security.cors_origins")));
    }

    if (!AnyFailed({"storage.backend", "storage.postgres_url"}) &&
        std::get<std::string>(SlotOf("storage.backend").value) == "postgres" &&
        !IsSet("storage.postgres_url")) {
      AddError(StatusCode::kInvalidArgument,
               fmt::format("{} needs storage.postgres_url (set MANN_DATABASE_URL to "
                           "postgresql://user:password@host:5432/database)",
                           Describe("storage.backend")));
    }

    CheckPagerChannels();
    RequireAtLeast("pager.max_backoff", "pager.initial_backoff");
  }

  bool IsSet(std::string_view key) { return !std::get<std::string>(SlotOf(key).value).empty(); }

  // A channel exists when the setting that makes it deliverable is set; the pager needs one,
  // and the email channel needs a sender and recipients as well.
  void CheckPagerChannels() {
    static constexpr std::string_view kChannelKeys[] = {
        "pager.webhook", "pager.pagerduty_routing_key", "pager.smtp_url", "pager.json_webhook"};
    bool any_failed = AnyFailed({"pager.enabled"});
    bool any_channel = false;
    for (std::string_view key : kChannelKeys) {
      any_failed |= SlotOf(key).failed;
      any_channel |= IsSet(key);
    }
    if (!any_failed && !any_channel && std::get<bool>(SlotOf("pager.enabled").value)) {
      AddError(StatusCode::kInvalidArgument,
               fmt::format("{} but no pager channel is configured: set MANN_PAGER_WEBHOOK "
                           "(pager.webhook, Slack), MANN_PAGERDUTY_ROUTING_KEY "
                           "(pager.pagerduty_routing_key), MANN_SMTP_URL (pager.smtp_url, email) "
                           "or MANN_PAGER_JSON_WEBHOOK (pager.json_webhook), or disable the pager",
                           Describe("pager.enabled")));
    }

    if (AnyFailed({"pager.smtp_url", "pager.smtp_from", "pager.smtp_to"}) ||
        !IsSet("pager.smtp_url")) {
      return;
    }
    std::vector<std::string> missing;
    if (!IsSet("pager.smtp_from")) missing.push_back("pager.smtp_from (MANN_SMTP_FROM)");
    if (SplitList(std::get<std::string>(SlotOf("pager.smtp_to").value)).empty()) {
      missing.push_back("pager.smtp_to (MANN_SMTP_TO)");
    }
    if (!missing.empty()) {
      AddError(StatusCode::kInvalidArgument,
               fmt::format("{} makes an email channel, which needs {}: set the sender and the "
                           "recipients, or unset pager.smtp_url",
                           Describe("pager.smtp_url"), fmt::join(missing, " and ")));
    }
  }

  LoadedConfig Build() {
    LoadedConfig loaded;
    loaded.file = file_;
    const auto& specs = KeySpecs();
    const auto& infos = ConfigKeys();
    for (std::size_t i = 0; i < specs.size(); ++i) {
      specs[i].assign(loaded.config, slots_[i].value);
      loaded.settings.push_back(
          Setting{&infos[i], std::move(slots_[i].value), std::move(slots_[i].origin)});
    }
    return loaded;
  }

  const ConfigInputs& inputs_;
  std::vector<Slot> slots_;  // parallel to KeySpecs()
  std::optional<std::string> file_;
  std::vector<std::string> errors_;
  StatusCode error_code_ = StatusCode::kOk;
};

boost::json::value ToJson(const Value& value) {
  struct Visitor {
    boost::json::value operator()(bool b) const { return b; }
    boost::json::value operator()(std::int64_t i) const { return i; }
    boost::json::value operator()(double d) const { return d; }
    boost::json::value operator()(const std::string& s) const { return boost::json::string(s); }
  };
  return std::visit(Visitor{}, value);
}

bool IsRedacted(const Setting& setting) {
  return setting.info->secret && std::holds_alternative<std::string>(setting.value) &&
         !std::get<std::string>(setting.value).empty();
}

}  // namespace

std::string_view ValueTypeName(ValueType type) {
  switch (type) {
    case ValueType::kBool:
      return "boolean";
    case ValueType::kInteger:
      return "integer";
    case ValueType::kNumber:
      return "number";
    case ValueType::kString:
      return "string";
  }
  return "unknown";
}

const std::vector<KeyInfo>& ConfigKeys() {
  static const std::vector<KeyInfo>* keys = [] {
    auto* v = new std::vector<KeyInfo>;
    for (const KeySpec& spec : KeySpecs()) v->push_back(spec.info);
    return v;
  }();
  return *keys;
}

std::string Setting::DisplayValue() const {
  return IsRedacted(*this) ? "<redacted>" : FormatValue(value);
}

const Setting* LoadedConfig::Find(std::string_view key) const {
  for (const Setting& s : settings) {
    if (s.info->key == key) return &s;
  }
  return nullptr;
}

std::string LoadedConfig::Show() const {
  std::size_t key_width = 0;
  std::size_t value_width = 0;
  std::vector<std::string> values;
  for (const Setting& s : settings) {
    values.push_back(s.DisplayValue());
    key_width = std::max(key_width, s.info->key.size());
    value_width = std::max(value_width, values.back().size());
  }
  std::string out;
  for (std::size_t i = 0; i < settings.size(); ++i) {
    out += fmt::format("{:<{}} = {:<{}}  # {}\n", settings[i].info->key, key_width, values[i],
                       value_width, settings[i].origin);
  }
  return out;
}

boost::json::object LoadedConfig::ShowJson() const {
  boost::json::object out;
  for (const Setting& s : settings) {
    boost::json::object entry;
    entry["value"] = IsRedacted(s) ? boost::json::value("<redacted>") : ToJson(s.value);
    entry["source"] = s.origin;
    out[s.info->key] = std::move(entry);
  }
  return out;
}

Result<LoadedConfig> LoadConfig(const ConfigInputs& inputs) { return Loader(inputs).Run(); }

Config DefaultConfig(const Environment& env) {
  ConfigInputs inputs;
  for (const char* name : {"XDG_DATA_HOME", "HOME"}) {
    if (auto it = env.find(name); it != env.end()) inputs.env.insert(*it);
  }
  Result<LoadedConfig> loaded = LoadConfig(inputs);
  // Defaults are validated by the tests; failing here means the key table itself is broken.
  assert(loaded.ok());
  return loaded.ok() ? loaded->config : Config{};
}

std::vector<std::string> SplitList(std::string_view text) {
  std::vector<std::string> items;
  auto blank = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    while (!item.empty() && blank(item.front())) item.remove_prefix(1);
    while (!item.empty() && blank(item.back())) item.remove_suffix(1);
    if (!item.empty()) items.emplace_back(item);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return items;
}

Environment CurrentEnvironment() {
  Environment env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    const std::size_t eq = text.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(text.substr(0, eq), text.substr(eq + 1));
  }
  return env;
}

std::string_view TomlTypeName(toml::node_type type) {
  switch (type) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a floating-point number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time:
      return "a date or time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

}  // namespace mann::config
