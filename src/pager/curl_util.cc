#include "curl_util.h"

#include <algorithm>
#include <cctype>
#include <memory>
#include <string>
#include <utility>

#include <fmt/format.h>

#include <mann/core/utf8.h>

namespace mann::pager::internal {
namespace {

using UrlPtr = std::unique_ptr<CURLU, decltype(&curl_url_cleanup)>;

std::string UrlPart(CURLU* url, CURLUPart part) {
  char* value = nullptr;
  if (curl_url_get(url, part, &value, 0) != CURLUE_OK || value == nullptr) return {};
  std::string copy(value);
  curl_free(value);
  return copy;
}

}  // namespace

CURLcode SetHttpPostOptions(CURL* easy, const HttpPost& post) {
  CURLcode set = CURLE_OK;
  const auto option = [&](CURLoption name, auto value) {
    if (set == CURLE_OK) set = curl_easy_setopt(easy, name, value);
  };
  option(CURLOPT_URL, post.url);
  option(CURLOPT_PROTOCOLS_STR, "http,https");
  option(CURLOPT_NOSIGNAL, 1L);
  option(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(post.connect_timeout.count()));
  option(CURLOPT_TIMEOUT_MS, static_cast<long>(post.timeout.count()));
  option(CURLOPT_POST, 1L);
  option(CURLOPT_POSTFIELDS, post.body.data());
  option(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(post.body.size()));
  option(CURLOPT_HTTPHEADER, post.headers);
  option(CURLOPT_ERRORBUFFER, post.error_buffer);
  if (post.bypass_proxy) option(CURLOPT_PROXY, "");
  return set;
}

Status InitCurl() {
  static const CURLcode code = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (code != CURLE_OK) {
    return InternalError(fmt::format("curl_global_init failed: {}", curl_easy_strerror(code)));
  }
  return Status::Ok();
}

CURLcode PerformInterruptibly(CURL* easy, std::stop_token stop) {
  CURLM* multi = curl_multi_init();
  if (multi == nullptr) return CURLE_OUT_OF_MEMORY;
  if (curl_multi_add_handle(multi, easy) != CURLM_OK) {
    curl_multi_cleanup(multi);
    return CURLE_FAILED_INIT;
  }

  CURLcode result = CURLE_OK;
  {
    // Destroyed before the multi handle: its destructor waits for a wakeup running elsewhere.
    std::stop_callback wake(stop, [multi] { curl_multi_wakeup(multi); });
    for (;;) {
      int running = 0;
      if (curl_multi_perform(multi, &running) != CURLM_OK) {
        result = CURLE_FAILED_INIT;
        break;
      }
      if (running == 0) {
        int left = 0;
        CURLMsg* msg = nullptr;
        result = CURLE_FAILED_INIT;  // replaced by the transfer's own result below
        while ((msg = curl_multi_info_read(multi, &left)) != nullptr) {
          if (msg->msg == CURLMSG_DONE && msg->easy_handle == easy) result = msg->data.result;
        }
        break;
      }
      if (stop.stop_requested()) {
        result = CURLE_ABORTED_BY_CALLBACK;
        break;
      }
      // The timeout only bounds a missed wakeup; curl's own timers end the wait when due.
      if (curl_multi_poll(multi, nullptr, 0, 1000, nullptr) != CURLM_OK) {
        result = CURLE_FAILED_INIT;
        break;
      }
    }
  }
  curl_multi_remove_handle(multi, easy);
  curl_multi_cleanup(multi);
  return result;
}

Result<ParsedUrl> ParseUrl(std::string_view url, std::string_view what,
                           const std::vector<std::string_view>& schemes) {
  std::string allowed;
  for (std::string_view s : schemes)
    allowed += fmt::format("{}{}://", allowed.empty() ? "" : " or ", s);
  const auto invalid = [&](std::string_view why) {
    return InvalidArgumentError(
        fmt::format("{} must be a {} URL with a host: {}", what, allowed, why));
  };
  if (url.empty()) return invalid("it is empty");
  if (HasControlCharacters(url)) return invalid("it holds control characters");
  UrlPtr handle(curl_url(), &curl_url_cleanup);
  if (handle == nullptr) return InternalError("pager: curl_url failed (out of memory?)");
  const std::string text(url);
  const CURLUcode parsed = curl_url_set(handle.get(), CURLUPART_URL, text.c_str(), 0);
  if (parsed != CURLUE_OK) return invalid(curl_url_strerror(parsed));

  ParsedUrl out;
  out.scheme = UrlPart(handle.get(), CURLUPART_SCHEME);
  std::transform(out.scheme.begin(), out.scheme.end(), out.scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (std::find(schemes.begin(), schemes.end(), out.scheme) == schemes.end()) {
    return invalid(fmt::format("the scheme is {}", out.scheme));
  }
  out.host = UrlPart(handle.get(), CURLUPART_HOST);
  if (out.host.empty()) return invalid("there is no host");
  out.port = UrlPart(handle.get(), CURLUPART_PORT);
  out.user = UrlPart(handle.get(), CURLUPART_USER);
  out.password = UrlPart(handle.get(), CURLUPART_PASSWORD);
  out.path = UrlPart(handle.get(), CURLUPART_PATH);
  out.query = UrlPart(handle.get(), CURLUPART_QUERY);
  out.loopback = out.host == "localhost" || out.host.starts_with("127.") || out.host == "[::1]";
  return out;
}

std::string DisplayOf(const ParsedUrl& url) {
  std::string out = url.scheme + "://" + url.host;
  if (!url.port.empty()) out += ":" + url.port;
  if ((!url.path.empty() && url.path != "/") || !url.query.empty()) out += "/...";
  return out;
}

std::vector<std::string> UrlSecrets(std::string_view url, const ParsedUrl& parsed) {
  std::vector<std::string> secrets = {std::string(url)};
  for (const std::string* part : {&parsed.password, &parsed.path, &parsed.query}) {
    if (!part->empty()) secrets.push_back(*part);
  }
  return secrets;
}

bool HasControlCharacters(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
  });
}

}  // namespace mann::pager::internal
