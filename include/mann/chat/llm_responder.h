// LlmResponder: replies through a language model (llm::ChatClient), grounded in the memories
// recalled for the turn, and falls back to another responder (the GroundedResponder) whenever
// the model cannot answer.
//
// One turn: the prompt is built (llm::BuildPrompt: the memories, the recent turns within
// max_prompt_tokens, the message, the reply language), the circuit breaker is asked, and the
// model's answer is streamed to ResponderInput::on_text when the caller streams. A failure (a
// timeout, a refused connection, 429, 5xx, an unparsable answer, a stream cut before [DONE],
// or the breaker open) is never the person's problem: the turn's reply comes from the fallback
// responder, with nothing said about the model. If part of a streamed answer was already passed
// on, the fallback's reply follows it after a blank line, so what was streamed stays a prefix of
// the reply. Each failure is counted by kind and logged once a minute per kind at most, with the
// number of like failures not logged.
//
// As a MemoryDecider it asks the model for ADD/UPDATE/DELETE/NOOP decisions on a statement
// (llm::DecisionPrompt, validated by llm::ParseDecisions); any failure or invalid answer
// returns nullopt, so the similarity rules decide.
//
// Metrics (metrics::Registry::Default()):
//   mann_llm_requests_total{purpose}            calls sent to the model (reply, decisions)
//   mann_llm_failures_total{kind}               failed calls, by llm::FailureKindName, and
//                                               kind="invalid_decisions" for decision answers
//                                               that did not validate
//   mann_llm_fallbacks_total{reason}            turns answered by the fallback responder, or
//                                               statements left to the similarity rules
//   mann_llm_request_duration_seconds{purpose}  time of each call sent
//   mann_llm_prompt_tokens_total                as the server reports them in usage
//   mann_llm_completion_tokens_total
//   mann_llm_breaker_state                      0 closed, 1 open, 2 half-open
//
// Thread-safety: Reply() and Decide() are safe to call concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <mann/chat/memory_decider.h>
#include <mann/chat/responder.h>
#include <mann/llm/breaker.h>
#include <mann/llm/client.h>
#include <mann/metrics/registry.h>

namespace mann::chat {

struct LlmResponderOptions {
  std::size_t max_prompt_tokens = 3000;
  llm::BreakerOptions breaker;
  std::chrono::milliseconds log_interval{60'000};  // per failure kind, between two log lines
};

class LlmResponder final : public Responder, public MemoryDecider {
 public:
  // `fallback` must outlive the responder. Registers the metrics; errors are registration's.
  static Result<std::unique_ptr<LlmResponder>> Create(std::unique_ptr<llm::ChatClient> client,
                                                      Responder& fallback,
                                                      LlmResponderOptions options);
  ~LlmResponder() override;

  Result<std::string> Reply(const ResponderInput& input) override;

  std::optional<std::vector<llm::Decision>> Decide(
      std::string_view message, text::Language language,
      const std::vector<llm::ShownMemory>& shown) override;

  const llm::CircuitBreaker& breaker() const { return breaker_; }

 private:
  struct Metrics;
  LlmResponder(std::unique_ptr<llm::ChatClient> client, Responder& fallback,
               LlmResponderOptions options, std::unique_ptr<Metrics> metrics);

  // Sends one call through the breaker; a refused call comes back as kBreakerOpen.
  llm::CallOutcome Call(std::string_view purpose, const std::vector<llm::Message>& messages,
                        const llm::TextSink& on_text, bool json_answer);
  // Counts a failure (or a fallback reason) and logs it, rate-limited per kind.
  void NoteFailure(std::string_view kind, std::string_view purpose, const std::string& detail);

  std::unique_ptr<llm::ChatClient> client_;
  Responder& fallback_;
  LlmResponderOptions options_;
  llm::CircuitBreaker breaker_;
  std::unique_ptr<Metrics> metrics_;

  struct LogState {
    std::chrono::steady_clock::time_point last{};
    std::uint64_t suppressed = 0;
  };
  std::mutex log_mu_;
  std::map<std::string, LogState, std::less<>> log_state_;  // by kind; guarded by log_mu_
};

}  // namespace mann::chat
