// Grounded prompts: the messages sent to the model for one chat turn, within a token budget.
//
//   system    who the assistant is, the language to answer in, and the memories recalled for
//             this turn (content, the day it was told, importance), best first
//   user / assistant ...   the session's recent turns, oldest first
//   user      the message being answered
//
// Token estimate. The budget is counted without the model's tokenizer, which the server does
// not expose: ASCII text costs one token per 4 bytes (rounded up, per message), every non-ASCII
// code point one token (Vietnamese syllables and CJK characters tokenize at about that rate in
// common BPE vocabularies), and each message 4 tokens of framing. The estimate errs high for
// English prose, so a prompt within the budget is within the model's context in practice.
//
// Trimming. When the whole prompt exceeds the budget, the oldest turns go first, one at a time;
// the memories and the message are never cut. If they alone exceed the budget, the prompt is
// sent without any turns and over_budget says so.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <mann/core/clock.h>
#include <mann/llm/client.h>
#include <mann/text/analyzer.h>

namespace mann::llm {

// The estimate described above, without the per-message framing.
std::size_t EstimateTokens(std::string_view text);

// Tokens of a list of messages, framing included.
std::size_t EstimateTokens(const std::vector<Message>& messages);

struct PromptMemory {
  std::string content;
  TimestampMs told_ms = 0;  // when the user said it (the entry's creation time)
  double importance = 1.0;
};

struct PromptTurn {
  std::string role;  // "user" or "assistant"
  std::string content;
};

struct PromptInput {
  std::vector<PromptMemory> memories;    // best first; all of them are sent
  std::vector<PromptTurn> recent_turns;  // oldest first
  std::string message;
  text::Language language = text::Language::kEnglish;
  std::size_t max_prompt_tokens = 3000;
};

struct Prompt {
  std::vector<Message> messages;
  std::size_t estimated_tokens = 0;
  std::size_t turns_sent = 0;
  std::size_t turns_dropped = 0;
  bool over_budget = false;  // memories and message alone exceed max_prompt_tokens
};

Prompt BuildPrompt(const PromptInput& input);

// The system prompt alone (for tests and docs).
std::string SystemPrompt(const std::vector<PromptMemory>& memories, text::Language language);

// "2026-12-03": the UTC day of a time, as the prompt writes it.
std::string PromptDay(TimestampMs ms);

}  // namespace mann::llm
