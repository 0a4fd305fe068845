#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>

#include <curl/curl.h>
#include <fmt/format.h>

#include <mann/core/log.h>
#include <mann/pager/payloads.h>
#include <mann/pager/smtp_sender.h>

#include "curl_util.h"

namespace mann::pager {
namespace {

using internal::EasyDeleter;
using internal::SlistDeleter;
using EasyPtr = std::unique_ptr<CURL, EasyDeleter>;
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;
using UrlPtr = std::unique_ptr<CURLU, decltype(&curl_url_cleanup)>;

// Feeds the message to curl's upload.
struct MessageSource {
  std::string_view data;

  static std::size_t Read(char* buffer, std::size_t size, std::size_t count, void* user) {
    auto* source = static_cast<MessageSource*>(user);
    const std::size_t n = std::min(size * count, source->data.size());
    std::memcpy(buffer, source->data.data(), n);
    source->data.remove_prefix(n);
    return n;
  }
};

// The URL curl is given: the configured one with the EHLO domain as its path, which is where
// curl takes that name from.
Result<std::string> CurlUrl(const SmtpOptions& options) {
  if (options.helo_domain.empty()) return options.url;
  UrlPtr url(curl_url(), &curl_url_cleanup);
  if (url == nullptr) return InternalError("pager: curl_url failed (out of memory?)");
  char* text = nullptr;
  if (curl_url_set(url.get(), CURLUPART_URL, options.url.c_str(), 0) != CURLUE_OK ||
      curl_url_set(url.get(), CURLUPART_PATH, ("/" + options.helo_domain).c_str(), 0) !=
          CURLUE_OK ||
      curl_url_get(url.get(), CURLUPART_URL, &text, 0) != CURLUE_OK) {
    return InvalidArgumentError(fmt::format("SMTP helo_domain '{}' does not fit in the URL",
                                            ClipToOneLine(options.helo_domain, 64)));
  }
  std::string out(text);
  curl_free(text);
  return out;
}

}  // namespace

SmtpSender::SmtpSender(SmtpOptions options) : options_(std::move(options)) {}

Status SmtpSender::Validate() const {
  Result<internal::ParsedUrl> url =
      internal::ParseUrl(options_.url, "SMTP option url", {"smtp", "smtps"});
  if (!url.ok())
    return Status(url.status().code(), RedactSecrets(url.status().message(), {options_.password}));
  if (options_.connect_timeout.count() <= 0 || options_.timeout.count() <= 0) {
    return InvalidArgumentError(
        fmt::format("SMTP timeouts must be positive, got connect {} ms and total {} ms",
                    options_.connect_timeout.count(), options_.timeout.count()));
  }
  if (!options_.ca_file.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(options_.ca_file, ec)) {
      return InvalidArgumentError(
          fmt::format("SMTP option ca_file {} is not a readable file; point it at a PEM bundle",
                      options_.ca_file));
    }
  }
  if (internal::HasControlCharacters(options_.username) ||
      internal::HasControlCharacters(options_.password)) {
    return InvalidArgumentError("SMTP username and password must not hold control characters");
  }
  if (internal::HasControlCharacters(options_.helo_domain) ||
      options_.helo_domain.find_first_of(" /?#@") != std::string::npos) {
    return InvalidArgumentError("SMTP option helo_domain must be a host name");
  }
  return Status::Ok();
}

Result<Delivery> SmtpSender::Send(std::string_view message, const SmtpEnvelope& envelope,
                                  std::stop_token stop) const {
  MANN_RETURN_IF_ERROR(Validate());
  MANN_RETURN_IF_ERROR(internal::InitCurl());
  MANN_ASSIGN_OR_RETURN(internal::ParsedUrl parsed,
                        internal::ParseUrl(options_.url, "SMTP option url", {"smtp", "smtps"}));
  MANN_RETURN_IF_ERROR(ValidateEmailAddress(envelope.mail_from, "SMTP envelope sender"));
  if (envelope.rcpt_to.empty()) {
    return InvalidArgumentError("SMTP envelope needs at least one recipient");
  }
  for (const std::string& to : envelope.rcpt_to) {
    MANN_RETURN_IF_ERROR(ValidateEmailAddress(to, "SMTP envelope recipient"));
  }
  const std::string display = internal::DisplayOf(parsed);
  std::vector<std::string> secrets = {options_.password};
  if (!parsed.password.empty()) secrets.push_back(parsed.password);
  const auto error = [&](StatusCode code, std::string_view what) {
    return Status(code, RedactSecrets(fmt::format("SMTP {}: {}", display, what), secrets));
  };
  MANN_ASSIGN_OR_RETURN(const std::string url, CurlUrl(options_));

  SlistPtr recipients;
  for (const std::string& to : envelope.rcpt_to) {
    curl_slist* grown = curl_slist_append(recipients.get(), ("<" + to + ">").c_str());
    if (grown == nullptr) return error(StatusCode::kInternal, "out of memory building RCPT TO");
    if (recipients == nullptr) recipients.reset(grown);
  }

  // The session. STARTTLS is required on smtp:// and TLS is implicit on smtps://; either way
  // curl refuses to go on unencrypted.
  EasyPtr easy(curl_easy_init());
  if (easy == nullptr) return error(StatusCode::kInternal, "curl_easy_init failed");
  CURL* curl = easy.get();
  MessageSource source{message};
  const std::string mail_from = "<" + envelope.mail_from + ">";
  char curl_error[CURL_ERROR_SIZE] = {};
  CURLcode set = CURLE_OK;
  const auto option = [&](CURLoption name, auto value) {
    if (set == CURLE_OK) set = curl_easy_setopt(curl, name, value);
  };
  option(CURLOPT_URL, url.c_str());
  option(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  option(CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_ALL));
  option(CURLOPT_SSL_VERIFYPEER, options_.verify_peer ? 1L : 0L);
  option(CURLOPT_SSL_VERIFYHOST, options_.verify_peer ? 2L : 0L);
  if (!options_.ca_file.empty()) option(CURLOPT_CAINFO, options_.ca_file.c_str());
  if (!options_.username.empty()) {
    option(CURLOPT_USERNAME, options_.username.c_str());
    option(CURLOPT_PASSWORD, options_.password.c_str());
  }
  option(CURLOPT_MAIL_FROM, mail_from.c_str());
  option(CURLOPT_MAIL_RCPT, recipients.get());
  option(CURLOPT_UPLOAD, 1L);
  option(CURLOPT_READFUNCTION, &MessageSource::Read);
  option(CURLOPT_READDATA, &source);
  option(CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(message.size()));
  option(CURLOPT_NOSIGNAL, 1L);
  option(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()));
  option(CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout.count()));
  option(CURLOPT_ERRORBUFFER, curl_error);
  if (parsed.loopback) option(CURLOPT_PROXY, "");
  if (set != CURLE_OK) {
    return error(StatusCode::kInternal,
                 fmt::format("cannot configure curl: {}", curl_easy_strerror(set)));
  }

  if (stop.stop_requested()) return error(StatusCode::kUnavailable, "cancelled");
  const CURLcode performed = internal::PerformInterruptibly(curl, stop);
  if (performed == CURLE_ABORTED_BY_CALLBACK && stop.stop_requested()) {
    return error(StatusCode::kUnavailable, "cancelled");
  }

  // What the server said last, and what it means.
  Delivery d;
  long reply = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply);
  d.smtp_reply = static_cast<int>(reply);
  const std::string detail = curl_error[0] != '\0' ? curl_error : curl_easy_strerror(performed);
  switch (performed) {
    case CURLE_OK:
      if (d.smtp_reply == 0) d.smtp_reply = 250;  // curl reports success only after a 2xx
      break;
    case CURLE_USE_SSL_FAILED:
      d.permanent = true;
      d.error = fmt::format(
          "the server does not offer STARTTLS or refused it ({}); mann never sends mail in "
          "clear text: enable STARTTLS on the server, or use smtps:// for implicit TLS",
          detail);
      break;
    case CURLE_LOGIN_DENIED:
      d.permanent = true;
      d.error = fmt::format("login refused for user '{}' ({}); check username and password",
                            options_.username, detail);
      break;
    case CURLE_OPERATION_TIMEDOUT:
      d.timed_out = true;
      d.error = fmt::format("timed out ({})", detail);
      break;
    case CURLE_PEER_FAILED_VERIFICATION:
      d.error = fmt::format(
          "TLS certificate verification failed: {}; set ca_file to the CA "
          "that signed the server's certificate",
          detail);
      break;
    default:
      // 5xx is the server's final word on this message (RFC 5321 4.2.1); 4xx is transient.
      d.permanent = d.smtp_reply >= 500 && d.smtp_reply < 600;
      d.error = d.smtp_reply != 0 ? fmt::format("server replied {}: {}", d.smtp_reply, detail)
                                  : fmt::format("transfer failed: {}", detail);
  }
  d.error = RedactSecrets(std::move(d.error), secrets);
  log::Get("pager")->debug("SMTP done server={} curl={} reply={}", display,
                           static_cast<int>(performed), d.smtp_reply);
  return d;
}

}  // namespace mann::pager
