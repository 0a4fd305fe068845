#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spdlog/sinks/base_sink.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mann/core/id.h>
#include <mann/core/log.h>
#include <mann/metrics/registry.h>
#include <mann/pager/pager.h>
#include <mann/store/sqlite_store.h>

#include "testing_receiver.h"

namespace mann::pager {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using store::OutboxDelivery;
using store::OutboxState;
using test_support::Answer;
using test_support::Receiver;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

// Polls `done` every few milliseconds; true as soon as it holds, false after `timeout`.
bool WaitUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout = 3000ms) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return done();
}

// Sends every line of the "pager" logger, at every level, into a string while alive.
class LogCapture {
 public:
  LogCapture() : logger_(log::Get("pager")), sink_(std::make_shared<TextSink>()) {
    saved_sinks_ = logger_->sinks();
    saved_level_ = logger_->level();
    logger_->sinks().push_back(sink_);
    logger_->set_level(spdlog::level::trace);
  }
  ~LogCapture() {
    logger_->sinks() = saved_sinks_;
    logger_->set_level(saved_level_);
  }
  // Safe while the pager's threads log: the text is read under the sink's own lock.
  std::string text() { return sink_->text(); }

 private:
  class TextSink : public spdlog::sinks::base_sink<std::mutex> {
   public:
    std::string text() {
      std::lock_guard lock(mutex_);
      return text_;
    }

   protected:
    void sink_it_(const spdlog::details::log_msg& message) override {
      spdlog::memory_buf_t line;
      formatter_->format(message, line);
      text_.append(line.data(), line.size());
    }
    void flush_() override {}

   private:
    std::string text_;  // guarded by mutex_
  };

  std::shared_ptr<spdlog::logger> logger_;
  std::shared_ptr<TextSink> sink_;
  std::vector<spdlog::sink_ptr> saved_sinks_;
  spdlog::level::level_enum saved_level_;
};

std::string MakeTempDir() {
  std::string pattern = ::testing::TempDir() + "mann_pager_XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
  return pattern;
}

Notification Alert(std::string title = "Memory utilization above 90%",
                   Level level = Level::kWarning) {
  Notification n;
  n.dedup_key = "memory_utilization";
  n.kind = Kind::kTrigger;
  n.level = level;
  n.title = std::move(title);
  n.message = "default is at 93% of memory_size.";
  n.metadata = {{"namespace", "default"}};
  return n;
}

ChannelConfig Webhook(std::string name, std::string url) {
  ChannelConfig c;
  c.name = std::move(name);
  c.kind = ChannelKind::kWebhook;
  c.url = std::move(url);
  return c;
}

// Tiny delays, so a test with retries runs in milliseconds.
DeliveryPolicy FastPolicy() {
  DeliveryPolicy p;
  p.max_attempts = 8;
  p.initial_backoff = 10ms;
  p.max_backoff = 40ms;
  p.request_timeout = 1000ms;
  p.connect_timeout = 500ms;
  p.poll_interval = 20ms;
  p.seed = 42;
  return p;
}

class PagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    OpenStore();
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void OpenStore() {
    store::SqliteOptions o;
    o.path = (fs::path(dir_) / "mann.db").string();
    auto opened = store::SqliteStore::Open(o);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(opened).value();
  }

  PagerOptions Options(std::vector<ChannelConfig> channels, DeliveryPolicy policy = FastPolicy()) {
    PagerOptions o;
    o.channels = std::move(channels);
    o.policy = policy;
    o.service = "mann@test";
    o.registry = &registry_;
    if (use_fake_clock_) o.clock = &clock_;
    return o;
  }

  std::unique_ptr<Pager> MustCreate(PagerOptions options) {
    auto pager = Pager::Create(std::move(options), *store_);
    EXPECT_TRUE(pager.ok()) << pager.status().ToString();
    return pager.ok() ? std::move(pager).value() : nullptr;
  }

  std::unique_ptr<Pager> MustStart(PagerOptions options) {
    auto pager = MustCreate(std::move(options));
    if (pager != nullptr) {
      Status s = pager->Start();
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
    return pager;
  }

  std::vector<OutboxDelivery> Rows() {
    auto rows = store_->RecentDeliveries(100);
    EXPECT_TRUE(rows.ok()) << rows.status().ToString();
    return rows.ok() ? *rows : std::vector<OutboxDelivery>{};
  }

  // The single outbox row; a test failure when there is not exactly one.
  OutboxDelivery OnlyRow() {
    std::vector<OutboxDelivery> rows = Rows();
    EXPECT_EQ(rows.size(), 1u);
    return rows.empty() ? OutboxDelivery{} : rows.front();
  }

  bool WaitForState(OutboxState state, std::chrono::milliseconds timeout = 3000ms) {
    return WaitUntil(
        [&] {
          std::vector<OutboxDelivery> rows = Rows();
          return !rows.empty() && std::all_of(rows.begin(), rows.end(),
                                              [&](const auto& r) { return r.state == state; });
        },
        timeout);
  }

  // The value of one rendered series, e.g. `mann_pager_queue_depth{channel="ops"}`; -1 when
  // the registry does not render it.
  double Metric(const std::string& series) {
    std::istringstream lines(registry_.Render());
    for (std::string line; std::getline(lines, line);) {
      if (line.starts_with(series + " ")) return std::stod(line.substr(series.size() + 1));
    }
    return -1;
  }
  double Count(const std::string& what, const std::string& channel) {
    return Metric("mann_pager_notifications_" + what + "_total{channel=\"" + channel + "\"}");
  }

  std::string dir_;
  metrics::Registry registry_;
  bool use_fake_clock_ = false;
  FakeClock clock_;
  Receiver receiver_;
  std::unique_ptr<store::SqliteStore> store_;
};

// --- delivery ---

TEST_F(PagerTest, DeliversToEveryHttpChannelWithItsPayload) {
  ChannelConfig slack;
  slack.kind = ChannelKind::kSlack;
  slack.url = receiver_.Url("/services/T0/B0/slacktoken");
  ChannelConfig pagerduty;
  pagerduty.kind = ChannelKind::kPagerDuty;
  pagerduty.url = receiver_.Url("/v2/enqueue");
  pagerduty.routing_key = "R0UT1NGKEY0000000000000000000000";
  ChannelConfig webhook = Webhook("", receiver_.Url("/hook"));
  webhook.headers = {{"Authorization", "Bearer w3bh00k"}};
  auto pager = MustStart(Options({slack, pagerduty, webhook}));

  ASSERT_TRUE(pager->Notify(Alert()).ok());
  ASSERT_TRUE(WaitForState(OutboxState::kDelivered));
  ASSERT_EQ(receiver_.request_count(), 3u);

  std::map<std::string, test_support::Received> by_path;
  for (const auto& r : receiver_.requests()) by_path[r.target] = r;
  const json::value& s = by_path["/services/T0/B0/slacktoken"].json;
  EXPECT_EQ(s.at("attachments").at(0).at("title"), "[WARNING] Memory utilization above 90%");
  const json::value& p = by_path["/v2/enqueue"].json;
  EXPECT_EQ(p.at("routing_key"), "R0UT1NGKEY0000000000000000000000");
  EXPECT_EQ(p.at("event_action"), "trigger");
  EXPECT_EQ(p.at("payload").at("source"), "mann@test");
  const test_support::Received& w = by_path["/hook"];
  EXPECT_EQ(w.json.at("event"), "trigger");
  EXPECT_EQ(w.json.at("title"), "Memory utilization above 90%");
  EXPECT_EQ(w.Header("authorization"), "Bearer w3bh00k");
  EXPECT_EQ(w.Header("x-mann-notification-id"), w.json.at("id").as_string().c_str());
  EXPECT_TRUE(IsUuid(w.Header("x-mann-notification-id")));

  for (const char* channel : {"slack", "pagerduty", "webhook"}) {
    EXPECT_EQ(Count("sent", channel), 1) << channel;
    EXPECT_EQ(Count("retried", channel), 0) << channel;
  }
}

TEST_F(PagerTest, TransientFailuresAreRetriedUntilExactlyOneDelivery) {
  receiver_.Script({Answer::Status(500), Answer::Status(502), Answer::Status(503)});
  auto pager = MustStart(Options({Webhook("ops", receiver_.Url())}));
  ASSERT_TRUE(pager->Notify(Alert()).ok());

  ASSERT_TRUE(WaitForState(OutboxState::kDelivered));
  std::this_thread::sleep_for(100ms);  // time enough for a stray extra attempt to show
  const auto requests = receiver_.requests();
  ASSERT_EQ(requests.size(), 4u);
  for (const auto& r : requests) {
    EXPECT_EQ(r.body, requests[0].body) << "every attempt sends the same notification";
    EXPECT_EQ(r.Header("x-mann-notification-id"), requests[0].Header("x-mann-notification-id"));
  }
  const OutboxDelivery row = OnlyRow();
  EXPECT_EQ(row.attempts, 4);
  EXPECT_EQ(row.last_status, 200);
  EXPECT_EQ(row.last_error, "");
  EXPECT_EQ(Count("retried", "ops"), 3);
  EXPECT_EQ(Count("sent", "ops"), 1);
  EXPECT_EQ(Count("dead_lettered", "ops"), 0);
  EXPECT_EQ(Metric("mann_pager_queue_depth{channel=\"ops\"}"), 0);
}

TEST_F(PagerTest, ClientErrorIsFailedAndNeverRetried) {
  receiver_.Script({}, Answer::Status(400, "invalid_payload"));
  LogCapture logs;
  auto pager = MustStart(Options({Webhook("ops", receiver_.Url())}));
  ASSERT_TRUE(pager->Notify(Alert()).ok());

  ASSERT_TRUE(WaitForState(OutboxState::kFailed));
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(receiver_.request_count(), 1u);
  const OutboxDelivery row = OnlyRow();
  EXPECT_EQ(row.attempts, 1);
  EXPECT_EQ(row.last_status, 400);
  EXPECT_EQ(row.last_error, "HTTP 400: invalid_payload");
  EXPECT_EQ(Count("failed", "ops"), 1);
  EXPECT_EQ(Count("retried", "ops"), 0);
  EXPECT_THAT(logs.text(), HasSubstr("notification refused, not retried channel=ops"));
}

TEST_F(PagerTest, TooManyRequestsWaitsForRetryAfter) {
  use_fake_clock_ = true;
  receiver_.Script({Answer::TooManyRequests("3")});
  auto pager = MustStart(Options({Webhook("ops", receiver_.Url())}));
  ASSERT_TRUE(pager->Notify(Alert()).ok());

  ASSERT_TRUE(WaitUntil([&] { return OnlyRow().attempts == 1; }));
  const OutboxDelivery waiting = OnlyRow();
  EXPECT_EQ(waiting.state, OutboxState::kPending);
  EXPECT_EQ(waiting.last_status, 429);
  EXPECT_EQ(waiting.next_attempt_ms, waiting.updated_ms + 3000) << "Retry-After: 3";

  // The fake clock has not moved: nothing is due, whatever the poll interval.
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(receiver_.request_count(), 1u);
  clock_.AdvanceMs(2999);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(receiver_.request_count(), 1u) << "retried before Retry-After had passed";
  clock_.AdvanceMs(1);
  ASSERT_TRUE(receiver_.WaitForRequests(2, 1000ms));
  ASSERT_TRUE(WaitForState(OutboxState::kDelivered));
  EXPECT_EQ(Count("retried", "ops"), 1);
}

TEST_F(PagerTest, TooManyRequestsWithoutRetryAfterBacksOff) {
  use_fake_clock_ = true;
  receiver_.Script({Answer::Status(429)});
  DeliveryPolicy policy = FastPolicy();
  policy.jitter = Jitter::kNone;
  policy.initial_backoff = 5000ms;
  policy.max_backoff = 60'000ms;
  auto pager = MustStart(Options({Webhook("ops", receiver_.Url())}, policy));
  ASSERT_TRUE(pager->Notify(Alert()).ok());

  ASSERT_TRUE(WaitUntil([&] { return OnlyRow().attempts == 1; }));
  const OutboxDelivery waiting = OnlyRow();
  EXPECT_EQ(waiting.next_attempt_ms, waiting.updated_ms + 5000);
  clock_.AdvanceMs(5000);
  ASSERT_TRUE(WaitForState(OutboxState::kDelivered));
}

TEST_F(PagerTest, StalledReceiverTimesOutAndIsRetried) {
  receiver_.Script({Answer::Stall()});
  DeliveryPolicy policy = FastPolicy();
  policy.request_timeout = 300ms;
  auto pager = MustStart(Options({Webhook("ops", receiver_.Url())}, policy));
  ASSERT_TRUE(pager->Notify(Alert()).ok());

  ASSERT_TRUE(WaitForState(OutboxState::kDelivered));
  const auto requests = receiver_.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_GE(requests[1].at - requests[0].at, 300ms) << "the first attempt waited its timeout";
  EXPECT_EQ(OnlyRow().attempts, 2);
  EXPECT_EQ(Count("retried", "ops"), 1);
}

TEST_F(PagerTest, GivesUpAfterMaxAttemptsAndDeadLetters) {
  receiver_.Script({}, Answer::Status(500, "still broken"));
  DeliveryPolicy policy = FastPolicy();
  policy.max_attempts = 3;
  LogCapture logs;
  auto pager = MustStart(Options({Webhook("ops", receiver_.Url())}, policy));
  ASSERT_TRUE(pager->Notify(Alert()).ok());

  ASSERT_TRUE(WaitForState(OutboxState::kDead));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(receiver_.request_count(), 3u);
  const OutboxDelivery row = OnlyRow();
  EXPECT_EQ(row.attempts, 3);
  EXPECT_EQ(row.last_error, "HTTP 500: still broken");
  EXPECT_EQ(Count("retried", "ops"), 2);
  EXPECT_EQ(Count("dead_lettered", "ops"), 1);
  EXPECT_THAT(logs.text(),
              AllOf(HasSubstr("[error]"), HasSubstr("notification dead-lettered channel=ops")));

  const DeliveryHealth health = pager->Health();
  EXPECT_FALSE(health.ok);
  EXPECT_THAT(health.reason, HasSubstr("channel ops: 1 notification(s) dead-lettered"));
}

TEST_F(PagerTest, SlowChannelDoesNotHoldUpTheOthers) {
  Receiver slow;
  slow.Script({}, Answer::Stall());
  DeliveryPolicy policy = FastPolicy();
  policy.request_timeout = 3000ms;
  auto pager =
      MustStart(Options({Webhook("slow", slow.Url()), Webhook("fast", receiver_.Url())}, policy));
  ASSERT_TRUE(pager->Notify(Alert()).ok());
  ASSERT_TRUE(slow.WaitForRequests(1, 1000ms));
  // Well before the slow request's timeout, the fast channel has delivered.
  EXPECT_TRUE(WaitUntil([&] { return Count("sent", "fast") == 1; }, 2000ms))
      << "the fast channel waited for the slow one";
  EXPECT_EQ(slow.request_count(), 1u);
}

// --- durability and the lifecycle ---

TEST_F(PagerTest, NotifyOnlyWritesTheOutboxOneRowPerTakingChannel) {
  ChannelConfig critical_only = Webhook("critical", receiver_.Url("/critical"));
  critical_only.min_level = Level::kCritical;
  ChannelConfig disabled = Webhook("disabled", receiver_.Url("/disabled"));
  disabled.enabled = false;
  auto pager = MustCreate(
      Options({Webhook("ops", receiver_.Url()), critical_only, disabled}));  // not started

  ASSERT_TRUE(pager->Notify(Alert("warning only", Level::kWarning)).ok());
  ASSERT_TRUE(pager->Notify(Alert("critical one", Level::kCritical)).ok());
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(receiver_.request_count(), 0u) << "Notify must not touch the network";

  std::map<std::string, int> per_channel;
  for (const OutboxDelivery& row : Rows()) {
    ++per_channel[row.channel];
    EXPECT_EQ(row.state, OutboxState::kPending);
    EXPECT_EQ(row.attempts, 0);
    Result<Notification> n = FromJsonText(row.notification);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    EXPECT_TRUE(IsUuid(n->id));
    EXPECT_EQ(row.notification_id, n->id);
    EXPECT_EQ(n->service, "mann@test");
    EXPECT_NE(n->time.time_since_epoch().count(), 0);
  }
  EXPECT_EQ(per_channel, (std::map<std::string, int>{{"critical", 1}, {"ops", 2}}));
  EXPECT_EQ(Metric("mann_pager_queue_depth{channel=\"ops\"}"), 2);
  EXPECT_EQ(Metric("mann_pager_queue_depth{channel=\"disabled\"}"), 0);
}

TEST_F(PagerTest, NotifyRejectsInvalidNotificationsAndWritesNothing) {
  auto pager = MustCreate(Options({Webhook("ops", receiver_.Url())}));
  Notification untitled = Alert("");
  Status s = pager->Notify(untitled);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("title"));
  Notification twice = Alert();
  twice.id = "01938a6e-7c00-7abc-8def-0123456789ab";
  ASSERT_TRUE(pager->Notify(twice).ok());
  EXPECT_EQ(pager->Notify(twice).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(Rows().size(), 1u);
}

TEST_F(PagerTest, RowsLeftByAPagerThatNeverSentAreDeliveredAfterRestart) {
  {
    auto first = MustCreate(Options({Webhook("ops", receiver_.Url())}));
    ASSERT_TRUE(first->Notify(Alert("one")).ok());
    ASSERT_TRUE(first->Notify(Alert("two")).ok());
  }  // destroyed without ever sending
  store_.reset();
  OpenStore();  // a new process would open the file afresh

  auto second = MustStart(Options({Webhook("ops", receiver_.Url())}));
  ASSERT_TRUE(WaitForState(OutboxState::kDelivered));
  std::vector<std::string> titles;
  for (const auto& r : receiver_.requests()) titles.emplace_back(r.json.at("title").as_string());
  std::sort(titles.begin(), titles.end());
  EXPECT_EQ(titles, (std::vector<std::string>{"one", "two"}));
}

TEST_F(PagerTest, StopAbandonsAStalledTransferPromptlyAndTheRowResumesLater) {
  receiver_.Script({Answer::Stall()});
  DeliveryPolicy policy = FastPolicy();
  policy.request_timeout = 10'000ms;
  auto pager = MustStart(Options({Webhook("ops", receiver_.Url())}, policy));
  ASSERT_TRUE(pager->Notify(Alert()).ok());
  ASSERT_TRUE(receiver_.WaitForRequests(1, 1000ms));

  const auto start = std::chrono::steady_clock::now();
  pager->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1000ms);
  EXPECT_FALSE(pager->running());
  const OutboxDelivery row = OnlyRow();
  EXPECT_EQ(row.state, OutboxState::kPending);
  EXPECT_EQ(row.attempts, 0) << "an abandoned transfer is not an attempt";
  EXPECT_EQ(pager->Start().code(), StatusCode::kFailedPrecondition);

  pager.reset();
  auto next = MustStart(Options({Webhook("ops", receiver_.Url())}));
  ASSERT_TRUE(WaitForState(OutboxState::kDelivered));
  EXPECT_EQ(receiver_.request_count(), 2u);
}

TEST_F(PagerTest, StartDeadLettersRowsOfChannelsNoLongerConfigured) {
  {
    auto old = MustCreate(Options({Webhook("retired", receiver_.Url())}));
    ASSERT_TRUE(old->Notify(Alert()).ok());
  }
  LogCapture logs;
  auto pager = MustStart(Options({Webhook("ops", receiver_.Url())}));
  const OutboxDelivery row = OnlyRow();
  EXPECT_EQ(row.state, OutboxState::kDead);
  EXPECT_THAT(row.last_error, HasSubstr("channel 'retired' is not configured"));
  EXPECT_THAT(logs.text(), HasSubstr("channel=retired count=1"));
  EXPECT_EQ(receiver_.request_count(), 0u);
}

TEST_F(PagerTest, StartTwiceIsFailedPrecondition) {
  auto pager = MustStart(Options({Webhook("ops", receiver_.Url())}));
  EXPECT_TRUE(pager->running());
  EXPECT_EQ(pager->Start().code(), StatusCode::kFailedPrecondition);
}

// --- SendNow, health, secrets ---

TEST_F(PagerTest, SendNowReportsTheReceiversAnswerAndBypassesTheOutbox) {
  receiver_.Script({Answer::Status(400, "invalid_payload")});
  auto pager = MustCreate(Options({Webhook("ops", receiver_.Url())}));
  Notification test = Alert("Test notification from mann", Level::kInfo);
  test.kind = Kind::kTest;
  Result<Delivery> d = pager->SendNow("ops", test);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->http_status, 400);
  EXPECT_EQ(d->response_snippet, "invalid_payload");
  EXPECT_TRUE(Rows().empty());
  ASSERT_EQ(receiver_.request_count(), 1u);
  EXPECT_EQ(receiver_.requests()[0].json.at("event"), "test");

  Result<Delivery> by_kind = pager->SendNow(ChannelKind::kWebhook, test);
  ASSERT_TRUE(by_kind.ok());
  EXPECT_EQ(by_kind->http_status, 200);
  EXPECT_EQ(pager->SendNow("nope", test).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(pager->SendNow(ChannelKind::kSlack, test).status().code(), StatusCode::kNotFound);
}

TEST_F(PagerTest, HealthIsDegradedWhileARowWaitsTooLong) {
  use_fake_clock_ = true;
  DeliveryPolicy policy = FastPolicy();
  policy.stale_after = 60'000ms;
  auto pager = MustCreate(Options({Webhook("ops", receiver_.Url())}, policy));
  ASSERT_TRUE(pager->Notify(Alert()).ok());
  EXPECT_TRUE(pager->Health().ok);
  clock_.AdvanceMs(60'001);
  const DeliveryHealth health = pager->Health();
  EXPECT_FALSE(health.ok);
  EXPECT_THAT(health.reason,
              HasSubstr("channel ops: 1 notification(s) pending, the oldest for 60 s"));
}

TEST_F(PagerTest, SecretsStayOutOfTheOutboxTheLogsAndTheErrors) {
  const std::string key = "R0UT1NGKEYs3cr3t0000000000000000";
  // A receiver that echoes the request, as some error pages do.
  receiver_.Script({}, Answer::Status(400, "bad event " + key + " at /v2/enqueue/urltoken42"));
  ChannelConfig pagerduty;
  pagerduty.kind = ChannelKind::kPagerDuty;
  pagerduty.url = receiver_.Url("/v2/enqueue/urltoken42");
  pagerduty.routing_key = key;
  LogCapture logs;
  auto pager = MustStart(Options({pagerduty}));
  ASSERT_TRUE(pager->Notify(Alert()).ok());
  ASSERT_TRUE(WaitForState(OutboxState::kFailed));

  const OutboxDelivery row = OnlyRow();
  EXPECT_THAT(row.notification, Not(HasSubstr(key)));
  EXPECT_THAT(row.last_error, Not(HasSubstr(key)));
  EXPECT_THAT(row.last_error, Not(HasSubstr("urltoken42")));
  EXPECT_THAT(row.last_error, HasSubstr("[redacted]"));
  // The refusal is logged just after the row is marked failed, on the delivery thread.
  EXPECT_TRUE(WaitUntil([&] {
    return logs.text().find("notification refused") != std::string::npos;
  })) << logs.text();
  const std::string log_text = logs.text();
  EXPECT_THAT(log_text, Not(HasSubstr(key)));
  EXPECT_THAT(log_text, Not(HasSubstr("urltoken42")));
  EXPECT_THAT(registry_.Render(), Not(HasSubstr(key)));

  ChannelConfig bad = pagerduty;
  bad.url = "ftp://example.com/" + key;
  Status s = Pager::Validate(Options({bad}));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), Not(HasSubstr(key)));
}

// --- configuration ---

TEST(PagerValidate, NamesTheChannelAndTheField) {
  const auto options = [](ChannelConfig c) {
    PagerOptions o;
    o.channels = {std::move(c)};
    return o;
  };
  ChannelConfig slack;
  slack.kind = ChannelKind::kSlack;
  ChannelConfig pagerduty;
  pagerduty.kind = ChannelKind::kPagerDuty;
  ChannelConfig bad_name = Webhook("Ops Team", "http://127.0.0.1:1/x");
  ChannelConfig bad_header = Webhook("ops", "http://127.0.0.1:1/x");
  bad_header.headers = {{"X-Token", "a\r\nInjected: yes"}};
  ChannelConfig email;
  email.kind = ChannelKind::kEmail;
  email.smtp.url = "smtp://mail.example.com:587";
  email.email.from = "alerts@example.com";
  ChannelConfig email_bad_from = email;
  email_bad_from.email.to = {"oncall@example.com"};
  email_bad_from.email.from = "Alerts <alerts@example.com>";
  ChannelConfig email_bad_url = email_bad_from;
  email_bad_url.email.from = "alerts@example.com";
  email_bad_url.smtp.url = "http://mail.example.com";

  const std::pair<ChannelConfig, std::string> cases[] = {
      {slack, "pager channel 'slack' (slack): url"},
      {pagerduty, "pager channel 'pagerduty' (pagerduty): routing_key must be set"},
      {bad_name, "pager channel name 'Ops Team'"},
      {bad_header, "pager channel 'ops' (webhook): header 'X-Token'"},
      {email, "email to needs at least one address"},
      {email_bad_from, "email from must be a plain address"},
      {email_bad_url, "SMTP option url"},
  };
  for (const auto& [channel, fragment] : cases) {
    Status s = Pager::Validate(options(channel));
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << fragment;
    EXPECT_THAT(s.message(), HasSubstr(fragment));
  }

  PagerOptions twice;
  twice.channels = {Webhook("ops", "http://127.0.0.1:1/a"), Webhook("ops", "http://127.0.0.1:1/b")};
  EXPECT_THAT(Pager::Validate(twice).message(), HasSubstr("'ops' is used twice"));

  PagerOptions good;
  ChannelConfig ok_email = email_bad_url;
  ok_email.smtp.url = "smtps://mail.example.com";
  pagerduty.routing_key = "key";  // an empty url means PagerDuty's own
  good.channels = {Webhook("ops", "https://example.com/hook"), pagerduty, ok_email};
  EXPECT_TRUE(Pager::Validate(good).ok()) << Pager::Validate(good).ToString();
}

TEST(PagerValidate, PolicyFieldsMustBeSane) {
  PagerOptions o;
  o.policy.max_attempts = 0;
  EXPECT_THAT(Pager::Validate(o).message(), HasSubstr("max_attempts"));
  o.policy = DeliveryPolicy{};
  o.policy.initial_backoff = 10'000ms;
  o.policy.max_backoff = 1000ms;
  EXPECT_THAT(Pager::Validate(o).message(), HasSubstr("must not exceed max_backoff"));
  o.policy = DeliveryPolicy{};
  o.policy.request_timeout = 0ms;
  EXPECT_THAT(Pager::Validate(o).message(), HasSubstr("request_timeout"));
  EXPECT_TRUE(Pager::Validate(PagerOptions{}).ok());
}

TEST(Backoff, DoublesUpToTheCapAndFullJitterScalesIt) {
  DeliveryPolicy p;
  p.initial_backoff = 1000ms;
  p.max_backoff = 5000ms;
  p.jitter = Jitter::kNone;
  const std::pair<int, std::chrono::milliseconds> exact[] = {
      {1, 1000ms}, {2, 2000ms}, {3, 4000ms}, {4, 5000ms}, {60, 5000ms}};
  for (const auto& [retry, delay] : exact) EXPECT_EQ(Backoff(p, retry, 0.5), delay) << retry;
  p.jitter = Jitter::kFull;
  EXPECT_EQ(Backoff(p, 2, 0.5), 1000ms);
  EXPECT_EQ(Backoff(p, 3, 0.0), 0ms);
  EXPECT_EQ(Backoff(p, 1000, 0.999), 4995ms);
}

TEST(ChannelKind, NamesRoundTrip) {
  for (ChannelKind kind :
       {ChannelKind::kSlack, ChannelKind::kPagerDuty, ChannelKind::kEmail, ChannelKind::kWebhook}) {
    EXPECT_EQ(ParseChannelKind(ChannelKindName(kind)), kind);
  }
  EXPECT_EQ(ParseChannelKind("sms"), std::nullopt);
}

// A notification survives the process being killed right after Notify() returned. The child
// has the only pager and store; the parent runs no thread of its own while it forks.
TEST(PagerDurability, NotificationSurvivesSigkillRightAfterNotify) {
  const std::string dir = MakeTempDir();
  const std::string path = (fs::path(dir) / "mann.db").string();
  constexpr const char* kUrl = "http://127.0.0.1:9/never-used-by-the-child";
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(ready[0]);
    store::SqliteOptions o;
    o.path = path;
    auto st = store::SqliteStore::Open(o);
    metrics::Registry registry;
    bool ok = st.ok();
    if (ok) {
      PagerOptions options;
      options.channels = {Webhook("ops", kUrl)};
      options.registry = &registry;
      auto pager = Pager::Create(options, **st);
      ok = pager.ok() && (*pager)->Notify(Alert("survivor")).ok();
    }
    const char byte = ok ? '1' : '0';
    if (write(ready[1], &byte, 1) != 1) _exit(2);
    for (;;) pause();
  }
  close(ready[1]);
  char byte = 0;
  const ssize_t n = read(ready[0], &byte, 1);
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  close(ready[0]);
  ASSERT_EQ(n, 1);
  ASSERT_EQ(byte, '1');

  Receiver receiver;
  store::SqliteOptions o;
  o.path = path;
  auto st = store::SqliteStore::Open(o);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  {
    metrics::Registry registry;
    PagerOptions options;
    options.channels = {Webhook("ops", receiver.Url())};
    options.policy = FastPolicy();
    options.registry = &registry;
    auto pager = Pager::Create(options, **st);
    ASSERT_TRUE(pager.ok()) << pager.status().ToString();
    ASSERT_TRUE((*pager)->Start().ok());
    ASSERT_TRUE(receiver.WaitForRequests(1, 2000ms));
    EXPECT_EQ(receiver.requests()[0].json.at("title"), "survivor");
  }
  st->reset();
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace mann::pager
