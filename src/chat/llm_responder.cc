#include <array>

#include <fmt/format.h>

#include <mann/chat/llm_responder.h>
#include <mann/core/log.h>
#include <mann/llm/decisions.h>
#include <mann/llm/prompt.h>

namespace mann::chat {
namespace {

// Model calls take seconds, not milliseconds: the request buckets would put most in +Inf.
constexpr std::array<double, 11> kModelBuckets = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120};

}  // namespace

struct LlmResponder::Metrics {
  metrics::CounterFamily* requests = nullptr;
  metrics::CounterFamily* failures = nullptr;
  metrics::CounterFamily* fallbacks = nullptr;
  metrics::HistogramFamily* duration = nullptr;
  metrics::Counter* prompt_tokens = nullptr;
  metrics::Counter* completion_tokens = nullptr;
  metrics::CallbackHandle breaker_state;
};

Result<std::unique_ptr<LlmResponder>> LlmResponder::Create(std::unique_ptr<llm::ChatClient> client,
                                                           Responder& fallback,
                                                           LlmResponderOptions options) {
  metrics::Registry& registry = metrics::Registry::Default();
  auto m = std::make_unique<Metrics>();
  MANN_ASSIGN_OR_RETURN(m->requests,
                        registry.AddCounter("mann_llm_requests_total",
                                            "Calls sent to the language model, by purpose "
                                            "(reply or decisions).",
                                            {"purpose"}));
  MANN_ASSIGN_OR_RETURN(m->failures,
                        registry.AddCounter("mann_llm_failures_total",
                                            "Language model calls that failed, by kind; "
                                            "invalid_decisions counts decision answers that did "
                                            "not validate.",
                                            {"kind"}));
  MANN_ASSIGN_OR_RETURN(m->fallbacks,
                        registry.AddCounter("mann_llm_fallbacks_total",
                                            "Replies given by the memory-only responder, and "
                                            "statements left to the similarity rules, because "
                                            "the model could not be used (label reason).",
                                            {"reason"}));
  MANN_ASSIGN_OR_RETURN(m->duration,
                        registry.AddHistogram("mann_llm_request_duration_seconds",
                                              "Duration of the calls sent to the language model.",
                                              {"purpose"}, kModelBuckets));
  MANN_ASSIGN_OR_RETURN(auto* prompt,
                        registry.AddCounter("mann_llm_prompt_tokens_total",
                                            "Prompt tokens, as the model server reports them."));
  m->prompt_tokens = &prompt->WithLabels();
  MANN_ASSIGN_OR_RETURN(
      auto* completion,
      registry.AddCounter("mann_llm_completion_tokens_total",
                          "Completion tokens, as the model server reports them."));
  m->completion_tokens = &completion->WithLabels();

  // Every known label value from the start, so rates and alerts see a 0 before the first event.
  for (std::string_view purpose : {"reply", "decisions"}) {
    m->requests->WithLabels({purpose});
    m->duration->WithLabels({purpose});
  }
  for (int k = static_cast<int>(llm::FailureKind::kTimeout);
       k <= static_cast<int>(llm::FailureKind::kBreakerOpen); ++k) {
    const std::string_view kind = llm::FailureKindName(static_cast<llm::FailureKind>(k));
    if (kind != "breaker_open") m->failures->WithLabels({kind});
    m->fallbacks->WithLabels({kind});
  }
  m->failures->WithLabels({"invalid_decisions"});
  m->fallbacks->WithLabels({"invalid_decisions"});

  std::unique_ptr<LlmResponder> responder(
      new LlmResponder(std::move(client), fallback, options, std::move(m)));
  const llm::CircuitBreaker* breaker = &responder->breaker_;
  MANN_ASSIGN_OR_RETURN(
      responder->metrics_->breaker_state,
      registry.AddGaugeCallback(
          "mann_llm_breaker_state",
          "Circuit breaker in front of the language model: 0 closed, 1 open, 2 half-open.",
          [breaker] { return static_cast<double>(breaker->state()); }));
  return responder;
}

LlmResponder::LlmResponder(std::unique_ptr<llm::ChatClient> client, Responder& fallback,
                           LlmResponderOptions options, std::unique_ptr<Metrics> metrics)
    : client_(std::move(client)),
      fallback_(fallback),
      options_(options),
      breaker_(options.breaker),
      metrics_(std::move(metrics)) {}

LlmResponder::~LlmResponder() = default;

llm::CallOutcome LlmResponder::Call(std::string_view purpose,
                                    const std::vector<llm::Message>& messages,
                                    const llm::TextSink& on_text, bool json_answer) {
  if (!breaker_.Allow()) {
    llm::CallOutcome refused;
    refused.failure = llm::FailureKind::kBreakerOpen;
    refused.status = UnavailableError("llm: the circuit breaker is open");
    return refused;
  }
  metrics_->requests->WithLabels({purpose}).Inc();
  llm::CallOutcome out = client_->Complete(messages, on_text, json_answer);
  breaker_.Record(out.ok());
  metrics_->duration->WithLabels({purpose}).Observe(out.elapsed.count());
  if (out.usage.reported) {
    metrics_->prompt_tokens->Inc(static_cast<double>(out.usage.prompt_tokens));
    metrics_->completion_tokens->Inc(static_cast<double>(out.usage.completion_tokens));
  }
  if (!out.ok()) {
    metrics_->failures->WithLabels({llm::FailureKindName(out.failure)}).Inc();
  }
  return out;
}

void LlmResponder::NoteFailure(std::string_view kind, std::string_view purpose,
                               const std::string& detail) {
  metrics_->fallbacks->WithLabels({kind}).Inc();
  std::uint64_t suppressed = 0;
  {
    std::lock_guard lock(log_mu_);
    auto it = log_state_.find(kind);
    if (it == log_state_.end()) it = log_state_.emplace(std::string(kind), LogState{}).first;
    LogState& state = it->second;
    const auto now = std::chrono::steady_clock::now();
    const bool first = state.last == std::chrono::steady_clock::time_point{};
    if (!first && now - state.last < options_.log_interval) {
      ++state.suppressed;
      return;
    }
    suppressed = state.suppressed;
    state.suppressed = 0;
    state.last = now;
  }
  // The breaker logs its own transitions; a refused call is expected while it is open.
  const auto logger = log::Get("llm");
  const std::string_view instead =
      purpose == "reply" ? "the memory-only reply" : "the similarity rules";
  const std::string line =
      fmt::format("llm {} fell back to {} kind={} ({} more like it not logged): {}", purpose,
                  instead, kind, suppressed, detail);
  if (kind == llm::FailureKindName(llm::FailureKind::kBreakerOpen)) {
    logger->info("{}", line);
  } else {
    logger->warn("{}", line);
  }
}

Result<std::string> LlmResponder::Reply(const ResponderInput& input) {
  // Greetings and thanks get the short local answer: a model call would add latency, not value.
  if (input.intent == Intent::kGreeting || input.intent == Intent::kThanks) {
    return fallback_.Reply(input);
  }

  llm::PromptInput prompt_input;
  for (const SearchHit* hit : input.relevant) {
    prompt_input.memories.push_back(
        {hit->entry.content, hit->entry.created_ms, hit->entry.importance});
  }
  for (const store::ChatTurn& turn : input.recent_turns) {
    prompt_input.recent_turns.push_back({turn.role, turn.text});
  }
  prompt_input.message = std::string(input.message);
  prompt_input.language = input.language;
  prompt_input.max_prompt_tokens = options_.max_prompt_tokens;
  const llm::Prompt prompt = llm::BuildPrompt(prompt_input);
  if (prompt.turns_dropped > 0 || prompt.over_budget) {
    log::Get("llm")->debug(
        "llm prompt trimmed turns_sent={} turns_dropped={} tokens={} "
        "over_budget={}",
        prompt.turns_sent, prompt.turns_dropped, prompt.estimated_tokens, prompt.over_budget);
  }

  // The call, streamed when the caller streams.
  std::string streamed;
  llm::TextSink sink;
  if (input.on_text) {
    sink = [&](std::string_view piece) {
      streamed.append(piece);
      input.on_text(piece);
    };
  }
  llm::CallOutcome out = Call("reply", prompt.messages, sink, false);
  if (out.ok() && out.text.find_first_not_of(" \t\r\n") == std::string::npos) {
    out.failure = llm::FailureKind::kBadAnswer;
    out.status = DataLossError("llm: the model answered with no text");
    metrics_->failures->WithLabels({llm::FailureKindName(out.failure)}).Inc();
  }
  if (out.ok()) return std::move(out.text);

  // The fallback, after whatever was already streamed.
  NoteFailure(llm::FailureKindName(out.failure), "reply", out.status.message());
  ResponderInput local = input;
  local.on_text = nullptr;
  MANN_ASSIGN_OR_RETURN(std::string reply, fallback_.Reply(local));
  if (streamed.empty()) return reply;
  return streamed + "\n\n" + reply;
}

std::optional<std::vector<llm::Decision>> LlmResponder::Decide(
    std::string_view message, text::Language language, const std::vector<llm::ShownMemory>& shown) {
  const llm::CallOutcome out =
      Call("decisions", llm::DecisionPrompt(message, shown, language), {}, true);
  if (!out.ok()) {
    NoteFailure(llm::FailureKindName(out.failure), "decisions", out.status.message());
    return std::nullopt;
  }
  Result<std::vector<llm::Decision>> decisions = llm::ParseDecisions(out.text, shown);
  if (!decisions.ok()) {
    metrics_->failures->WithLabels({"invalid_decisions"}).Inc();
    NoteFailure("invalid_decisions", "decisions", decisions.status().message());
    return std::nullopt;
  }
  log::Get("llm")->debug("llm decisions accepted count={}", decisions->size());
  return std::move(decisions).value();
}

}  // namespace mann::chat
