#include <set>

#include <boost/json.hpp>
#include <fmt/format.h>

#include <mann/core/text_safety.h>
#include <mann/llm/decisions.h>

namespace mann::llm {
namespace {

namespace json = boost::json;

Status Invalid(std::string_view what) {
  return InvalidArgumentError(fmt::format("memory decisions: {}", what));
}

}  // namespace

Result<std::vector<Decision>> ParseDecisions(std::string_view answer,
                                             const std::vector<ShownMemory>& shown,
                                             const DecisionLimits& limits) {
  boost::system::error_code ec;
  const json::value doc = json::parse(answer, ec);
  if (ec) return Invalid(fmt::format("the answer is not one JSON document ({})", ec.message()));
  if (!doc.is_object()) return Invalid("the answer is not a JSON object");
  const json::object& top = doc.get_object();
  for (const auto& field : top) {
    if (field.key() != "decisions") {
      return Invalid(fmt::format("unknown key \"{}\" in the answer", std::string(field.key())));
    }
  }
  const json::value* list = top.if_contains("decisions");
  if (list == nullptr || !list->is_array()) return Invalid("\"decisions\" is not an array");
  const json::array& items = list->get_array();
  if (items.size() > limits.max_decisions) {
    return Invalid(
        fmt::format("{} decisions, more than the {} allowed", items.size(), limits.max_decisions));
  }

  std::set<std::string, std::less<>> known;
  for (const ShownMemory& m : shown) known.insert(m.id);
  std::set<std::string, std::less<>> used;
  std::vector<Decision> out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto bad = [&](std::string_view what) {
      return Invalid(fmt::format("decisions[{}]: {}", i, what));
    };
    const json::object* item = items[i].if_object();
    if (item == nullptr) return bad("not an object");
    for (const auto& field : *item) {
      const std::string_view key = field.key();
      if (key != "action" && key != "memory_id" && key != "content" && key != "reason") {
        return bad(fmt::format("unknown key \"{}\"", key));
      }
    }

    // The action.
    Decision d;
    const json::value* action = item->if_contains("action");
    if (action == nullptr || !action->is_string()) return bad("\"action\" is not a string");
    const std::string_view name = action->get_string();
    if (name == "ADD") {
      d.action = WriteAction::kAdd;
    } else if (name == "UPDATE") {
      d.action = WriteAction::kUpdate;
    } else if (name == "DELETE") {
      d.action = WriteAction::kDelete;
    } else if (name == "NOOP") {
      d.action = WriteAction::kNoop;
    } else {
      return bad(fmt::format("\"action\" is \"{}\", not ADD, UPDATE, DELETE or NOOP",
                             ClipToOneLine(name, 40)));
    }

    // The memory it is about: one the model was shown, at most once.
    const json::value* id = item->if_contains("memory_id");
    if (id != nullptr && !id->is_null()) {
      if (!id->is_string()) return bad("\"memory_id\" is not a string");
      d.memory_id = id->get_string();
    }
    const bool needs_id = d.action == WriteAction::kUpdate || d.action == WriteAction::kDelete;
    if (needs_id && d.memory_id.empty()) return bad(fmt::format("{} needs a memory_id", name));
    if (d.action == WriteAction::kAdd && !d.memory_id.empty()) {
      return bad("ADD must not name a memory_id");
    }
    if (!d.memory_id.empty()) {
      if (!known.contains(d.memory_id)) {
        return bad(fmt::format("memory_id \"{}\" is not one of the memories shown",
                               ClipToOneLine(d.memory_id, 64)));
      }
      if (!used.insert(d.memory_id).second) {
        return bad(fmt::format("memory_id \"{}\" has two decisions", d.memory_id));
      }
    }

    // What it says.
    const json::value* content = item->if_contains("content");
    if (content != nullptr && !content->is_null()) {
      if (!content->is_string()) return bad("\"content\" is not a string");
      d.content = content->get_string();
    }
    const bool needs_content = d.action == WriteAction::kAdd || d.action == WriteAction::kUpdate;
    if (needs_content) {
      if (d.content.find_first_not_of(" \t\r\n") == std::string::npos) {
        return bad(fmt::format("{} needs a non-empty content", name));
      }
      if (d.content.size() > limits.max_content_bytes) {
        return bad(fmt::format("content is longer than {} bytes", limits.max_content_bytes));
      }
      if (!text::IsValidUtf8(d.content)) return bad("content is not valid UTF-8");
    }
    if (const json::value* reason = item->if_contains("reason");
        reason != nullptr && !reason->is_null()) {
      if (!reason->is_string()) return bad("\"reason\" is not a string");
      d.reason = reason->get_string();
    }
    out.push_back(std::move(d));
  }
  return out;
}

std::vector<Message> DecisionPrompt(std::string_view message, const std::vector<ShownMemory>& shown,
                                    text::Language language) {
  std::string system =
      "You maintain the long-term memory of a chat assistant. Extract from the user's message "
      "the facts about the user worth remembering, and decide for each, against the existing "
      "memories listed, one action:\n"
      "- ADD: a new fact; give it as \"content\", a short sentence.\n"
      "- UPDATE: the fact changes or completes an existing memory; give its \"memory_id\" and "
      "the full new \"content\".\n"
      "- DELETE: the user contradicts an existing memory or asks to forget it; give its "
      "\"memory_id\".\n"
      "- NOOP: the fact is already remembered as it is; give its \"memory_id\".\n"
      "Use only the memory ids listed. Answer with exactly one JSON object and nothing else:\n"
      "{\"decisions\": [{\"action\": \"ADD\", \"content\": \"...\", \"reason\": \"...\"}]}\n"
      "An empty list means nothing is worth remembering.";
  system += language == text::Language::kVietnamese
                ? " Write content in Vietnamese, as the user wrote it."
                : " Write content in the language of the user's message.";
  system += "\n\nExisting memories:\n";
  if (shown.empty()) system += "(none)\n";
  for (const ShownMemory& m : shown) system += fmt::format("- id {}: {}\n", m.id, m.content);
  return {{"system", std::move(system)}, {"user", std::string(message)}};
}

}  // namespace mann::llm
