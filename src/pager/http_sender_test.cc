#include <chrono>
#include <stop_token>
#include <string>
#include <thread>

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mann/pager/http_sender.h>

#include "testing_receiver.h"

namespace mann::pager {
namespace {

using test_support::Answer;
using test_support::Receiver;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

HttpSender FastSender(std::chrono::milliseconds timeout = 2000ms) {
  HttpSenderOptions options;
  options.connect_timeout = 1000ms;
  options.timeout = timeout;
  return HttpSender(options);
}

// A loopback port bound but not listening: connecting is refused at once.
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot bind a loopback port";
    }
    port_ = ntohs(addr.sin_port);
  }
  ~RefusingPort() {
    if (fd_ >= 0) ::close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST(HttpSender, PostsTheBodyAsJsonWithTheGivenHeaders) {
  Receiver receiver;
  receiver.Script({Answer::Status(202, R"({"status":"success"})")});
  Result<Delivery> d = FastSender().Post(receiver.Url("/v2/enqueue"), R"({"a":1})",
                                         {{"Authorization", "Token abc123"}});
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(d->succeeded());
  EXPECT_EQ(d->http_status, 202);
  EXPECT_EQ(d->response_snippet, R"({"status":"success"})");
  EXPECT_EQ(d->error, "");

  const auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].method, "POST");
  EXPECT_EQ(requests[0].target, "/v2/enqueue");
  EXPECT_EQ(requests[0].body, R"({"a":1})");
  EXPECT_EQ(requests[0].Header("content-type"), "application/json");
  EXPECT_EQ(requests[0].Header("authorization"), "Token abc123");
  EXPECT_THAT(requests[0].Header("user-agent"), HasSubstr("mann/"));
  EXPECT_EQ(requests[0].Header("expect"), "");
}

TEST(HttpSender, ReportsErrorStatusesWithoutJudgingThem) {
  Receiver receiver;
  receiver.Script({Answer::Status(400, "invalid_payload"), Answer::Status(500, "boom")});
  HttpSender sender = FastSender();
  Result<Delivery> bad = sender.Post(receiver.Url(), "{}", {});
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(bad->succeeded());
  EXPECT_EQ(bad->http_status, 400);
  EXPECT_EQ(bad->response_snippet, "invalid_payload");
  EXPECT_EQ(bad->error, "") << "an answer is not a transport error";
  Result<Delivery> broken = sender.Post(receiver.Url(), "{}", {});
  ASSERT_TRUE(broken.ok());
  EXPECT_EQ(broken->http_status, 500);
}

TEST(HttpSender, ReadsRetryAfterInSecondsOrAsADate) {
  Receiver receiver;
  Answer date = Answer::Status(503);
  date.headers.emplace_back("Retry-After", "Fri, 31 Dec 2100 23:59:59 GMT");
  receiver.Script({Answer::TooManyRequests("7"), date, Answer::TooManyRequests("soon")});
  HttpSender sender = FastSender();
  Result<Delivery> seconds = sender.Post(receiver.Url(), "{}", {});
  ASSERT_TRUE(seconds.ok());
  EXPECT_EQ(seconds->http_status, 429);
  EXPECT_EQ(seconds->retry_after, std::chrono::seconds(7));
  Result<Delivery> dated = sender.Post(receiver.Url(), "{}", {});
  ASSERT_TRUE(dated.ok());
  ASSERT_TRUE(dated->retry_after.has_value());
  EXPECT_GT(*dated->retry_after, std::chrono::hours(24 * 365 * 50));
  Result<Delivery> garbage = sender.Post(receiver.Url(), "{}", {});
  ASSERT_TRUE(garbage.ok());
  EXPECT_EQ(garbage->retry_after, std::nullopt);
}

TEST(ParseRetryAfter, TakesDelaySecondsAndTheThreeHttpDateForms) {
  const auto now = std::chrono::system_clock::from_time_t(784111777);  // Sun, 06 Nov 1994 08:49:37
  EXPECT_EQ(ParseRetryAfter("120", now), std::chrono::seconds(120));
  EXPECT_EQ(ParseRetryAfter(" 0 ", now), std::chrono::seconds(0));
  EXPECT_EQ(ParseRetryAfter("99999999999999999999", now), std::chrono::seconds(86'400));
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:50:37 GMT", now), std::chrono::seconds(60));
  EXPECT_EQ(ParseRetryAfter("Sunday, 06-Nov-94 08:50:37 GMT", now), std::chrono::seconds(60));
  EXPECT_EQ(ParseRetryAfter("Sun Nov  6 08:50:37 1994", now), std::chrono::seconds(60));
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:00:00 GMT", now), std::chrono::seconds(0))
      << "a date in the past means now";
  EXPECT_EQ(ParseRetryAfter("", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("-5", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("1.5", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("later please", now), std::nullopt);
}

TEST(HttpSender, StalledReceiverTimesOutWithinTheBound) {
  Receiver receiver;
  receiver.Script({Answer::Stall()});
  const auto start = std::chrono::steady_clock::now();
  Result<Delivery> d = FastSender(300ms).Post(receiver.Url(), "{}", {});
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(d->timed_out);
  EXPECT_FALSE(d->succeeded());
  EXPECT_EQ(d->http_status, 0);
  EXPECT_THAT(d->error, HasSubstr("timed out after 300 ms waiting for the answer"));
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 1500ms);
}

TEST(HttpSender, RefusedConnectionIsATransportError) {
  RefusingPort port;
  Result<Delivery> d =
      FastSender().Post("http://127.0.0.1:" + std::to_string(port.port()) + "/hook", "{}", {});
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->error, "connection refused");
  EXPECT_FALSE(d->timed_out);
}

TEST(HttpSender, StopTokenAbandonsATransferAtOnce) {
  Receiver receiver;
  receiver.Script({Answer::Stall()});
  std::stop_source stop;
  std::thread stopper([&] {
    receiver.WaitForRequests(1, 2000ms);
    stop.request_stop();
  });
  const auto start = std::chrono::steady_clock::now();
  Result<Delivery> d = FastSender(10'000ms).Post(receiver.Url(), "{}", {}, stop.get_token());
  const auto took = std::chrono::steady_clock::now() - start;
  stopper.join();
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(d.status().message(), HasSubstr("cancelled"));
  EXPECT_LT(took, 1000ms) << "the 10 s timeout was not waited out";
}

TEST(HttpSender, BadUrlsAndHeadersAreInvalidArgumentWithoutTheUrlInTheMessage) {
  HttpSender sender = FastSender();
  for (const char* url : {"", "ftp://example.com/x", "http://", "not a url",
                          "https://hooks.example.com/T0/B0/SECRETTOKEN\r\n"}) {
    Result<Delivery> d = sender.Post(url, "{}", {});
    ASSERT_FALSE(d.ok()) << url;
    EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument) << url;
    EXPECT_THAT(d.status().message(), Not(HasSubstr("SECRETTOKEN")));
  }
  Receiver receiver;
  Result<Delivery> d = sender.Post(receiver.Url(), "{}", {{"X-Bad", "a\r\nInjected: 1"}});
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(receiver.request_count(), 0u);
}

TEST(HttpSender, SecretsAreScrubbedFromAnswersAndErrors) {
  Receiver receiver;
  // A receiver that echoes what it was sent, as some error pages do.
  receiver.Script({Answer::Status(400, "bad key Token s3cr3t-h3ader for /hook/T0/B0/urltoken42")});
  HttpSenderOptions options;
  options.timeout = 2000ms;
  options.secrets = {"extra-secret-value"};
  HttpSender sender(options);
  Result<Delivery> d = sender.Post(receiver.Url("/hook/T0/B0/urltoken42"), "{}",
                                   {{"Authorization", "Token s3cr3t-h3ader"}});
  ASSERT_TRUE(d.ok());
  EXPECT_THAT(d->response_snippet, Not(HasSubstr("s3cr3t-h3ader")));
  EXPECT_THAT(d->response_snippet, Not(HasSubstr("urltoken42")));
  EXPECT_THAT(d->response_snippet, HasSubstr("[redacted]"));

  RefusingPort port;
  const std::string url = "http://user:pa55word@127.0.0.1:" + std::to_string(port.port()) +
                          "/x?token=extra-secret-value";
  Result<Delivery> refused = sender.Post(url, "{}", {});
  ASSERT_TRUE(refused.ok());
  EXPECT_THAT(refused->error, Not(HasSubstr("pa55word")));
  EXPECT_THAT(refused->error, Not(HasSubstr("extra-secret-value")));
}

TEST(DisplayUrl, KeepsSchemeHostAndPortOnly) {
  EXPECT_EQ(DisplayUrl("https://hooks.slack.com/services/T0/B0/XXXX"),
            "https://hooks.slack.com/...");
  EXPECT_EQ(DisplayUrl("http://user:pw@127.0.0.1:8080/?key=1"), "http://127.0.0.1:8080/...");
  EXPECT_EQ(DisplayUrl("https://events.pagerduty.com"), "https://events.pagerduty.com");
  EXPECT_EQ(DisplayUrl("smtp://mail.example.com:587"), "smtp://mail.example.com:587");
  EXPECT_EQ(DisplayUrl("::"), "(invalid URL)");
}

}  // namespace
}  // namespace mann::pager
