#include <cctype>
#include <ctime>
#include <string>

#include <boost/json.hpp>
#include <fmt/format.h>

#include <mann/core/utf8.h>
#include <mann/pager/payloads.h>

#include "curl_util.h"

namespace mann::pager {
namespace {

namespace json = boost::json;

// Slack shows a field side by side with the next one when "short"; longer values need a row.
constexpr std::size_t kShortFieldLimit = 40;
// RFC 2045: encoded lines are at most 76 characters, the soft break's '=' included.
constexpr std::size_t kQpLineLimit = 76;

std::string Upper(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// Slack's mrkdwn treats these three as control characters; everything else is literal.
std::string SlackEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

json::object SlackField(std::string_view title, std::string_view value) {
  return json::object{{"title", SlackEscape(title)},
                      {"value", SlackEscape(value)},
                      {"short", value.size() <= kShortFieldLimit}};
}

std::string_view PagerDutySeverity(Level level) {
  // PagerDuty's four severities are ours by name.
  return LevelName(level);
}

bool IsAscii(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

std::string Base64(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += {kAlphabet[(v >> 18) & 63], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63],
            kAlphabet[v & 63]};
  }
  if (i + 1 == bytes.size()) {
    const unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    out += {kAlphabet[(v >> 18) & 63], kAlphabet[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8);
    out += {kAlphabet[(v >> 18) & 63], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63], '='};
  }
  return out;
}

// RFC 2047 encoded words for a non-ASCII header value. Each word holds at most 39 bytes of
// text (52 base64 characters plus "=?UTF-8?B??=": under the 75-character limit, and the
// first line stays within 78 after "Subject: ") and is cut
// on a UTF-8 boundary, since a word must decode to whole characters. Words are joined by
// folding whitespace, which decoders drop between encoded words.
std::string EncodeHeaderWords(std::string_view text) {
  constexpr std::size_t kBytesPerWord = 39;
  std::string out;
  while (!text.empty()) {
    std::string_view chunk = Utf8Prefix(text, kBytesPerWord);
    if (chunk.empty()) chunk = text.substr(0, 1);  // not UTF-8 (cannot happen after repair)
    if (!out.empty()) out += "\r\n ";
    out += "=?UTF-8?B?" + Base64(chunk) + "?=";
    text.remove_prefix(chunk.size());
  }
  return out;
}

// "Thu, 03 Dec 2026 15:28:49 +0000" (RFC 5322 3.3), in English whatever the locale.
std::string RfcDate(std::int64_t epoch_seconds) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t t = static_cast<std::time_t>(epoch_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000", kDays[tm.tm_wday], tm.tm_mday,
                     kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

// Message-ID's left part may hold only atext and dots: anything else in the id becomes '.'.
std::string MessageIdLocal(std::string_view id) {
  std::string out;
  for (char c : id) {
    out.push_back(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ? c : '.');
  }
  return out.empty() ? "notification" : out;
}

std::string DomainOf(std::string_view address) {
  const std::size_t at = address.rfind('@');
  return at == std::string_view::npos ? "localhost" : std::string(address.substr(at + 1));
}

void AppendQpLine(std::string_view line, std::string& out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::size_t column = 0;
  const auto put = [&](std::string_view token) {
    // A soft line break keeps every encoded line within the limit, '=' included.
    if (column + token.size() > kQpLineLimit - 1) {
      out += "=\r\n";
      column = 0;
    }
    out += token;
    column += token.size();
  };
  for (std::size_t i = 0; i < line.size(); ++i) {
    const auto c = static_cast<unsigned char>(line[i]);
    const bool last = i + 1 == line.size();
    // Trailing whitespace would be stripped by relays, so it is encoded (RFC 2045 6.7 rule 3).
    const bool literal = (c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !last);
    if (literal) {
      const char one[1] = {static_cast<char>(c)};
      put(std::string_view(one, 1));
    } else {
      const char encoded[3] = {'=', kHex[c >> 4], kHex[c & 15]};
      put(std::string_view(encoded, 3));
    }
  }
  out += "\r\n";
}

}  // namespace

std::string Headline(const Notification& n) {
  const std::string tag = n.kind == Kind::kResolve ? "RESOLVED" : Upper(LevelName(n.level));
  return fmt::format("[{}] {}", tag, n.title);
}

std::string_view SlackColor(const Notification& n) {
  if (n.kind == Kind::kResolve) return "good";
  switch (n.level) {
    case Level::kInfo:
      return "#439FE0";
    case Level::kWarning:
      return "#FFA500";
    case Level::kError:
      return "#E01E5A";
    case Level::kCritical:
      return "#8B0000";
  }
  return "#439FE0";  // unreachable: every level is handled above
}

json::object SlackPayload(const Notification& n) {
  json::array fields;
  fields.push_back(SlackField("Time", FormatTime(n)));
  fields.push_back(SlackField("Service", n.service));
  for (const auto& [key, value] : n.metadata) fields.push_back(SlackField(key, value));

  const std::string headline = Headline(n);
  json::object attachment{
      {"color", SlackColor(n)},
      {"title", SlackEscape(headline)},
      {"text", SlackEscape(n.message)},
      {"fallback", SlackEscape(n.message.empty() ? headline : headline + ": " + n.message)},
      {"fields", std::move(fields)},
      {"ts", EpochSeconds(n)},
  };
  return json::object{{"attachments", json::array{std::move(attachment)}}};
}

json::object PagerDutyPayload(const Notification& n, std::string_view routing_key) {
  const std::string& dedup_key = n.dedup_key.empty() ? n.id : n.dedup_key;
  if (n.kind == Kind::kResolve) {
    return json::object{
        {"routing_key", routing_key}, {"event_action", "resolve"}, {"dedup_key", dedup_key}};
  }
  json::object details;
  details["message"] = n.message;
  for (const auto& [key, value] : n.metadata) details[key] = value;
  json::object payload{
      {"summary", Utf8Prefix(n.title, kPagerDutySummaryLimit)},
      {"source", n.service},
      {"severity", PagerDutySeverity(n.level)},
      {"timestamp", FormatTime(n)},
      {"custom_details", std::move(details)},
  };
  return json::object{{"routing_key", routing_key},
                      {"event_action", "trigger"},
                      {"dedup_key", dedup_key},
                      {"payload", std::move(payload)}};
}

json::object WebhookPayload(const Notification& n) {
  json::object body = ToJson(n);
  body["event"] = KindName(n.kind);
  return body;
}

Status ValidateEmailAddress(std::string_view address, std::string_view what) {
  const auto invalid = [&](std::string_view why) {
    return InvalidArgumentError(
        fmt::format("{} must be a plain address like alerts@example.com: {}", what, why));
  };
  if (address.empty()) return invalid("it is empty");
  for (char c : address) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return invalid("it holds a space, control or non-ASCII character");
    if (c == '<' || c == '>' || c == ',' || c == ';' || c == '"' || c == '(' || c == ')') {
      return invalid(fmt::format("'{}' is not allowed", c));
    }
  }
  const std::size_t at = address.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == address.size()) {
    return invalid(fmt::format("'{}' has no local part and domain around an '@'", address));
  }
  if (address.substr(0, at).find('@') != std::string_view::npos) {
    return invalid(fmt::format("'{}' has more than one '@'", address));
  }
  return Status::Ok();
}

std::string SanitizeHeaderValue(std::string_view text) {
  // ClipToOneLine squeezes every control character (CR and LF among them) into a single space.
  return ClipToOneLine(text, std::string::npos);
}

std::string EmailSubject(const Notification& n) {
  return SanitizeHeaderValue("[mann] " + Headline(n));
}

std::string EmailMessage(const Notification& n, const EmailAddressing& addressing) {
  // Headers. Addresses were validated; everything else is sanitized or encoded here.
  std::string to;
  for (const std::string& address : addressing.to) {
    if (!to.empty()) to += ", ";
    to += SanitizeHeaderValue(address);
  }
  const std::string subject = EmailSubject(n);
  std::string message;
  message += "From: " + SanitizeHeaderValue(addressing.from) + "\r\n";
  message += "To: " + to + "\r\n";
  message += "Subject: " + (IsAscii(subject) ? subject : EncodeHeaderWords(subject)) + "\r\n";
  message += "Date: " + RfcDate(EpochSeconds(n)) + "\r\n";
  message += "Message-ID: <" + MessageIdLocal(n.id) + "@" +
             SanitizeHeaderValue(DomainOf(addressing.from)) + ">\r\n";
  message += "MIME-Version: 1.0\r\n";
  message += "Content-Type: text/plain; charset=utf-8\r\n";
  message += "Content-Transfer-Encoding: quoted-printable\r\n";
  message += "X-Mann-Kind: " + std::string(KindName(n.kind)) + "\r\n";
  message += "\r\n";

  // Body.
  std::string body;
  body += fmt::format("Level:   {}\n", Upper(LevelName(n.level)));
  body += fmt::format("Kind:    {}\n", KindName(n.kind));
  body += fmt::format("Time:    {}\n", FormatTime(n));
  body += fmt::format("Service: {}\n", n.service);
  if (!n.dedup_key.empty()) body += fmt::format("Alert:   {}\n", n.dedup_key);
  body += "\n";
  if (!n.message.empty()) body += n.message + "\n\n";
  for (const auto& [key, value] : n.metadata) body += fmt::format("{}: {}\n", key, value);
  message += QuotedPrintable(body);
  return message;
}

std::string QuotedPrintable(std::string_view text) {
  std::string out;
  while (!text.empty()) {
    std::size_t end = text.find('\n');
    const bool has_newline = end != std::string_view::npos;
    if (!has_newline) end = text.size();
    std::string_view line = text.substr(0, end);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    AppendQpLine(line, out);
    text.remove_prefix(has_newline ? end + 1 : end);
  }
  return out;
}

}  // namespace mann::pager
