// HttpSender: POSTs one JSON body to a receiver (Slack, PagerDuty, a webhook) over libcurl and
// reports what came back, without judging it: deciding what to retry is the pager's job.
//
//   HttpSender sender({.connect_timeout = 5s, .timeout = 10s});
//   MANN_ASSIGN_OR_RETURN(Delivery d, sender.Post(url, body, {{"X-Source", "mann"}}));
//   if (d.succeeded()) ...
//
// Every request has a connect timeout and a total timeout; redirects are not followed; a
// loopback receiver is never reached through a proxy. A transfer can be cancelled through the
// std::stop_token: it stops within milliseconds (curl_multi_poll is woken), so Pager::Stop()
// does not wait out a stalled receiver.
//
// Secrets: the URL (a Slack webhook URL is a credential), its parts, the values of the headers
// passed in and HttpSenderOptions::secrets are scrubbed from every message and log line this
// produces, including receiver text that echoes them. URLs are shown as DisplayUrl() gives them.
//
// Thread-safety: immutable; Post() may run concurrently (each call has its own curl handles).
#pragma once

#include <chrono>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <mann/core/status.h>

namespace mann::pager {

// What one attempt produced: the receiver's answer, or the transport error that prevented one.
struct Delivery {
  int http_status = 0;  // the HTTP status; 0 when no answer came
  int smtp_reply = 0;   // SmtpSender: the last SMTP reply code (250 on success); 0 when none
  // From Retry-After (seconds, or an HTTP date turned into seconds from now).
  std::optional<std::chrono::seconds> retry_after;
  std::string error;             // transport or protocol failure; empty when it succeeded
  std::string response_snippet;  // start of the receiver's answer, one line, scrubbed
  bool timed_out = false;        // the connect or total timeout fired
  bool permanent = false;        // retrying cannot help (e.g. the mail server refuses STARTTLS)

  // HTTP: a 2xx answer. SMTP: the message was accepted.
  bool succeeded() const {
    return error.empty() &&
           ((http_status >= 200 && http_status < 300) || (smtp_reply >= 200 && smtp_reply < 300));
  }
};

struct HttpSenderOptions {
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds timeout{10000};  // the whole request, connection included
  std::size_t max_snippet_bytes = 300;       // of the answer kept in Delivery::response_snippet
  std::vector<std::string> secrets;          // scrubbed in addition to the URL and headers
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

class HttpSender {
 public:
  explicit HttpSender(HttpSenderOptions options = {});

  // InvalidArgument (naming the URL as DisplayUrl shows it) unless `url` is http:// or https://
  // with a host; also unless timeouts are positive.
  static Status ValidateUrl(std::string_view url, std::string_view what);
  Status Validate() const;

  // POSTs `body` with Content-Type: application/json and `headers` (names and values must hold
  // no CR or LF). Returns a Delivery for every attempt that reached the network, whatever the
  // outcome; a Status error only when none could be made: InvalidArgument for a bad URL or
  // header, Unavailable "cancelled" when `stop` was requested, Internal when curl cannot be set
  // up.
  Result<Delivery> Post(std::string_view url, std::string_view body, const HeaderList& headers,
                        std::stop_token stop = {}) const;

  const HttpSenderOptions& options() const { return options_; }

 private:
  HttpSenderOptions options_;
};

// "https://hooks.slack.com/..." : scheme, host and port only, since paths and queries of
// webhook URLs carry tokens. An unparsable URL shows as "(invalid URL)".
std::string DisplayUrl(std::string_view url);

// Retry-After (RFC 9110 10.2.3): delay-seconds ("120") or an HTTP date, turned into the delay
// from `now` (0 when the date has passed). std::nullopt when the value is neither.
std::optional<std::chrono::seconds> ParseRetryAfter(std::string_view value,
                                                    std::chrono::system_clock::time_point now);

}  // namespace mann::pager
