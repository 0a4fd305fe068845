#include <chrono>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mann/pager/payloads.h>

namespace mann::pager {
namespace {

namespace json = boost::json;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

Notification Sample(Kind kind = Kind::kTrigger, Level level = Level::kWarning) {
  Notification n;
  n.id = "01938a6e-7c00-7abc-8def-0123456789ab";
  n.dedup_key = "memory_utilization:default";
  n.kind = kind;
  n.level = level;
  n.title = "Memory utilization above 90%";
  n.message = "default is at 93% of memory_size.";
  n.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1'764'720'000'123));
  n.service = "mann@db1";
  n.metadata = {{"namespace", "default"}, {"value", "0.93"}};
  return n;
}

// --- the receivers' schemas, as their documentation states them ---

// Slack: a message with attachments, each attachment's fields {title, value, short}.
void ExpectSlackShape(const json::object& message) {
  ASSERT_TRUE(message.contains("attachments"));
  const json::array& attachments = message.at("attachments").as_array();
  ASSERT_EQ(attachments.size(), 1u);
  const json::object& a = attachments[0].as_object();
  for (const char* key : {"color", "title", "text", "fallback"}) {
    ASSERT_TRUE(a.contains(key) && a.at(key).is_string()) << key;
  }
  ASSERT_TRUE(a.at("ts").is_int64());
  for (const json::value& field : a.at("fields").as_array()) {
    const json::object& f = field.as_object();
    EXPECT_TRUE(f.at("title").is_string());
    EXPECT_TRUE(f.at("value").is_string());
    EXPECT_TRUE(f.at("short").is_bool());
    EXPECT_EQ(f.size(), 3u);
  }
}

// PagerDuty Events API v2: routing_key and event_action always; trigger needs payload with
// summary (<= 1024), source and severity in {critical, error, warning, info}; timestamp is
// ISO 8601 and custom_details an object. A resolve carries no payload.
void ExpectPagerDutyShape(const json::object& event) {
  const std::set<std::string> allowed_top = {"routing_key", "event_action", "dedup_key", "payload"};
  for (const auto& item : event) EXPECT_TRUE(allowed_top.contains(item.key())) << item.key();
  ASSERT_TRUE(event.at("routing_key").is_string());
  const std::string action(event.at("event_action").as_string());
  ASSERT_TRUE(action == "trigger" || action == "resolve" || action == "acknowledge") << action;
  if (event.contains("dedup_key")) {
    EXPECT_LE(event.at("dedup_key").as_string().size(), 255u);
  }
  if (action != "trigger") {
    EXPECT_FALSE(event.contains("payload"));
    EXPECT_TRUE(event.contains("dedup_key")) << "resolve needs the incident's dedup_key";
    return;
  }
  const json::object& p = event.at("payload").as_object();
  ASSERT_TRUE(p.at("summary").is_string());
  EXPECT_LE(p.at("summary").as_string().size(), kPagerDutySummaryLimit);
  EXPECT_FALSE(p.at("source").as_string().empty());
  const std::set<std::string> severities = {"critical", "error", "warning", "info"};
  EXPECT_TRUE(severities.contains(std::string(p.at("severity").as_string())));
  EXPECT_TRUE(p.at("custom_details").is_object());
  const std::string timestamp(p.at("timestamp").as_string());
  EXPECT_EQ(timestamp.size(), 24u) << timestamp;
  EXPECT_EQ(timestamp.back(), 'Z');
}

// --- Slack ---

TEST(SlackPayload, CarriesHeadlineTextFieldsAndEpochSeconds) {
  const json::object message = SlackPayload(Sample());
  ExpectSlackShape(message);
  const json::object& a = message.at("attachments").as_array()[0].as_object();
  EXPECT_EQ(a.at("color"), "#FFA500");
  EXPECT_EQ(a.at("title"), "[WARNING] Memory utilization above 90%");
  EXPECT_EQ(a.at("text"), "default is at 93% of memory_size.");
  EXPECT_EQ(a.at("fallback"),
            "[WARNING] Memory utilization above 90%: default is at 93% of memory_size.");
  EXPECT_EQ(a.at("ts"), 1'764'720'000);

  const json::array& fields = a.at("fields").as_array();
  ASSERT_EQ(fields.size(), 4u);
  EXPECT_EQ(fields[0].at("title"), "Time");
  EXPECT_EQ(fields[0].at("value"), "2025-12-03T00:00:00.123Z");
  EXPECT_EQ(fields[0].at("short"), true);
  EXPECT_EQ(fields[1].at("title"), "Service");
  EXPECT_EQ(fields[1].at("value"), "mann@db1");
  EXPECT_EQ(fields[2].at("title"), "namespace");
  EXPECT_EQ(fields[3].at("value"), "0.93");
}

TEST(SlackPayload, ColourFollowsTheLevelAndResolveIsGood) {
  const std::pair<Level, std::string_view> cases[] = {{Level::kInfo, "#439FE0"},
                                                      {Level::kWarning, "#FFA500"},
                                                      {Level::kError, "#E01E5A"},
                                                      {Level::kCritical, "#8B0000"}};
  for (const auto& [level, colour] : cases) {
    EXPECT_EQ(SlackColor(Sample(Kind::kTrigger, level)), colour);
    EXPECT_EQ(SlackColor(Sample(Kind::kResolve, level)), "good");
  }
  const json::object resolved = SlackPayload(Sample(Kind::kResolve, Level::kCritical));
  EXPECT_EQ(resolved.at("attachments").as_array()[0].at("title"),
            "[RESOLVED] Memory utilization above 90%");
}

TEST(SlackPayload, EscapesControlCharactersAndMakesLongFieldsWide) {
  Notification n = Sample();
  n.title = "<!channel> p&l";
  n.message = "see <http://evil|here>";
  n.metadata = {{"query", std::string(60, 'q')}};
  const json::object a = SlackPayload(n).at("attachments").as_array()[0].as_object();
  EXPECT_EQ(a.at("title"), "[WARNING] &lt;!channel&gt; p&amp;l");
  EXPECT_EQ(a.at("text"), "see &lt;http://evil|here&gt;");
  EXPECT_EQ(a.at("fields").as_array()[2].at("short"), false);
}

// --- PagerDuty ---

TEST(PagerDutyPayload, TriggerHasTheEventsV2Shape) {
  const json::object event = PagerDutyPayload(Sample(Kind::kTrigger, Level::kError), "R0KEY");
  ExpectPagerDutyShape(event);
  EXPECT_EQ(event.at("routing_key"), "R0KEY");
  EXPECT_EQ(event.at("event_action"), "trigger");
  EXPECT_EQ(event.at("dedup_key"), "memory_utilization:default");
  const json::object& p = event.at("payload").as_object();
  EXPECT_EQ(p.at("summary"), "Memory utilization above 90%");
  EXPECT_EQ(p.at("source"), "mann@db1");
  EXPECT_EQ(p.at("severity"), "error");
  EXPECT_EQ(p.at("timestamp"), "2025-12-03T00:00:00.123Z");
  const json::object& details = p.at("custom_details").as_object();
  EXPECT_EQ(details.at("message"), "default is at 93% of memory_size.");
  EXPECT_EQ(details.at("namespace"), "default");
  EXPECT_EQ(details.at("value"), "0.93");
}

TEST(PagerDutyPayload, SeverityIsTheLevelName) {
  const std::pair<Level, std::string_view> cases[] = {{Level::kInfo, "info"},
                                                      {Level::kWarning, "warning"},
                                                      {Level::kError, "error"},
                                                      {Level::kCritical, "critical"}};
  for (const auto& [level, severity] : cases) {
    const json::object event = PagerDutyPayload(Sample(Kind::kTrigger, level), "k");
    EXPECT_EQ(event.at("payload").at("severity").as_string(), severity);
  }
}

TEST(PagerDutyPayload, RenotifyAndTestTriggerWithTheSameDedupKey) {
  for (Kind kind : {Kind::kRenotify, Kind::kTest}) {
    const json::object event = PagerDutyPayload(Sample(kind), "k");
    ExpectPagerDutyShape(event);
    EXPECT_EQ(event.at("event_action"), "trigger");
    EXPECT_EQ(event.at("dedup_key"), "memory_utilization:default");
  }
}

TEST(PagerDutyPayload, ResolveSendsOnlyKeyActionAndDedupKey) {
  const json::object event = PagerDutyPayload(Sample(Kind::kResolve), "R0KEY");
  ExpectPagerDutyShape(event);
  EXPECT_EQ(event, (json::object{{"routing_key", "R0KEY"},
                                 {"event_action", "resolve"},
                                 {"dedup_key", "memory_utilization:default"}}));
}

TEST(PagerDutyPayload, SummaryIsCutAt1024BytesOnACharacterBoundary) {
  Notification n = Sample();
  n.title = std::string(1023, 'a') + "\xC3\xA9" + "tail";  // 'é' straddles byte 1024
  const json::object event = PagerDutyPayload(n, "k");
  ExpectPagerDutyShape(event);
  EXPECT_EQ(event.at("payload").at("summary").as_string(), std::string(1023, 'a'));
}

TEST(PagerDutyPayload, EmptyDedupKeyFallsBackToTheId) {
  Notification n = Sample();
  n.dedup_key.clear();
  EXPECT_EQ(PagerDutyPayload(n, "k").at("dedup_key").as_string(), n.id);
}

// --- webhook ---

TEST(WebhookPayload, IsTheNotificationJsonPlusEvent) {
  for (Kind kind : {Kind::kTrigger, Kind::kRenotify, Kind::kResolve, Kind::kTest}) {
    const Notification n = Sample(kind);
    json::object body = WebhookPayload(n);
    EXPECT_EQ(body.at("event").as_string(), KindName(kind));
    body.erase("event");
    EXPECT_EQ(body, ToJson(n));
  }
}

// --- email ---

// The header block of `message`, unfolded, as name -> value.
std::map<std::string, std::string> Headers(const std::string& message) {
  std::map<std::string, std::string> headers;
  const std::size_t end = message.find("\r\n\r\n");
  std::string block = message.substr(0, end);
  std::size_t at = 0;
  std::string last;
  while (at < block.size()) {
    std::size_t eol = block.find("\r\n", at);
    if (eol == std::string::npos) eol = block.size();
    const std::string line = block.substr(at, eol - at);
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      headers[last] += line;  // folded continuation
    } else {
      const std::size_t colon = line.find(": ");
      last = line.substr(0, colon);
      headers[last] = line.substr(colon + 2);
    }
    at = eol + 2;
  }
  return headers;
}

std::string Body(const std::string& message) {
  return message.substr(message.find("\r\n\r\n") + 4);
}

const EmailAddressing kAddressing{"alerts@example.com", {"oncall@example.com", "ops@example.org"}};

TEST(EmailMessage, HasEveryRequiredHeader) {
  const std::string message = EmailMessage(Sample(), kAddressing);
  const auto h = Headers(message);
  EXPECT_EQ(h.at("From"), "alerts@example.com");
  EXPECT_EQ(h.at("To"), "oncall@example.com, ops@example.org");
  EXPECT_EQ(h.at("Subject"), "[mann] [WARNING] Memory utilization above 90%");
  EXPECT_EQ(h.at("Date"), "Wed, 03 Dec 2025 00:00:00 +0000");
  EXPECT_EQ(h.at("Message-ID"), "<01938a6e-7c00-7abc-8def-0123456789ab@example.com>");
  EXPECT_EQ(h.at("MIME-Version"), "1.0");
  EXPECT_EQ(h.at("Content-Type"), "text/plain; charset=utf-8");
  EXPECT_EQ(h.at("Content-Transfer-Encoding"), "quoted-printable");
}

TEST(EmailMessage, LinesEndInCrlfAndStayWithin78Characters) {
  Notification n = Sample();
  n.message = std::string(300, 'x') + "\nsecond line";
  const std::string message = EmailMessage(n, kAddressing);
  std::size_t at = 0;
  while (at < message.size()) {
    const std::size_t eol = message.find("\r\n", at);
    ASSERT_NE(eol, std::string::npos) << "the message ends in CRLF";
    EXPECT_LE(eol - at, 78u) << message.substr(at, eol - at);
    EXPECT_EQ(message.substr(at, eol - at).find('\n'), std::string::npos) << "no bare LF";
    at = eol + 2;
  }
}

TEST(EmailMessage, BodyListsLevelTimeServiceMessageAndMetadata) {
  const std::string body = Body(EmailMessage(Sample(), kAddressing));
  EXPECT_THAT(body, HasSubstr("Level:   WARNING\r\n"));
  EXPECT_THAT(body, HasSubstr("Time:    2025-12-03T00:00:00.123Z\r\n"));
  EXPECT_THAT(body, HasSubstr("Service: mann@db1\r\n"));
  // '=' and '%' are not special in quoted-printable apart from '=' itself.
  EXPECT_THAT(body, HasSubstr("default is at 93% of memory_size.\r\n"));
  EXPECT_THAT(body, HasSubstr("namespace: default\r\n"));
  EXPECT_THAT(body, HasSubstr("value: 0.93\r\n"));
}

TEST(EmailMessage, HeaderInjectionThroughTheTitleIsDefused) {
  Notification n = Sample();
  n.title = "disk full\r\nBcc: attacker@evil.example\r\n\r\nfake body";
  const std::string message = EmailMessage(n, kAddressing);
  const auto h = Headers(message);
  EXPECT_FALSE(h.contains("Bcc"));
  EXPECT_EQ(h.at("Subject"), "[mann] [WARNING] disk full Bcc: attacker@evil.example fake body");
  EXPECT_EQ(SanitizeHeaderValue("a\rb\nc\x01"
                                "d\te"),
            "a b c d e");
}

TEST(EmailMessage, NonAsciiSubjectIsEncodedWords) {
  Notification n = Sample();
  n.title = "Bộ nhớ gần đầy: không gian tên mặc định đã dùng 93% dung lượng";
  const std::string message = EmailMessage(n, kAddressing);
  const std::string subject = Headers(message).at("Subject");
  EXPECT_THAT(subject, StartsWith("=?UTF-8?B?"));
  EXPECT_THAT(subject, Not(HasSubstr("ộ")));
  // Every encoded word is at most 75 characters (RFC 2047 2).
  std::size_t at = 0;
  while ((at = subject.find("=?UTF-8?B?", at)) != std::string::npos) {
    const std::size_t end = subject.find("?=", at + 10);
    ASSERT_NE(end, std::string::npos);
    EXPECT_LE(end + 2 - at, 75u);
    at = end + 2;
  }
}

TEST(EmailMessage, NonAsciiBodyIsQuotedPrintable) {
  Notification n = Sample();
  n.message = "Bộ nhớ = đầy   ";
  const std::string body = Body(EmailMessage(n, kAddressing));
  // UTF-8 bytes and '=' are encoded; trailing spaces are protected from relays that strip them.
  EXPECT_THAT(body, HasSubstr("B=E1=BB=99 nh=E1=BB=9B =3D =C4=91=E1=BA=A7y  =20\r\n"));
}

TEST(QuotedPrintable, FollowsRfc2045) {
  EXPECT_EQ(QuotedPrintable("plain\n"), "plain\r\n");
  EXPECT_EQ(QuotedPrintable("a=b\r\nc"), "a=3Db\r\nc\r\n");
  EXPECT_EQ(QuotedPrintable("tab\tend\t"), "tab\tend=09\r\n");
  EXPECT_EQ(QuotedPrintable("\x01\x7f"), "=01=7F\r\n");
  const std::string long_line = QuotedPrintable(std::string(100, 'z'));
  EXPECT_EQ(long_line, std::string(75, 'z') + "=\r\n" + std::string(25, 'z') + "\r\n");
  // An encoded triple is never split by a soft break.
  const std::string encoded = QuotedPrintable(std::string(74, 'z') + "=");
  EXPECT_EQ(encoded, std::string(74, 'z') + "=\r\n=3D\r\n");
}

TEST(ValidateEmailAddress, AcceptsPlainAddressesOnly) {
  for (const char* good : {"alerts@example.com", "a.b+tag@sub.example.org", "x@localhost"}) {
    EXPECT_TRUE(ValidateEmailAddress(good, "email to").ok()) << good;
  }
  for (const char* bad :
       {"", "no-at-sign", "@example.com", "user@", "a b@example.com", "Ops <ops@example.com>",
        "a@b@c", "ops@example.com\r\nBcc: x@y", "a,b@example.com", "ünï@example.com"}) {
    Status s = ValidateEmailAddress(bad, "email to");
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr("email to")) << bad;
  }
}

TEST(Headline, NamesTheLevelOrResolved) {
  EXPECT_EQ(Headline(Sample(Kind::kTrigger, Level::kCritical)),
            "[CRITICAL] Memory utilization above 90%");
  EXPECT_EQ(Headline(Sample(Kind::kRenotify, Level::kInfo)), "[INFO] Memory utilization above 90%");
  EXPECT_EQ(Headline(Sample(Kind::kResolve, Level::kInfo)),
            "[RESOLVED] Memory utilization above 90%");
  EXPECT_EQ(EmailSubject(Sample(Kind::kTest, Level::kInfo)),
            "[mann] [INFO] Memory utilization above 90%");
}

}  // namespace
}  // namespace mann::pager
