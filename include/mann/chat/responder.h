// Responder: turns a classified message and the recalled memories into the bot's reply.
//
// GroundedResponder, the default, uses no language model: it answers questions by quoting the
// best-matching memories with the day they were told ("You told me on 3 Dec: ..."), acknowledges
// what the write head stored, and says plainly when nothing relevant is known. It speaks English
// and Vietnamese. A language-model responder implements the same interface.
//
// Thread-safety: Reply() is safe to call concurrently.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <mann/core/memory_bank.h>
#include <mann/core/status.h>
#include <mann/store/store.h>
#include <mann/text/analyzer.h>

namespace mann::chat {

enum class Intent { kQuestion, kStatement, kForget, kGreeting, kThanks };

std::string_view IntentName(Intent intent);  // "question", "statement", ...

// Classifies a message by its form: a question mark or an opening question word (English
// what/where/who/..., Vietnamese gì/đâu/nào/ai/bao nhiêu/không ... with or without diacritics),
// a forget request (see ParseForgetRequest), a greeting or thanks, else a statement.
Intent Classify(std::string_view message);

// Receives a reply's text as it is produced, in order; the pieces joined are the whole reply.
using TextSink = std::function<void(std::string_view text)>;

struct ResponderInput {
  std::string_view message;
  Intent intent = Intent::kStatement;
  text::Language language = text::Language::kEnglish;
  std::vector<const SearchHit*> relevant;     // recalled memories above min_relevance, best first
  std::vector<WriteOutcome> writes;           // write-head outcomes for this message
  std::vector<store::ChatTurn> recent_turns;  // oldest first
  TimestampMs now_ms = 0;
  // When set, a responder that produces its reply piece by piece (a streamed model answer)
  // passes each piece here as it comes; one that does not may leave it unused, and ChatEngine
  // delivers the reply whole. Everything passed is a prefix of the reply Reply() returns.
  TextSink on_text;
};

class Responder {
 public:
  virtual ~Responder() = default;
  virtual Result<std::string> Reply(const ResponderInput& input) = 0;
};

struct GroundedOptions {
  std::size_t max_quoted = 2;  // memories quoted in one answer
  int utc_offset_minutes = 0;  // for the day printed beside a memory
};

class GroundedResponder final : public Responder {
 public:
  explicit GroundedResponder(GroundedOptions options = {}) : options_(options) {}
  Result<std::string> Reply(const ResponderInput& input) override;

 private:
  GroundedOptions options_;
};

// "3 Dec" (English) or "3/12" (Vietnamese) for a time, shifted by utc_offset_minutes.
std::string FormatDay(TimestampMs ms, text::Language language, int utc_offset_minutes);

}  // namespace mann::chat
