// Payloads: what each channel is sent for a notification, one pure function per receiver.
//
//   Slack (incoming webhook)   SlackPayload      {"attachments": [{color, title, text, fields,
//   ts}]} PagerDuty (Events API v2)  PagerDutyPayload  {routing_key, event_action, dedup_key,
//   payload} generic webhook            WebhookPayload    the notification's JSON plus "event"
//   email (RFC 5322)           EmailMessage      headers and a quoted-printable text body
//
// Payloads are built at send time from the stored notification and the channel's settings, so
// secrets (the routing key) are never written to the outbox.
//
// The headline every channel shows is "[WARNING] <title>": the level in capitals, or RESOLVED
// for a resolve. Renotifications and tests look like triggers; the title says what they are.
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

#include <mann/core/status.h>
#include <mann/pager/notification.h>

namespace mann::pager {

// "[WARNING] Memory utilization above 90%", "[RESOLVED] ...".
std::string Headline(const Notification& n);

// Slack's attachment colour: info #439FE0, warning #FFA500, error #E01E5A, critical #8B0000,
// and "good" (green) for any resolve.
std::string_view SlackColor(const Notification& n);

// An incoming-webhook message with one attachment: color, title (the headline), text (the
// message), fallback (headline and message, for notifications that show no attachments), fields
// Time (ISO 8601), Service and one per metadata item (all "short" except long values), and ts
// (epoch seconds). `&`, `<` and `>` are escaped as Slack requires, so text cannot form links or
// mentions.
boost::json::object SlackPayload(const Notification& n);

// PagerDuty's summary limit (characters; we cut at that many bytes on a UTF-8 boundary).
inline constexpr std::size_t kPagerDutySummaryLimit = 1024;

// An Events API v2 event. Trigger, renotify and test send
//   {"routing_key", "event_action": "trigger", "dedup_key", "payload": {"summary" (the title, at
//    most 1024 bytes), "source" (the service), "severity" (the level: critical, error, warning,
//    info), "timestamp" (ISO 8601), "custom_details": {"message": ..., metadata...}}}
// so a renotification updates the open incident rather than opening another. Resolve sends only
// routing_key, event_action "resolve" and dedup_key. An empty dedup_key falls back to the id.
boost::json::object PagerDutyPayload(const Notification& n, std::string_view routing_key);

// ToJson(n) plus "event": the kind's name (trigger, renotify, resolve, test).
boost::json::object WebhookPayload(const Notification& n);

// Who an email is from and to. Addresses are plain `local@domain` (no display names).
struct EmailAddressing {
  std::string from;
  std::vector<std::string> to;
};

// InvalidArgument naming `what` ("email from") unless `address` is a plain ASCII
// `local@domain` with no spaces, control characters, angle brackets, commas or semicolons.
Status ValidateEmailAddress(std::string_view address, std::string_view what);

// Header value text: CR, LF and other control characters become spaces and runs of spaces one,
// so nothing a notification carries can start a header of its own.
std::string SanitizeHeaderValue(std::string_view text);

// "[mann] [WARNING] <title>".
std::string EmailSubject(const Notification& n);

// A complete RFC 5322 message with CRLF line ends: From, To, Subject (RFC 2047 encoded words
// when not ASCII), Date (the notification's time, RFC 5322 form), Message-ID
// (<notification id@from's domain>, stable across retries so a receiver can deduplicate),
// MIME-Version, Content-Type text/plain; charset=utf-8, Content-Transfer-Encoding
// quoted-printable (safe through any relay, no line longer than 76) and X-Mann-Kind (trigger,
// renotify, resolve or test, for mail filters). The body lists level, kind, time, service and
// the alert's dedup_key, then the message, then each metadata item as "key: value".
// REQUIRES: the addresses passed ValidateEmailAddress.
std::string EmailMessage(const Notification& n, const EmailAddressing& addressing);

// Quoted-printable (RFC 2045 6.7) of UTF-8 text; LF and CRLF line ends both become CRLF.
std::string QuotedPrintable(std::string_view text);

}  // namespace mann::pager
