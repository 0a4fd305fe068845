// What the pager's HTTP and SMTP senders, the language-model client (src/llm) and the remote
// encoder (src/encode) share: curl's global initialisation, the options of an HTTP POST, one
// interruptible transfer loop, URL parsing, and the text hygiene (secret scrubbing, one-line
// snippets, UTF-8 repair) applied to everything that reaches a log line.
//
// Thread-safety: pure functions, except PerformInterruptibly, which drives one easy handle
// that no other thread may touch meanwhile.
#pragma once

#include <chrono>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include <curl/curl.h>

#include <mann/core/status.h>
#include <mann/core/text_safety.h>

namespace mann::pager::internal {

// Runs curl_global_init exactly once per process; Internal when it fails.
Status InitCurl();

// An HTTP POST as every client of this program sends it.
struct HttpPost {
  const char* url = nullptr;
  std::string_view body;  // must outlive the transfer: curl does not copy it
  curl_slist* headers = nullptr;
  std::chrono::milliseconds connect_timeout{0};
  std::chrono::milliseconds timeout{0};
  char* error_buffer = nullptr;  // CURL_ERROR_SIZE bytes, for curl's own words on a failure
  bool bypass_proxy = false;     // for loopback targets, which a proxy could not reach
};

// Sets on `easy` the options every POST shares: the URL, http and https only, no signals (they
// cannot carry timeouts in a threaded process), both timeouts, the body and headers, the error
// buffer, and no proxy when asked. The caller adds what differs, such as its write callback.
// Returns the first code curl refused an option with, else CURLE_OK.
CURLcode SetHttpPostOptions(CURL* easy, const HttpPost& post);

// Performs the transfer configured on `easy` on a multi handle of its own, so that a stop
// request wakes curl_multi_poll at once and aborts the transfer; returns the transfer's
// CURLcode, or CURLE_ABORTED_BY_CALLBACK when stopped.
CURLcode PerformInterruptibly(CURL* easy, std::stop_token stop);

struct ParsedUrl {
  std::string scheme;  // lower case
  std::string host;
  std::string port;  // empty when the URL gives none
  std::string user, password, path, query;
  bool loopback = false;  // localhost, 127.0.0.0/8 or [::1]: bypass any proxy
};

// Parses with curl's URL parser; InvalidArgument naming `what` when it cannot, the scheme is
// not one of `schemes`, or there is no host. The URL itself is never quoted in the message
// (it may carry a token); DisplayUrl-style text is.
Result<ParsedUrl> ParseUrl(std::string_view url, std::string_view what,
                           const std::vector<std::string_view>& schemes);

// scheme://host[:port], plus "/..." when the URL has a path beyond "/" or a query.
std::string DisplayOf(const ParsedUrl& url);

// The secrets a URL carries: the whole URL, its password, path and query.
std::vector<std::string> UrlSecrets(std::string_view url, const ParsedUrl& parsed);

// True when `text` holds a CR, LF or NUL (or any other control character but tab).
bool HasControlCharacters(std::string_view text);

// RAII for curl handles.
struct EasyDeleter {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};
struct SlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

}  // namespace mann::pager::internal
