// Memory decisions proposed by a model: what to do with the facts of one chat message, against
// the existing memories it was shown.
//
// The model is asked for exactly one JSON object:
//
//   {"decisions": [
//     {"action": "ADD",    "content": "The user lives in Hanoi", "reason": "new fact"},
//     {"action": "UPDATE", "memory_id": "<shown id>", "content": "merged or corrected fact"},
//     {"action": "DELETE", "memory_id": "<shown id>", "reason": "the user contradicted it"},
//     {"action": "NOOP",   "memory_id": "<shown id>", "reason": "already known"}
//   ]}
//
// Validation is strict, because a wrong decision loses or corrupts what the user said: the
// document must be that object and nothing else (no prose around it, no unknown keys at either
// level); action is one of the four upper-case words; UPDATE and DELETE name a memory_id, NOOP
// may, ADD must not; every memory_id is one of the ids shown, and no id appears twice; ADD and
// UPDATE carry a non-empty content of at most max_content_bytes; reason, when present, is a
// string. At most max_decisions items; an empty list is valid (nothing worth remembering).
// Anything else is InvalidArgument naming the first problem, and the caller falls back to the
// similarity rules of the write head.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <mann/core/entry.h>
#include <mann/core/status.h>
#include <mann/llm/client.h>
#include <mann/text/analyzer.h>

namespace mann::llm {

struct ShownMemory {
  std::string id;
  std::string content;
};

struct Decision {
  WriteAction action = WriteAction::kNoop;
  std::string memory_id;  // empty for ADD (and for a NOOP that names none)
  std::string content;    // ADD and UPDATE
  std::string reason;
};

struct DecisionLimits {
  std::size_t max_decisions = 8;
  std::size_t max_content_bytes = 4096;
};

// Parses and validates a model's answer as described above.
Result<std::vector<Decision>> ParseDecisions(std::string_view answer,
                                             const std::vector<ShownMemory>& shown,
                                             const DecisionLimits& limits = {});

// The messages asking for decisions on `message` against `shown`.
std::vector<Message> DecisionPrompt(std::string_view message, const std::vector<ShownMemory>& shown,
                                    text::Language language);

}  // namespace mann::llm
