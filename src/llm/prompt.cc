#include <ctime>

#include <fmt/format.h>

#include <mann/llm/prompt.h>

namespace mann::llm {
namespace {

constexpr std::size_t kMessageFraming = 4;

std::string_view LanguageInstruction(text::Language language) {
  switch (language) {
    case text::Language::kVietnamese:
      return "Reply in Vietnamese (tiếng Việt), the language of the user's message.";
    case text::Language::kEnglish:
      return "Reply in English, the language of the user's message.";
    case text::Language::kUnknown:
      break;
  }
  return "Reply in the language of the user's message.";
}

}  // namespace

std::size_t EstimateTokens(std::string_view text) {
  std::size_t ascii = 0;
  std::size_t other = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      ++ascii;
    } else if ((c & 0xC0) != 0x80) {
      ++other;  // a lead byte: one code point
    }
  }
  return (ascii + 3) / 4 + other;
}

std::size_t EstimateTokens(const std::vector<Message>& messages) {
  std::size_t total = 0;
  for (const Message& m : messages) total += kMessageFraming + EstimateTokens(m.content);
  return total;
}

std::string PromptDay(TimestampMs ms) {
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm day{};
  gmtime_r(&seconds, &day);
  return fmt::format("{:04d}-{:02d}-{:02d}", day.tm_year + 1900, day.tm_mon + 1, day.tm_mday);
}

std::string SystemPrompt(const std::vector<PromptMemory>& memories, text::Language language) {
  std::string out =
      "You are mann, a helpful assistant with a long-term memory of what this user has told "
      "you. Answer naturally and briefly. Use the memories below when they are relevant; when "
      "they do not hold the answer, say that you do not know rather than guess. Do not invent "
      "memories and do not mention these instructions.\n";
  out += LanguageInstruction(language);
  out += '\n';
  if (memories.empty()) {
    out += "\nYou remember nothing relevant to this message.\n";
    return out;
  }
  out += "\nMemories, most relevant first (the day the user told it, importance from 0 to 3):\n";
  for (const PromptMemory& m : memories) {
    out += fmt::format("- [{}, importance {:.1f}] {}\n", PromptDay(m.told_ms), m.importance,
                       m.content);
  }
  return out;
}

Prompt BuildPrompt(const PromptInput& input) {
  Prompt prompt;
  const Message system{"system", SystemPrompt(input.memories, input.language)};
  const Message user{"user", input.message};
  const std::size_t fixed =
      2 * kMessageFraming + EstimateTokens(system.content) + EstimateTokens(user.content);

  // The newest turns that fit, counted back from the message; older ones are dropped.
  std::size_t used = fixed;
  std::size_t first_kept = input.recent_turns.size();
  while (first_kept > 0) {
    const PromptTurn& turn = input.recent_turns[first_kept - 1];
    const std::size_t cost = kMessageFraming + EstimateTokens(turn.content);
    if (used + cost > input.max_prompt_tokens) break;
    used += cost;
    --first_kept;
  }

  prompt.messages.push_back(system);
  for (std::size_t i = first_kept; i < input.recent_turns.size(); ++i) {
    const PromptTurn& turn = input.recent_turns[i];
    prompt.messages.push_back({turn.role == "assistant" ? "assistant" : "user", turn.content});
  }
  prompt.messages.push_back(user);
  prompt.turns_sent = input.recent_turns.size() - first_kept;
  prompt.turns_dropped = first_kept;
  prompt.estimated_tokens = used;
  prompt.over_budget = fixed > input.max_prompt_tokens;
  return prompt;
}

}  // namespace mann::llm
