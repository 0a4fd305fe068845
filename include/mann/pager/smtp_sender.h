// SmtpSender: hands one RFC 5322 message to a mail server over libcurl, always encrypted.
//
//   smtp://host:587   plain connection upgraded with STARTTLS, which is REQUIRED: a server that
//                     does not offer it, or refuses it, fails the send before MAIL FROM; the
//                     message is never sent in clear text (CURLOPT_USE_SSL = CURLUSESSL_ALL)
//   smtps://host:465  TLS from the first byte (implicit TLS)
//
// The server's certificate is verified against the system's CAs, or `ca_file` when set (a
// private CA, a test certificate); `verify_peer = false` turns verification off and should
// never be used outside tests. AUTH runs when a username is set. The envelope (MAIL FROM and
// RCPT TO) comes from SmtpEnvelope, independently of the From/To headers.
//
// Send() reports like HttpSender::Post: a Delivery whose smtp_reply is the last reply code and
// whose `error` says what failed. Failures retrying cannot fix are flagged `permanent`: no
// STARTTLS, a login refused, a 5xx reply to MAIL FROM, RCPT TO or DATA. 4xx replies and
// transport errors are transient.
//
// Secrets: the password (and HttpSenderOptions-style extra secrets) are scrubbed from every
// message and log line.
//
// Thread-safety: immutable; Send() may run concurrently.
#pragma once

#include <chrono>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include <mann/core/status.h>
#include <mann/pager/http_sender.h>

namespace mann::pager {

struct SmtpOptions {
  std::string url;       // smtp://host[:port] (STARTTLS, default port 25) or smtps://host[:port]
  std::string username;  // empty: no AUTH
  std::string password;
  std::string ca_file;      // PEM bundle to verify the server with; empty: the system's
  bool verify_peer = true;  // also verifies the host name
  std::string helo_domain;  // name sent in EHLO; empty: curl's default
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds timeout{30000};  // the whole session
};

struct SmtpEnvelope {
  std::string mail_from;             // plain address
  std::vector<std::string> rcpt_to;  // at least one
};

class SmtpSender {
 public:
  explicit SmtpSender(SmtpOptions options);

  // InvalidArgument naming the option unless url is smtp:// or smtps:// with a host, timeouts
  // are positive, a ca_file that is set exists, and username/password hold no control
  // characters.
  Status Validate() const;

  // Sends `message` (CRLF line ends) to everyone in `envelope`. A Status error only when no
  // attempt could be made: InvalidArgument for bad options or envelope addresses, Unavailable
  // "cancelled" when `stop` was requested, Internal when curl cannot be set up.
  Result<Delivery> Send(std::string_view message, const SmtpEnvelope& envelope,
                        std::stop_token stop = {}) const;

  const SmtpOptions& options() const { return options_; }

 private:
  SmtpOptions options_;
};

}  // namespace mann::pager
