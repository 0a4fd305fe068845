// MemoryDecider: lets something other than the write head's similarity rules decide what a chat
// statement changes in memory (ADD, UPDATE, DELETE or NOOP against the memories most similar to
// it). ChatEngine asks it first when one is set; when it returns nullopt (no model, a failed
// call, an answer that did not validate) the similarity rules decide, as without a decider.
//
// Thread-safety: implementations must allow concurrent Decide() calls.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include <mann/llm/decisions.h>
#include <mann/text/analyzer.h>

namespace mann::chat {

class MemoryDecider {
 public:
  virtual ~MemoryDecider() = default;

  // Decisions about `message` that name only ids from `shown`, or nullopt to leave the
  // message to the similarity rules.
  virtual std::optional<std::vector<llm::Decision>> Decide(
      std::string_view message, text::Language language,
      const std::vector<llm::ShownMemory>& shown) = 0;
};

}  // namespace mann::chat
