// ChatClient: a client of an OpenAI-compatible chat completions endpoint
// (POST {base_url}/chat/completions), as Ollama, a llama.cpp server, vLLM and hosted APIs serve it.
//
//   llm::ClientOptions options;
//   options.base_url = "http://127.0.0.1:11434/v1";
//   options.model = "llama3.2";
//   MANN_ASSIGN_OR_RETURN(auto client, llm::ChatClient::Create(options));
//   llm::CallOutcome out = client->Complete(messages, [](std::string_view text) { ... });
//
// With a text sink the request asks for a stream (`"stream": true`, server-sent events): each
// chunk's choices[0].delta.content goes to the sink as it arrives, and the stream must end with
// `data: [DONE]`; without one, one JSON answer is read and choices[0].message.content is the
// text. Token usage comes from `usage` (in a stream, from the chunk that carries it, when the
// server sends one; `stream_options.include_usage` asks for it).
//
// Failures are sorted into kinds (FailureKind) for metrics and fallback decisions. The API key
// goes only into the Authorization header: it is redacted from every message this client makes,
// including the server's own error text.
//
// Thread-safety: Complete() is safe to call concurrently; each call uses its own curl handle.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <mann/core/status.h>

namespace mann::llm {

struct ClientOptions {
  std::string base_url;  // e.g. http://127.0.0.1:11434/v1; "/chat/completions" is appended
  std::string model;
  std::string api_key;  // secret; empty sends no Authorization header
  std::chrono::milliseconds connect_timeout{5'000};
  std::chrono::milliseconds timeout{60'000};  // the whole request, stream included
  double temperature = 0.7;
  std::size_t max_response_bytes = 4 * 1024 * 1024;
};

struct Message {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// Why a call failed. Names (FailureKindName) are the `kind` label of the failure metric.
enum class FailureKind {
  kNone,
  kTimeout,      // connect or total timeout
  kConnect,      // refused, unreachable, DNS
  kRateLimited,  // HTTP 429
  kServer,       // HTTP 5xx
  kHttp,         // any other non-2xx answer (401, 404, ...)
  kBadAnswer,    // not JSON, no text where the protocol puts it, a malformed stream chunk
  kCutStream,    // the stream ended without data: [DONE]
  kBreakerOpen,  // not sent: the circuit breaker is open (set by callers, never by the client)
};

// "timeout", "connect", "rate_limited", "server", "http", "bad_answer", "cut_stream",
// "breaker_open"; "none" for kNone.
std::string_view FailureKindName(FailureKind kind);

struct Usage {
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  bool reported = false;  // the server sent a usage object
};

struct CallOutcome {
  Status status;  // Ok, or what failed (the key never appears in it)
  FailureKind failure = FailureKind::kNone;
  std::string text;  // the whole reply; on a failed stream, what came
  Usage usage;
  std::string finish_reason;  // "stop", "length", ... when the server says
  std::chrono::duration<double> elapsed{0};
  bool ok() const { return status.ok(); }
};

// Receives streamed text in order. Called on the thread that called Complete().
using TextSink = std::function<void(std::string_view text)>;

class ChatClient {
 public:
  // Checks the options (InvalidArgument naming the option: base_url not http(s) with a host,
  // empty model, a control character in the key, timeouts not positive, temperature outside
  // [0, 2]). No request is made: a model server that is down at start is a runtime failure,
  // handled like any other.
  static Result<std::unique_ptr<ChatClient>> Create(ClientOptions options);
  static Status Validate(const ClientOptions& options);

  ~ChatClient();
  ChatClient(const ChatClient&) = delete;
  ChatClient& operator=(const ChatClient&) = delete;

  // One completion. With `on_text` set, streams and passes text to it as it arrives.
  // `json_answer` asks for a JSON object reply (response_format), for machine-read answers.
  CallOutcome Complete(const std::vector<Message>& messages, const TextSink& on_text = {},
                       bool json_answer = false) const;

  // scheme://host[:port]/path of the endpoint, without credentials: for logs.
  const std::string& display_url() const { return display_url_; }
  const ClientOptions& options() const { return options_; }

 private:
  ChatClient(ClientOptions options, std::string url, std::string display_url, bool loopback);

  ClientOptions options_;
  std::string url_;
  std::string display_url_;
  bool bypass_proxy_ = false;
};

// Parsing of the protocol's answers, public for tests.
namespace protocol {

// The request body: {"model", "messages", "temperature", "stream"[, "stream_options"]
// [, "response_format"]}.
std::string RequestBody(const ClientOptions& options, const std::vector<Message>& messages,
                        bool stream, bool json_answer);

// One non-streamed answer: choices[0].message.content, usage, finish_reason. DataLoss naming
// what is missing when the answer does not follow the protocol.
Status ParseAnswer(std::string_view body, std::string* text, Usage* usage,
                   std::string* finish_reason);

// One stream chunk (the data of one event, not "[DONE]"): appends choices[0].delta.content to
// `delta` (absent content is fine: role-only and usage-only chunks carry none). DataLoss when
// the chunk is not a JSON object or its choices are malformed.
Status ParseChunk(std::string_view data, std::string* delta, Usage* usage,
                  std::string* finish_reason);

}  // namespace protocol

}  // namespace mann::llm
