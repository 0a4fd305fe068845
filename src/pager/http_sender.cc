#include <algorithm>
#include <cerrno>
#include <chrono>
#include <ctime>
#include <memory>
#include <string>
#include <utility>

#include <curl/curl.h>
#include <fmt/format.h>

#include <mann/core/log.h>
#include <mann/core/version.h>
#include <mann/pager/http_sender.h>

#include "curl_util.h"

namespace mann::pager {
namespace {

using internal::EasyDeleter;
using internal::SlistDeleter;
using EasyPtr = std::unique_ptr<CURL, EasyDeleter>;
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

// Keeps the first `limit` bytes of the answer and lets the rest pass: receivers' answers are
// short ("ok", a JSON status), and only their start goes into a log line.
struct SnippetSink {
  std::string body;
  std::size_t limit = 0;

  static std::size_t Write(char* data, std::size_t size, std::size_t count, void* user) {
    auto* sink = static_cast<SnippetSink*>(user);
    const std::size_t n = size * count;
    if (sink->body.size() < sink->limit) {
      sink->body.append(data, std::min(n, sink->limit - sink->body.size()));
    }
    return n;
  }
};

// What went wrong with a transfer that ended in `code`, for Delivery::error.
std::string DescribeTransferError(CURL* curl, CURLcode code, std::string_view detail,
                                  const HttpSenderOptions& options) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT: {
      curl_off_t connect_us = 0;
      curl_easy_getinfo(curl, CURLINFO_CONNECT_TIME_T, &connect_us);
      if (connect_us == 0) {
        return fmt::format("timed out after {} ms while connecting",
                           std::min(options.connect_timeout, options.timeout).count());
      }
      return fmt::format("timed out after {} ms waiting for the answer", options.timeout.count());
    }
    case CURLE_COULDNT_CONNECT: {
      long os_errno = 0;
      curl_easy_getinfo(curl, CURLINFO_OS_ERRNO, &os_errno);
      if (os_errno == ECONNREFUSED) return "connection refused";
      return fmt::format("could not connect: {}", detail);
    }
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return fmt::format("DNS lookup failed: {}", detail);
    case CURLE_PEER_FAILED_VERIFICATION:
      return fmt::format("TLS certificate verification failed: {}", detail);
    case CURLE_SSL_CONNECT_ERROR:
      return fmt::format("TLS handshake failed: {}", detail);
    default:
      return fmt::format("transfer failed: {}", detail);
  }
}

bool AllDigits(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string_view Trim(std::string_view text) {
  const std::size_t begin = text.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return {};
  const std::size_t end = text.find_last_not_of(" \t");
  return text.substr(begin, end - begin + 1);
}

}  // namespace

HttpSender::HttpSender(HttpSenderOptions options) : options_(std::move(options)) {}

Status HttpSender::ValidateUrl(std::string_view url, std::string_view what) {
  return internal::ParseUrl(url, what, {"http", "https"}).status();
}

Status HttpSender::Validate() const {
  if (options_.connect_timeout.count() <= 0 || options_.timeout.count() <= 0) {
    return InvalidArgumentError(
        fmt::format("HTTP sender timeouts must be positive, got connect {} ms and total {} ms",
                    options_.connect_timeout.count(), options_.timeout.count()));
  }
  return Status::Ok();
}

Result<Delivery> HttpSender::Post(std::string_view url, std::string_view body,
                                  const HeaderList& headers, std::stop_token stop) const {
  MANN_RETURN_IF_ERROR(Validate());
  MANN_RETURN_IF_ERROR(internal::InitCurl());
  MANN_ASSIGN_OR_RETURN(internal::ParsedUrl parsed,
                        internal::ParseUrl(url, "receiver URL", {"http", "https"}));
  const std::string display = internal::DisplayOf(parsed);

  // Everything that may carry a credential, scrubbed from whatever this returns or logs.
  std::vector<std::string> secrets = options_.secrets;
  for (std::string& s : internal::UrlSecrets(url, parsed)) secrets.push_back(std::move(s));
  for (const auto& [name, value] : headers) secrets.push_back(value);
  const auto error = [&](StatusCode code, std::string_view what) {
    return Status(code, RedactSecrets(fmt::format("POST {}: {}", display, what), secrets));
  };

  // Headers. "Expect:" turns off curl's 100-continue round trip.
  curl_slist* raw_headers = nullptr;
  const std::string user_agent = fmt::format("User-Agent: mann/{}", kVersion);
  for (const char* line : {"Content-Type: application/json", "Expect:", user_agent.c_str()}) {
    raw_headers = curl_slist_append(raw_headers, line);
  }
  SlistPtr header_list(raw_headers);
  if (header_list == nullptr) return error(StatusCode::kInternal, "out of memory building headers");
  for (const auto& [name, value] : headers) {
    if (name.empty() || name.find(':') != std::string::npos ||
        internal::HasControlCharacters(name) || internal::HasControlCharacters(value)) {
      return error(StatusCode::kInvalidArgument,
                   fmt::format("header \"{}\" has an empty or malformed name, or CR/LF in its "
                               "value",
                               ClipToOneLine(name, 64)));
    }
    // Appending to a non-empty list keeps its head, so header_list still owns all of it.
    if (curl_slist_append(header_list.get(), (name + ": " + value).c_str()) == nullptr) {
      return error(StatusCode::kInternal, "out of memory building headers");
    }
  }

  // The request, configured afresh: handles are per call, so concurrent posts share nothing.
  EasyPtr easy(curl_easy_init());
  if (easy == nullptr) return error(StatusCode::kInternal, "curl_easy_init failed");
  CURL* curl = easy.get();
  SnippetSink sink;
  sink.limit = options_.max_snippet_bytes;
  char curl_error[CURL_ERROR_SIZE] = {};
  const std::string url_text(url);
  CURLcode set = internal::SetHttpPostOptions(curl, {.url = url_text.c_str(),
                                                     .body = body,
                                                     .headers = header_list.get(),
                                                     .connect_timeout = options_.connect_timeout,
                                                     .timeout = options_.timeout,
                                                     .error_buffer = curl_error,
                                                     .bypass_proxy = parsed.loopback});
  if (set == CURLE_OK) set = curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &SnippetSink::Write);
  if (set == CURLE_OK) set = curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
  if (set != CURLE_OK) {
    return error(StatusCode::kInternal,
                 fmt::format("cannot configure curl: {}", curl_easy_strerror(set)));
  }

  // The transfer.
  if (stop.stop_requested()) return error(StatusCode::kUnavailable, "cancelled");
  const auto started = std::chrono::steady_clock::now();
  const CURLcode performed = internal::PerformInterruptibly(curl, stop);
  const auto elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - started)
                              .count();
  if (performed == CURLE_ABORTED_BY_CALLBACK && stop.stop_requested()) {
    return error(StatusCode::kUnavailable, "cancelled");
  }

  // What came back.
  Delivery d;
  long http_status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http_status);
  d.http_status = static_cast<int>(http_status);
  if (performed != CURLE_OK) {
    d.timed_out = performed == CURLE_OPERATION_TIMEDOUT;
    d.error = RedactSecrets(
        DescribeTransferError(curl, performed,
                              curl_error[0] != '\0' ? curl_error : curl_easy_strerror(performed),
                              options_),
        secrets);
  }
  curl_header* retry_after = nullptr;
  if (curl_easy_header(curl, "Retry-After", 0, CURLH_HEADER, -1, &retry_after) == CURLHE_OK &&
      retry_after != nullptr && retry_after->value != nullptr) {
    d.retry_after = ParseRetryAfter(retry_after->value, std::chrono::system_clock::now());
  }
  d.response_snippet =
      ClipToOneLine(RedactSecrets(std::move(sink.body), secrets), options_.max_snippet_bytes);
  log::Get("pager")->debug("POST done url={} curl={} http_status={} ms={}", display,
                           static_cast<int>(performed), d.http_status, elapsed_ms);
  return d;
}

std::string DisplayUrl(std::string_view url) {
  Result<internal::ParsedUrl> parsed =
      internal::ParseUrl(url, "URL", {"http", "https", "smtp", "smtps"});
  return parsed.ok() ? internal::DisplayOf(*parsed) : "(invalid URL)";
}

std::optional<std::chrono::seconds> ParseRetryAfter(std::string_view value,
                                                    std::chrono::system_clock::time_point now) {
  value = Trim(value);
  if (AllDigits(value)) {
    // More than a day is as good as forever here, and the cap keeps the parse from overflowing.
    constexpr std::int64_t kCap = 86'400;
    std::int64_t seconds = 0;
    for (char c : value) {
      seconds = std::min<std::int64_t>(kCap, seconds * 10 + (c - '0'));
    }
    return std::chrono::seconds(seconds);
  }
  // An HTTP date always names a day or month; curl_getdate reads all three RFC 9110 forms.
  const bool has_letter = std::any_of(value.begin(), value.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
  });
  if (!has_letter) return std::nullopt;
  const std::string text(value);
  const std::time_t at = curl_getdate(text.c_str(), nullptr);
  if (at == static_cast<std::time_t>(-1)) return std::nullopt;
  const auto delay = std::chrono::system_clock::from_time_t(at) - now;
  return std::max(std::chrono::seconds(0), std::chrono::ceil<std::chrono::seconds>(delay));
}

}  // namespace mann::pager
