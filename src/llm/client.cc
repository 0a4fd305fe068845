#include <cerrno>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <boost/json.hpp>
#include <curl/curl.h>
#include <fmt/format.h>

#include <mann/core/log.h>
#include <mann/core/text_safety.h>
#include <mann/llm/client.h>
#include <mann/llm/sse.h>

// The pager's curl helpers (global init, URL parsing, handle deleters) serve every libcurl
// client of the process.
#include "../pager/curl_util.h"

namespace mann::llm {
namespace {

namespace json = boost::json;
namespace curl = pager::internal;

// Bytes of a server's error text kept in a Status: enough for "model 'x' not found", short
// enough that an HTML error page does not flood a log line.
constexpr std::size_t kMaxServerMessage = 200;

// The human-readable part of an error body: OpenAI's {"error": {"message": ...}}, Ollama's
// {"error": "..."}, or the raw body.
std::string ServerMessage(std::string_view body, const std::vector<std::string>& secrets) {
  boost::system::error_code ec;
  const json::value doc = json::parse(body, ec);
  std::string_view message = body;
  if (!ec && doc.is_object()) {
    const json::value* error = doc.get_object().if_contains("error");
    const json::value* text = error;
    if (error != nullptr && error->is_object()) text = error->get_object().if_contains("message");
    if (text == nullptr || !text->is_string()) text = doc.get_object().if_contains("message");
    if (text != nullptr && text->is_string()) message = text->get_string();
  }
  // Scrubbed before cutting, so a cut cannot leave a recognisable prefix of the key behind.
  return ClipToOneLine(RedactSecrets(std::string(message), secrets), kMaxServerMessage);
}

void ReadUsage(const json::object& o, Usage* usage) {
  const json::value* u = o.if_contains("usage");
  if (u == nullptr || !u->is_object()) return;
  const auto number = [&](std::string_view name) -> std::int64_t {
    const json::value* v = u->get_object().if_contains(name);
    if (v == nullptr) return 0;
    if (v->is_int64()) return std::max<std::int64_t>(0, v->get_int64());
    if (v->is_uint64()) return static_cast<std::int64_t>(v->get_uint64() & 0x7fffffffffffffff);
    return 0;
  };
  usage->prompt_tokens = number("prompt_tokens");
  usage->completion_tokens = number("completion_tokens");
  usage->reported = true;
}

// choices[0] of an answer or chunk; nullptr with *error set when malformed, nullptr without
// error when the list is empty (a usage-only chunk).
const json::object* FirstChoice(const json::object& o, std::string* error) {
  const json::value* choices = o.if_contains("choices");
  if (choices == nullptr) return nullptr;
  if (!choices->is_array()) {
    *error = "\"choices\" is not an array";
    return nullptr;
  }
  if (choices->get_array().empty()) return nullptr;
  const json::object* first = choices->get_array()[0].if_object();
  if (first == nullptr) *error = "choices[0] is not an object";
  return first;
}

void ReadFinishReason(const json::object& choice, std::string* finish_reason) {
  const json::value* reason = choice.if_contains("finish_reason");
  if (reason != nullptr && reason->is_string()) *finish_reason = reason->get_string();
}

// What one transfer collects: the raw body of an error answer or a non-streamed answer, or
// the parsed stream.
struct Transfer {
  CURL* easy = nullptr;
  const TextSink* on_text = nullptr;
  bool streaming = false;
  std::size_t limit = 0;
  std::size_t received = 0;
  bool overflowed = false;

  // Decided at the first body byte, from the status and Content-Type.
  bool decided = false;
  bool as_stream = false;
  std::string raw;

  std::unique_ptr<SseParser> parser;
  std::string text;
  Usage usage;
  std::string finish_reason;
  bool done = false;
  std::string chunk_error;  // the first malformed chunk, if any

  void Decide() {
    decided = true;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    const char* type = nullptr;
    curl_easy_getinfo(easy, CURLINFO_CONTENT_TYPE, &type);
    // A server that ignores "stream" answers one JSON document; that is read as such.
    as_stream = streaming && status >= 200 && status <= 299 && type != nullptr &&
                std::string_view(type).starts_with("text/event-stream");
    if (!as_stream) return;
    parser = std::make_unique<SseParser>([this](std::string_view data) { return Event(data); });
  }

  bool Event(std::string_view data) {
    if (done) return true;  // nothing may follow [DONE]; what does is ignored
    if (data == "[DONE]") {
      done = true;
      return true;
    }
    std::string delta;
    const Status parsed = protocol::ParseChunk(data, &delta, &usage, &finish_reason);
    if (!parsed.ok()) {
      chunk_error = parsed.message();
      return false;  // aborts the transfer: the rest of a broken stream is not trusted
    }
    if (!delta.empty()) {
      text += delta;
      if (*on_text) (*on_text)(delta);
    }
    return true;
  }

  static std::size_t Write(char* data, std::size_t size, std::size_t count, void* user) {
    auto* t = static_cast<Transfer*>(user);
    const std::size_t n = size * count;
    if (n > t->limit - t->received) {
      t->overflowed = true;
      return 0;  // curl aborts the transfer with CURLE_WRITE_ERROR
    }
    t->received += n;
    if (!t->decided) t->Decide();
    if (!t->as_stream) {
      t->raw.append(data, n);
      return n;
    }
    if (!t->parser->Feed(std::string_view(data, n))) {
      if (t->parser->overflowed()) t->chunk_error = "a stream line is longer than allowed";
      return 0;
    }
    return n;
  }
};

}  // namespace

std::string_view FailureKindName(FailureKind kind) {
  switch (kind) {
    case FailureKind::kNone:
      return "none";
    case FailureKind::kTimeout:
      return "timeout";
    case FailureKind::kConnect:
      return "connect";
    case FailureKind::kRateLimited:
      return "rate_limited";
    case FailureKind::kServer:
      return "server";
    case FailureKind::kHttp:
      return "http";
    case FailureKind::kBadAnswer:
      return "bad_answer";
    case FailureKind::kCutStream:
      return "cut_stream";
    case FailureKind::kBreakerOpen:
      return "breaker_open";
  }
  return "none";
}

namespace protocol {

std::string RequestBody(const ClientOptions& options, const std::vector<Message>& messages,
                        bool stream, bool json_answer) {
  json::object request;
  request["model"] = options.model;
  json::array& list = request["messages"].emplace_array();
  for (const Message& m : messages)
    list.push_back(json::object{{"role", m.role}, {"content", m.content}});
  request["temperature"] = options.temperature;
  request["stream"] = stream;
  // Asks for the final usage chunk; servers that do not know the option ignore it.
  if (stream) request["stream_options"] = json::object{{"include_usage", true}};
  if (json_answer) request["response_format"] = json::object{{"type", "json_object"}};
  return json::serialize(request);
}

Status ParseAnswer(std::string_view body, std::string* text, Usage* usage,
                   std::string* finish_reason) {
  boost::system::error_code ec;
  const json::value doc = json::parse(body, ec);
  if (ec || !doc.is_object()) {
    return DataLossError(fmt::format("the answer is not a JSON object; it starts with '{}'",
                                     ClipToOneLine(body.substr(0, 80), 80)));
  }
  std::string error;
  const json::object* choice = FirstChoice(doc.get_object(), &error);
  if (choice == nullptr) {
    return DataLossError(error.empty() ? "the answer has no choices" : "the answer's " + error);
  }
  const json::value* message = choice->if_contains("message");
  const json::value* content = message != nullptr && message->is_object()
                                   ? message->get_object().if_contains("content")
                                   : nullptr;
  if (content == nullptr || !content->is_string()) {
    return DataLossError("the answer has no string at choices[0].message.content");
  }
  *text = content->get_string();
  ReadUsage(doc.get_object(), usage);
  ReadFinishReason(*choice, finish_reason);
  return Status::Ok();
}

Status ParseChunk(std::string_view data, std::string* delta, Usage* usage,
                  std::string* finish_reason) {
  boost::system::error_code ec;
  const json::value doc = json::parse(data, ec);
  if (ec || !doc.is_object()) {
    return DataLossError(fmt::format("a stream chunk is not a JSON object; it starts with '{}'",
                                     ClipToOneLine(data.substr(0, 80), 80)));
  }
  const json::object& o = doc.get_object();
  if (const json::value* error = o.if_contains("error"); error != nullptr) {
    return DataLossError("the stream carries an error: " + ServerMessage(json::serialize(o), {}));
  }
  ReadUsage(o, usage);
  std::string error;
  const json::object* choice = FirstChoice(o, &error);
  if (!error.empty()) return DataLossError("a stream chunk's " + error);
  if (choice == nullptr) return Status::Ok();  // usage-only chunk
  ReadFinishReason(*choice, finish_reason);
  const json::value* d = choice->if_contains("delta");
  if (d == nullptr || d->is_null()) return Status::Ok();
  if (!d->is_object()) return DataLossError("a stream chunk's choices[0].delta is not an object");
  const json::value* content = d->get_object().if_contains("content");
  if (content == nullptr || content->is_null()) return Status::Ok();
  if (!content->is_string()) {
    return DataLossError("a stream chunk's choices[0].delta.content is not a string");
  }
  delta->append(content->get_string());
  return Status::Ok();
}

}  // namespace protocol

Status ChatClient::Validate(const ClientOptions& options) {
  const Result<curl::ParsedUrl> url =
      curl::ParseUrl(options.base_url, "llm.base_url", {"http", "https"});
  if (!url.ok()) return url.status();
  if (options.model.empty()) {
    return InvalidArgumentError("llm.model must name the model to ask for (set MANN_LLM_MODEL)");
  }
  // The key goes into a header line; a CR or LF in it would end the header early.
  if (curl::HasControlCharacters(options.api_key)) {
    return InvalidArgumentError("llm.api_key holds a control character (a stray newline?)");
  }
  if (options.connect_timeout.count() <= 0) {
    return InvalidArgumentError("llm.connect_timeout must be positive");
  }
  if (options.timeout.count() <= 0) return InvalidArgumentError("llm.timeout must be positive");
  if (!(options.temperature >= 0 && options.temperature <= 2)) {
    return InvalidArgumentError(
        fmt::format("llm.temperature must be a number in 0..2, got {}", options.temperature));
  }
  if (options.max_response_bytes < 1) {
    return InvalidArgumentError("llm max_response_bytes must be at least 1");
  }
  return Status::Ok();
}

Result<std::unique_ptr<ChatClient>> ChatClient::Create(ClientOptions options) {
  MANN_RETURN_IF_ERROR(Validate(options));
  MANN_RETURN_IF_ERROR(curl::InitCurl());
  MANN_ASSIGN_OR_RETURN(curl::ParsedUrl parsed,
                        curl::ParseUrl(options.base_url, "llm.base_url", {"http", "https"}));

  // "{base_url}/chat/completions", keeping a query string and refusing none of the rest.
  std::string base = options.base_url;
  std::string query;
  if (const std::size_t q = base.find('?'); q != std::string::npos) {
    query = base.substr(q);
    base.resize(q);
  }
  while (!base.empty() && base.back() == '/') base.pop_back();
  std::string url = base + "/chat/completions" + query;
  std::string display = curl::DisplayOf(parsed);
  if (display.ends_with("/...")) display.resize(display.size() - 4);
  display += "/.../chat/completions";
  return std::unique_ptr<ChatClient>(
      new ChatClient(std::move(options), std::move(url), std::move(display), parsed.loopback));
}

ChatClient::ChatClient(ClientOptions options, std::string url, std::string display_url,
                       bool loopback)
    : options_(std::move(options)),
      url_(std::move(url)),
      display_url_(std::move(display_url)),
      bypass_proxy_(loopback) {}

ChatClient::~ChatClient() = default;

CallOutcome ChatClient::Complete(const std::vector<Message>& messages, const TextSink& on_text,
                                 bool json_answer) const {
  CallOutcome out;
  const auto started = std::chrono::steady_clock::now();
  const bool streaming = static_cast<bool>(on_text);
  const std::vector<std::string> secrets = {options_.api_key, url_};
  const auto fail = [&](FailureKind kind, std::string_view detail) {
    out.failure = kind;
    out.status = UnavailableError(
        RedactSecrets(fmt::format("llm POST {}: {}", display_url_, detail), secrets));
    out.elapsed = std::chrono::steady_clock::now() - started;
    return out;
  };

  // The request.
  const std::string body = protocol::RequestBody(options_, messages, streaming, json_answer);
  curl_slist* raw_headers = nullptr;
  for (const char* line : {"Content-Type: application/json", "Expect:"}) {
    raw_headers = curl_slist_append(raw_headers, line);
  }
  raw_headers = curl_slist_append(
      raw_headers, streaming ? "Accept: text/event-stream" : "Accept: application/json");
  if (!options_.api_key.empty()) {
    raw_headers =
        curl_slist_append(raw_headers, ("Authorization: Bearer " + options_.api_key).c_str());
  }
  std::unique_ptr<curl_slist, curl::SlistDeleter> headers(raw_headers);
  std::unique_ptr<CURL, curl::EasyDeleter> easy(curl_easy_init());
  if (easy == nullptr || headers == nullptr) return fail(FailureKind::kConnect, "out of memory");

  Transfer transfer;
  transfer.easy = easy.get();
  transfer.on_text = &on_text;
  transfer.streaming = streaming;
  transfer.limit = options_.max_response_bytes;
  char curl_error[CURL_ERROR_SIZE] = {};
  CURLcode set = curl::SetHttpPostOptions(easy.get(), {.url = url_.c_str(),
                                                       .body = body,
                                                       .headers = headers.get(),
                                                       .connect_timeout = options_.connect_timeout,
                                                       .timeout = options_.timeout,
                                                       .error_buffer = curl_error,
                                                       .bypass_proxy = bypass_proxy_});
  if (set == CURLE_OK) set = curl_easy_setopt(easy.get(), CURLOPT_WRITEFUNCTION, &Transfer::Write);
  if (set == CURLE_OK) set = curl_easy_setopt(easy.get(), CURLOPT_WRITEDATA, &transfer);
  if (set != CURLE_OK) {
    return fail(FailureKind::kConnect,
                fmt::format("cannot configure curl: {}", curl_easy_strerror(set)));
  }

  // The transfer.
  const CURLcode performed = curl_easy_perform(easy.get());
  long http_status = 0;
  curl_easy_getinfo(easy.get(), CURLINFO_RESPONSE_CODE, &http_status);
  out.text = transfer.text;
  out.usage = transfer.usage;
  out.finish_reason = transfer.finish_reason;
  log::Get("llm")->debug("llm request endpoint={} stream={} curl={} http_status={} bytes={}",
                         display_url_, streaming, static_cast<int>(performed), http_status,
                         transfer.received);

  // What went wrong, if anything: the transfer, then the status, then the answer.
  const std::string detail = curl_error[0] != '\0' ? curl_error : curl_easy_strerror(performed);
  if (!transfer.chunk_error.empty()) return fail(FailureKind::kBadAnswer, transfer.chunk_error);
  if (performed != CURLE_OK) {
    if (transfer.overflowed) {
      return fail(FailureKind::kBadAnswer,
                  fmt::format("the answer is larger than the {} bytes accepted",
                              options_.max_response_bytes));
    }
    if (performed == CURLE_OPERATION_TIMEDOUT) {
      curl_off_t connect_us = 0;
      curl_easy_getinfo(easy.get(), CURLINFO_CONNECT_TIME_T, &connect_us);
      return fail(FailureKind::kTimeout,
                  connect_us == 0 ? fmt::format("timed out after {} ms while connecting",
                                                options_.connect_timeout.count())
                                  : fmt::format("timed out after {} ms waiting for the answer",
                                                options_.timeout.count()));
    }
    if (transfer.as_stream) return fail(FailureKind::kCutStream, "the stream broke: " + detail);
    if (performed == CURLE_COULDNT_CONNECT) {
      long os_errno = 0;
      curl_easy_getinfo(easy.get(), CURLINFO_OS_ERRNO, &os_errno);
      return fail(FailureKind::kConnect,
                  os_errno == ECONNREFUSED
                      ? "connection refused; is the model server running on that port?"
                      : "could not connect: " + detail);
    }
    if (performed == CURLE_COULDNT_RESOLVE_HOST || performed == CURLE_COULDNT_RESOLVE_PROXY ||
        performed == CURLE_GOT_NOTHING) {
      return fail(FailureKind::kConnect, detail);
    }
    return fail(FailureKind::kBadAnswer, "transfer failed: " + detail);
  }
  if (http_status < 200 || http_status > 299) {
    const std::string message = ServerMessage(transfer.raw, secrets);
    const std::string what =
        fmt::format("HTTP {}{}{}", http_status, message.empty() ? "" : ": ", message);
    if (http_status == 429) return fail(FailureKind::kRateLimited, what);
    if (http_status >= 500) return fail(FailureKind::kServer, what);
    if (http_status == 401 || http_status == 403) {
      return fail(FailureKind::kHttp, what + " (check llm.api_key)");
    }
    return fail(FailureKind::kHttp, what);
  }
  if (transfer.as_stream) {
    if (!transfer.done) {
      return fail(FailureKind::kCutStream, "the stream ended without data: [DONE]");
    }
  } else {
    // Asked for no stream, or the server answered one JSON document anyway.
    if (streaming && transfer.raw.empty()) {
      return fail(FailureKind::kCutStream, "the answer ended before its first byte");
    }
    if (Status parsed =
            protocol::ParseAnswer(transfer.raw, &out.text, &out.usage, &out.finish_reason);
        !parsed.ok()) {
      return fail(FailureKind::kBadAnswer, parsed.message());
    }
    if (streaming && !out.text.empty()) on_text(out.text);
  }
  out.status = Status::Ok();
  out.elapsed = std::chrono::steady_clock::now() - started;
  return out;
}

}  // namespace mann::llm
