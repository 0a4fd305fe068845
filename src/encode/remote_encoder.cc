#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json.hpp>
#include <curl/curl.h>
#include <fmt/format.h>

#include <mann/core/log.h>
#include <mann/core/text_safety.h>
#include <mann/encode/remote_encoder.h>

#include "../pager/curl_util.h"

namespace mann::encode {
namespace {

namespace curl = pager::internal;

namespace json = boost::json;

constexpr std::string_view kProbeText = "dimension probe";
// Bytes of a server's error text quoted in a Status: enough for "model 'x' not found" or a
// validation message, short enough that an HTML error page does not flood a log line.
constexpr std::size_t kMaxServerMessage = 200;
// Idle handles kept for reuse (each may hold an open connection); more concurrent calls than
// this still work, their extra handles are closed afterwards.
constexpr std::size_t kMaxIdleHandles = 8;

// The human-readable part of an error body: OpenAI's {"error": {"message": ...}}, Ollama's
// {"error": "..."}, vLLM's {"message": ...} or FastAPI's {"detail": "..."}; else the raw body.
std::string ServerMessage(std::string_view body, std::string_view secret) {
  boost::system::error_code ec;
  const json::value doc = json::parse(body, ec);
  std::string_view message = body;
  if (!ec && doc.is_object()) {
    const json::object& o = doc.get_object();
    const json::value* error = o.if_contains("error");
    const json::value* text = nullptr;
    if (error != nullptr && error->is_object()) text = error->get_object().if_contains("message");
    if (text == nullptr || !text->is_string()) text = error;
    if (text == nullptr || !text->is_string()) text = o.if_contains("message");
    if (text == nullptr || !text->is_string()) text = o.if_contains("detail");
    if (text != nullptr && text->is_string()) message = text->get_string();
  }
  // Scrubbed before cutting, so a cut cannot leave a recognisable prefix of the key behind.
  return ClipToOneLine(RedactSecrets(std::string(message), {std::string(secret)}),
                       kMaxServerMessage);
}

bool IsBlank(std::string_view text) {
  return text.find_first_not_of(" \t\n\r\f\v") == std::string_view::npos;
}

using UrlPtr = std::unique_ptr<CURLU, decltype(&curl_url_cleanup)>;

// One part of a parsed URL, or an empty string when it is absent.
std::string UrlPart(CURLU* url, CURLUPart part) {
  char* value = nullptr;
  if (curl_url_get(url, part, &value, 0) != CURLUE_OK || value == nullptr) return {};
  std::string copy(value);
  curl_free(value);
  return copy;
}

struct Endpoint {
  std::string url;          // for curl
  std::string display_url;  // without user:password
  bool loopback = false;
};

// "{base_url}/embeddings", built on curl's URL parser so that a trailing '/' or a query string
// in base_url comes out right.
Result<Endpoint> ResolveEndpoint(const std::string& base_url) {
  const auto invalid = [&](std::string_view why) {
    return InvalidArgumentError(fmt::format(
        "remote encoder option base_url must be an http:// or https:// URL with a host, got "
        "'{}': {}",
        base_url, why));
  };
  UrlPtr url(curl_url(), &curl_url_cleanup);
  if (url == nullptr) return InternalError("remote encoder: curl_url failed (out of memory?)");
  const CURLUcode parsed = curl_url_set(url.get(), CURLUPART_URL, base_url.c_str(), 0);
  if (parsed != CURLUE_OK) return invalid(curl_url_strerror(parsed));
  const std::string scheme = UrlPart(url.get(), CURLUPART_SCHEME);
  if (scheme != "http" && scheme != "https") return invalid("the scheme is not http or https");
  const std::string host = UrlPart(url.get(), CURLUPART_HOST);
  if (host.empty()) return invalid("there is no host");

  std::string path = UrlPart(url.get(), CURLUPART_PATH);
  while (!path.empty() && path.back() == '/') path.pop_back();
  path += "/embeddings";
  if (curl_url_set(url.get(), CURLUPART_PATH, path.c_str(), 0) != CURLUE_OK ||
      curl_url_set(url.get(), CURLUPART_FRAGMENT, nullptr, 0) != CURLUE_OK) {
    return invalid("cannot append /embeddings to its path");
  }
  Endpoint endpoint;
  endpoint.url = UrlPart(url.get(), CURLUPART_URL);
  curl_url_set(url.get(), CURLUPART_USER, nullptr, 0);
  curl_url_set(url.get(), CURLUPART_PASSWORD, nullptr, 0);
  curl_url_set(url.get(), CURLUPART_OPTIONS, nullptr, 0);
  endpoint.display_url = UrlPart(url.get(), CURLUPART_URL);
  if (endpoint.url.empty() || endpoint.display_url.empty()) return invalid("cannot rebuild it");
  endpoint.loopback = host == "localhost" || host.starts_with("127.") || host == "[::1]";
  return endpoint;
}

// Collects the response body, refusing to grow past `limit` bytes.
struct BodySink {
  std::string body;
  std::size_t limit = 0;
  bool overflowed = false;

  static std::size_t Write(char* data, std::size_t size, std::size_t count, void* user) {
    auto* sink = static_cast<BodySink*>(user);
    const std::size_t n = size * count;
    if (n > sink->limit - sink->body.size()) {
      sink->overflowed = true;
      return 0;  // curl aborts the transfer with CURLE_WRITE_ERROR
    }
    sink->body.append(data, n);
    return n;
  }
};

using SlistPtr = std::unique_ptr<curl_slist, curl::SlistDeleter>;

// A JSON number as a float; nullopt when it is not a number or does not fit a finite float.
std::optional<float> FiniteFloat(const json::value& v) {
  double d = 0.0;
  if (v.is_double()) {
    d = v.get_double();
  } else if (v.is_int64()) {
    d = static_cast<double>(v.get_int64());
  } else if (v.is_uint64()) {
    d = static_cast<double>(v.get_uint64());
  } else {
    return std::nullopt;
  }
  // Checked before the cast: converting a double outside the float range is undefined.
  if (!std::isfinite(d) || std::abs(d) > std::numeric_limits<float>::max()) return std::nullopt;
  return static_cast<float>(d);
}

}  // namespace

struct RemoteEncoder::Handle {
  CURL* curl = nullptr;
};

void RemoteEncoder::HandleDeleter::operator()(Handle* handle) const {
  curl_easy_cleanup(handle->curl);
  delete handle;
}

Status RemoteEncoder::Validate(const RemoteEncoderOptions& options) {
  if (Status s = ResolveEndpoint(options.base_url).status(); !s.ok()) {
    return Status(s.code(), RedactSecrets(s.message(), {options.api_key}));
  }
  if (options.model.empty()) {
    return InvalidArgumentError("remote encoder option model must not be empty");
  }
  // The key goes into a header line; a CR or LF in it would end the header early.
  for (char c : options.api_key) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      return InvalidArgumentError(
          "remote encoder option api_key holds a control character (a stray newline?)");
    }
  }
  if (options.connect_timeout.count() <= 0) {
    return InvalidArgumentError(
        fmt::format("remote encoder option connect_timeout must be positive, got {} ms",
                    options.connect_timeout.count()));
  }
  if (options.timeout.count() <= 0) {
    return InvalidArgumentError(fmt::format(
        "remote encoder option timeout must be positive, got {} ms", options.timeout.count()));
  }
  if (options.max_batch < 1) {
    return InvalidArgumentError("remote encoder option max_batch must be at least 1, got 0");
  }
  if (options.max_response_bytes < 1) {
    return InvalidArgumentError(
        "remote encoder option max_response_bytes must be at least 1, got 0");
  }
  return Status::Ok();
}

Result<std::unique_ptr<RemoteEncoder>> RemoteEncoder::Create(RemoteEncoderOptions options) {
  MANN_RETURN_IF_ERROR(Validate(options));
  MANN_RETURN_IF_ERROR(curl::InitCurl().WithContext("remote encoder"));
  MANN_ASSIGN_OR_RETURN(Endpoint endpoint, ResolveEndpoint(options.base_url));
  std::unique_ptr<RemoteEncoder> encoder(
      new RemoteEncoder(std::move(options), std::move(endpoint.url),
                        std::move(endpoint.display_url), endpoint.loopback));

  // Probe: one short text tells the dimension, and proves the URL, model and key work.
  MANN_ASSIGN_OR_RETURN(HandlePtr handle, encoder->TakeHandle());
  const std::string_view probe_texts[] = {kProbeText};
  std::vector<Vector> probe;
  const Status probed = encoder->EncodeChunk(*handle, probe_texts, 0, &probe);
  encoder->ReturnHandle(std::move(handle));
  MANN_RETURN_IF_ERROR(probed);

  const std::size_t learned = probe.front().size();
  const RemoteEncoderOptions& o = encoder->options_;
  if (o.dimension != 0 && o.dimension != learned) {
    return encoder->Error(
        StatusCode::kInvalidArgument,
        fmt::format("model '{}' returns {}-dimensional vectors but option dimension is {}; set "
                    "it to {} or to 0 to learn it",
                    o.model, learned, o.dimension, learned));
  }
  encoder->dimension_ = learned;
  log::Get("encode")->info("remote encoder ready endpoint={} model={} dimension={}",
                           encoder->display_url_, o.model, learned);
  return encoder;
}

RemoteEncoder::RemoteEncoder(RemoteEncoderOptions options, std::string url, std::string display_url,
                             bool bypass_proxy)
    : options_(std::move(options)),
      url_(std::move(url)),
      display_url_(std::move(display_url)),
      bypass_proxy_(bypass_proxy) {}

RemoteEncoder::~RemoteEncoder() = default;

std::string RemoteEncoder::Id() const {
  std::string model = options_.model;
  for (char& c : model) {
    const bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-';
    if (!keep) c = '_';
  }
  return fmt::format("remote-{}-d{}", model, dimension_);
}

Status RemoteEncoder::Error(StatusCode code, std::string_view detail) const {
  return Status(code, RedactSecrets(fmt::format("remote encoder POST {}: {}", display_url_, detail),
                                    {options_.api_key}));
}

Result<RemoteEncoder::HandlePtr> RemoteEncoder::TakeHandle() const {
  {
    std::lock_guard lock(pool_mu_);
    if (!idle_handles_.empty()) {
      HandlePtr handle = std::move(idle_handles_.back());
      idle_handles_.pop_back();
      return handle;
    }
  }
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return Error(StatusCode::kResourceExhausted, "curl_easy_init failed");
  return HandlePtr(new Handle{curl});
}

void RemoteEncoder::ReturnHandle(HandlePtr handle) const {
  std::lock_guard lock(pool_mu_);
  if (idle_handles_.size() < kMaxIdleHandles) idle_handles_.push_back(std::move(handle));
}

Status RemoteEncoder::EncodeBatch(std::span<const std::string> texts,
                                  std::vector<Vector>* out) const {
  if (out == nullptr) return InvalidArgumentError("remote encoder: output vector is null");
  out->clear();

  // Blank texts get the zero vector here; the rest are sent, remembering where each belongs.
  std::vector<Vector> vectors(texts.size());
  std::vector<std::string_view> to_send;
  std::vector<std::size_t> positions;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    if (IsBlank(texts[i])) {
      vectors[i].assign(dimension_, 0.0f);
    } else {
      to_send.push_back(texts[i]);
      positions.push_back(i);
    }
  }

  // One handle for the whole call, so its chunks share a connection.
  if (!to_send.empty()) {
    MANN_ASSIGN_OR_RETURN(HandlePtr handle, TakeHandle());
    std::vector<Vector> chunk_vectors;
    for (std::size_t begin = 0; begin < to_send.size(); begin += options_.max_batch) {
      const std::size_t n = std::min(options_.max_batch, to_send.size() - begin);
      const Status s =
          EncodeChunk(*handle, std::span(to_send).subspan(begin, n), dimension_, &chunk_vectors);
      if (!s.ok()) {
        ReturnHandle(std::move(handle));
        if (n == to_send.size()) return s;
        // Positions in the caller's batch, so the text a server choked on can be found.
        return Status(s.code(),
                      fmt::format("{} (the request carrying texts {}-{} of {})", s.message(),
                                  positions[begin], positions[begin + n - 1], texts.size()));
      }
      for (std::size_t i = 0; i < n; ++i) {
        vectors[positions[begin + i]] = std::move(chunk_vectors[i]);
      }
    }
    ReturnHandle(std::move(handle));
  }
  *out = std::move(vectors);
  return Status::Ok();
}

Status RemoteEncoder::EncodeChunk(Handle& handle, std::span<const std::string_view> texts,
                                  std::size_t expected_dimension, std::vector<Vector>* out) const {
  out->clear();
  json::object request;
  request["model"] = options_.model;
  json::array& input = request["input"].emplace_array();
  input.reserve(texts.size());
  for (std::string_view text : texts) input.emplace_back(text);

  MANN_ASSIGN_OR_RETURN(std::string answer, Post(handle, json::serialize(request), texts.size()));
  return ParseAnswer(answer, texts.size(), expected_dimension, out);
}

Result<std::string> RemoteEncoder::Post(Handle& handle, const std::string& body,
                                        std::size_t text_count) const {
  // "Expect:" turns off curl's 100-continue round trip for large bodies.
  curl_slist* raw_headers = nullptr;
  for (const char* line :
       {"Content-Type: application/json", "Accept: application/json", "Expect:"}) {
    raw_headers = curl_slist_append(raw_headers, line);
  }
  if (!options_.api_key.empty()) {
    raw_headers =
        curl_slist_append(raw_headers, ("Authorization: Bearer " + options_.api_key).c_str());
  }
  SlistPtr headers(raw_headers);

  // Options are set afresh on every request; curl_easy_reset keeps the open connection.
  CURL* curl = handle.curl;
  curl_easy_reset(curl);
  BodySink sink;
  sink.limit = options_.max_response_bytes;
  char curl_error[CURL_ERROR_SIZE] = {};
  CURLcode set = curl::SetHttpPostOptions(curl, {.url = url_.c_str(),
                                                 .body = body,
                                                 .headers = headers.get(),
                                                 .connect_timeout = options_.connect_timeout,
                                                 .timeout = options_.timeout,
                                                 .error_buffer = curl_error,
                                                 .bypass_proxy = bypass_proxy_});
  const auto option = [&](CURLoption name, auto value) {
    if (set == CURLE_OK) set = curl_easy_setopt(curl, name, value);
  };
  option(CURLOPT_ACCEPT_ENCODING, "");  // whatever compression this curl supports
  option(CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(sink.limit));
  option(CURLOPT_WRITEFUNCTION, &BodySink::Write);
  option(CURLOPT_WRITEDATA, &sink);
  if (set != CURLE_OK) {
    return Error(StatusCode::kInternal,
                 fmt::format("cannot configure curl: {}", curl_easy_strerror(set)));
  }

  // The transfer.
  const auto started = std::chrono::steady_clock::now();
  const CURLcode performed = curl_easy_perform(curl);
  const auto elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - started)
                              .count();
  long http_status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http_status);
  log::Get("encode")->debug(
      "remote encoder request endpoint={} texts={} curl={} http_status={} bytes={} ms={}",
      display_url_, text_count, static_cast<int>(performed), http_status, sink.body.size(),
      elapsed_ms);

  // What went wrong, if anything.
  if (performed != CURLE_OK) {
    if (performed == CURLE_FILESIZE_EXCEEDED ||
        (performed == CURLE_WRITE_ERROR && sink.overflowed)) {
      return Error(StatusCode::kDataLoss,
                   fmt::format("response is larger than the {} bytes accepted "
                               "(option max_response_bytes)",
                               sink.limit));
    }
    return TransferError(handle, performed,
                         curl_error[0] != '\0' ? curl_error : curl_easy_strerror(performed));
  }
  if (http_status < 200 || http_status > 299) return HttpError(http_status, sink.body);
  return std::move(sink.body);
}

Status RemoteEncoder::TransferError(Handle& handle, int code, std::string_view detail) const {
  switch (static_cast<CURLcode>(code)) {
    case CURLE_OPERATION_TIMEDOUT: {
      curl_off_t connect_us = 0;
      curl_easy_getinfo(handle.curl, CURLINFO_CONNECT_TIME_T, &connect_us);
      if (connect_us == 0) {
        return Error(StatusCode::kUnavailable,
                     fmt::format("timed out after {} ms while connecting",
                                 std::min(options_.connect_timeout, options_.timeout).count()));
      }
      return Error(
          StatusCode::kUnavailable,
          fmt::format("timed out after {} ms waiting for the answer", options_.timeout.count()));
    }
    case CURLE_COULDNT_CONNECT: {
      long os_errno = 0;
      curl_easy_getinfo(handle.curl, CURLINFO_OS_ERRNO, &os_errno);
      if (os_errno == ECONNREFUSED) {
        return Error(StatusCode::kUnavailable,
                     "connection refused; is the embedding server running on that port?");
      }
      return Error(StatusCode::kUnavailable, fmt::format("could not connect: {}", detail));
    }
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return Error(StatusCode::kUnavailable, fmt::format("DNS lookup failed: {}", detail));
    default:
      return Error(StatusCode::kUnavailable, fmt::format("transfer failed: {}", detail));
  }
}

Status RemoteEncoder::HttpError(long http_status, std::string_view body) const {
  const std::string message = ServerMessage(body, options_.api_key);
  const std::string detail =
      fmt::format("HTTP {}{}{}", http_status, message.empty() ? "" : ": ", message);
  if (http_status == 401 || http_status == 403) {
    return Error(StatusCode::kPermissionDenied, detail + " (check the API key)");
  }
  // Overload and server trouble pass; everything else is about this request or configuration.
  if (http_status == 408 || http_status == 429 || http_status >= 500) {
    return Error(StatusCode::kUnavailable, detail);
  }
  if (http_status >= 300 && http_status < 400) {
    return Error(StatusCode::kInvalidArgument,
                 detail + " (redirects are not followed; set base_url to the final address)");
  }
  return Error(StatusCode::kInvalidArgument, detail);
}

Status RemoteEncoder::ParseAnswer(std::string_view answer, std::size_t count,
                                  std::size_t expected_dimension, std::vector<Vector>* out) const {
  // {"data": [{"embedding": [...], "index": i}, ...]}
  const auto bad = [&](std::string_view what) { return Error(StatusCode::kDataLoss, what); };
  boost::system::error_code ec;
  const json::value doc = json::parse(answer, ec);
  if (ec) {
    return bad(fmt::format(
        "response is not JSON ({}); it starts with '{}'", ec.message(),
        ClipToOneLine(RedactSecrets(std::string(answer.substr(0, 200)), {options_.api_key}), 80)));
  }
  const json::value* data = doc.is_object() ? doc.get_object().if_contains("data") : nullptr;
  if (data == nullptr || !data->is_array()) return bad("response has no \"data\" array");
  const json::array& items = data->get_array();
  if (items.size() != count) {
    return bad(fmt::format("response holds {} vectors for {} texts", items.size(), count));
  }

  std::vector<Vector> vectors(count);
  std::vector<bool> seen(count, false);
  std::size_t dimension = expected_dimension;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const json::object* item = items[i].if_object();
    if (item == nullptr) return bad(fmt::format("data[{}] is not an object", i));

    // Where it goes: "index" when present (servers may reorder), else its position. With
    // exactly `count` items and no index repeated, every text gets exactly one vector.
    std::size_t index = i;
    if (const json::value* v = item->if_contains("index"); v != nullptr) {
      if (v->is_int64() && v->get_int64() >= 0) {
        index = static_cast<std::size_t>(v->get_int64());
      } else if (v->is_uint64()) {
        index = static_cast<std::size_t>(
            std::min<std::uint64_t>(v->get_uint64(), std::numeric_limits<std::size_t>::max()));
      } else {
        return bad(fmt::format("data[{}].index is not a non-negative integer", i));
      }
    }
    if (index >= count) {
      return bad(fmt::format("data[{}].index is {}, outside [0, {})", i, index, count));
    }
    if (seen[index]) return bad(fmt::format("data[{}] repeats index {}", i, index));
    seen[index] = true;

    // The numbers.
    const json::value* embedding = item->if_contains("embedding");
    if (embedding == nullptr || !embedding->is_array()) {
      return bad(fmt::format("data[{}].embedding is missing or not an array of numbers", i));
    }
    const json::array& numbers = embedding->get_array();
    if (numbers.empty()) return bad(fmt::format("data[{}].embedding is empty", i));
    if (dimension == 0) dimension = numbers.size();
    if (numbers.size() != dimension) {
      return bad(fmt::format("data[{}].embedding has {} numbers, expected {}", i, numbers.size(),
                             dimension));
    }
    Vector& v = vectors[index];
    v.reserve(dimension);
    for (std::size_t j = 0; j < numbers.size(); ++j) {
      const std::optional<float> x = FiniteFloat(numbers[j]);
      if (!x) return bad(fmt::format("data[{}].embedding[{}] is not a finite float", i, j));
      v.push_back(*x);
    }
    NormalizeL2(v);
  }
  *out = std::move(vectors);
  return Status::Ok();
}

}  // namespace mann::encode
