#include "monitoring.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <future>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mann/core/clock.h>
#include <mann/metrics/registry.h>
#include <mann/monitor/monitor.h>
#include <mann/pager/pager.h>
#include <mann/runtime/runtime.h>

#include "../core/testing_temp_dir.h"
#include "../pager/testing_receiver.h"
#include "../runtime/testing_runtime.h"

namespace mann::cli {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;
using namespace std::chrono_literals;

constexpr TimestampMs kStartedAt = 1'764'720'000'000;  // 2025-12-03T00:00:00Z

monitor::AlertEvent Event(monitor::AlertEventKind kind) {
  monitor::AlertEvent e;
  e.sequence = 4;
  e.kind = kind;
  e.dedup_key = "memory_utilization:alice";
  e.rule = "memory_utilization";
  e.subject = "alice";
  e.level = monitor::Level::kWarning;
  e.value = 0.93;
  e.threshold = 0.9;
  e.message = "memory utilization 0.93 > 0.9 for 60 s on namespace alice";
  e.summary = "Memory bank of a namespace above 90% of memory_size";
  e.started_at = kStartedAt;
  e.at = kStartedAt + 60'000;
  return e;
}

// ---- Alert events to notifications ------------------------------------------------------------

TEST(NotificationFromAlertEvent, TriggerCarriesTheAlertsIdentityTextAndFigures) {
  const pager::Notification n =
      NotificationFromAlertEvent(Event(monitor::AlertEventKind::kTrigger));
  EXPECT_EQ(n.kind, pager::Kind::kTrigger);
  EXPECT_EQ(n.level, pager::Level::kWarning);
  EXPECT_EQ(n.dedup_key, "memory_utilization:alice");
  EXPECT_EQ(n.title, "Memory bank of a namespace above 90% of memory_size on alice");
  EXPECT_EQ(n.message, "memory utilization 0.93 > 0.9 for 60 s on namespace alice");
  EXPECT_EQ(pager::FormatTime(n), "2025-12-03T00:01:00.000Z");
  EXPECT_THAT(n.metadata, ElementsAre(Pair("rule", "memory_utilization"), Pair("subject", "alice"),
                                      Pair("value", "0.93"), Pair("threshold", "0.9"),
                                      Pair("started_at", "2025-12-03T00:00:00.000Z")));
  EXPECT_TRUE(n.id.empty()) << "the pager fills the id";
  EXPECT_TRUE(n.service.empty()) << "the pager fills the service";
  EXPECT_TRUE(pager::Validate(n).ok()) << pager::Validate(n).ToString();
}

TEST(NotificationFromAlertEvent, RenotifyAndResolveKeepTheDedupKeyAndSayWhatTheyAre) {
  const pager::Notification again =
      NotificationFromAlertEvent(Event(monitor::AlertEventKind::kRenotify));
  EXPECT_EQ(again.kind, pager::Kind::kRenotify);
  EXPECT_EQ(again.dedup_key, "memory_utilization:alice");
  EXPECT_THAT(again.title, HasSubstr("(still firing)"));

  monitor::AlertEvent gone = Event(monitor::AlertEventKind::kResolve);
  gone.value = std::numeric_limits<double>::quiet_NaN();  // the namespace disappeared
  const pager::Notification resolved = NotificationFromAlertEvent(gone);
  EXPECT_EQ(resolved.kind, pager::Kind::kResolve);
  EXPECT_EQ(resolved.dedup_key, "memory_utilization:alice");
  EXPECT_THAT(resolved.title, Not(HasSubstr("still firing")));
  for (const auto& [key, value] : resolved.metadata) EXPECT_NE(key, "value") << "no value to show";
  EXPECT_EQ(pager::Headline(resolved),
            "[RESOLVED] Memory bank of a namespace above 90% of memory_size on alice");
}

TEST(NotificationFromAlertEvent, ProcessWideAlertHasNoSubjectAndFallsBackToTheRuleName) {
  monitor::AlertEvent e = Event(monitor::AlertEventKind::kTrigger);
  e.subject = "";
  e.dedup_key = "disk_full";
  e.rule = "disk_full";
  e.summary = "";
  e.level = monitor::Level::kCritical;
  const pager::Notification n = NotificationFromAlertEvent(e);
  EXPECT_EQ(n.title, "disk_full");
  EXPECT_EQ(n.level, pager::Level::kCritical);
  for (const auto& [key, value] : n.metadata) EXPECT_NE(key, "subject");
}

TEST(NotificationFromAlertEvent, PagesAtTheLevelTheAlertFiredAt) {
  for (const Severity level : kSeverities) {
    monitor::AlertEvent e;
    e.rule = "disk";
    e.level = level;
    EXPECT_EQ(NotificationFromAlertEvent(e).level, level) << SeverityName(level);
  }
}

// With Redis, the gate asks the alert lock: src/cache/alert_lock_test.cc.
TEST(ReplicaNotifyGate, WithoutRedisLetsEveryEventThrough) {
  EXPECT_FALSE(static_cast<bool>(ReplicaNotifyGate(config::DefaultConfig())));
}

// ---- Options from the configuration ------------------------------------------------------------

config::Config Loaded(std::vector<std::pair<std::string, std::string>> overrides) {
  Result<config::LoadedConfig> loaded =
      config::LoadConfig({.env = {{"HOME", "/home/ana"}}, .overrides = std::move(overrides)});
  EXPECT_TRUE(loaded.ok()) << loaded.status().ToString();
  return loaded.ok() ? loaded->config : config::Config{};
}

TEST(PagerOptionsFromConfig, EachChannelSettingMakesOneChannelNamedAfterItsKind) {
  const config::Config c = Loaded({{"pager.json_webhook", "http://127.0.0.1:9/json"},
                                   {"pager.smtp_url", "smtp://mail.example.com:587"},
                                   {"pager.smtp_username", "mann"},
                                   {"pager.smtp_password", "pw"},
                                   {"pager.smtp_from", "mann@example.com"},
                                   {"pager.smtp_to", "ops@example.com, oncall@example.com"},
                                   {"pager.smtp_ca_file", "/etc/ssl/private-ca.pem"},
                                   {"pager.pagerduty_routing_key", "R0UT1NG"},
                                   {"pager.pagerduty_url", "http://127.0.0.1:9/pd"},
                                   {"pager.webhook", "https://hooks.slack.example/T1"},
                                   {"pager.min_level", "error"},
                                   {"pager.max_attempts", "3"},
                                   {"pager.initial_backoff", "2"},
                                   {"pager.max_backoff", "60"},
                                   {"pager.request_timeout", "7"},
                                   {"pager.connect_timeout", "4"}});
  Result<pager::PagerOptions> o = PagerOptionsFromConfig(c);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  ASSERT_EQ(o->channels.size(), 4u);
  std::vector<std::string> names;
  for (const pager::ChannelConfig& ch : o->channels) {
    names.push_back(ch.name);
    EXPECT_EQ(ch.min_level, pager::Level::kError) << ch.name;
    EXPECT_TRUE(ch.enabled);
  }
  EXPECT_THAT(names, ElementsAre("slack", "pagerduty", "email", "webhook"));

  EXPECT_EQ(o->channels[0].kind, pager::ChannelKind::kSlack);
  EXPECT_EQ(o->channels[0].url, "https://hooks.slack.example/T1");
  EXPECT_EQ(o->channels[1].kind, pager::ChannelKind::kPagerDuty);
  EXPECT_EQ(o->channels[1].routing_key, "R0UT1NG");
  EXPECT_EQ(o->channels[1].url, "http://127.0.0.1:9/pd");
  const pager::ChannelConfig& email = o->channels[2];
  EXPECT_EQ(email.kind, pager::ChannelKind::kEmail);
  EXPECT_EQ(email.smtp.url, "smtp://mail.example.com:587");
  EXPECT_EQ(email.smtp.username, "mann");
  EXPECT_EQ(email.smtp.password, "pw");
  EXPECT_EQ(email.smtp.ca_file, "/etc/ssl/private-ca.pem");
  EXPECT_EQ(email.email.from, "mann@example.com");
  EXPECT_THAT(email.email.to, ElementsAre("ops@example.com", "oncall@example.com"));
  EXPECT_EQ(o->channels[3].kind, pager::ChannelKind::kWebhook);
  EXPECT_EQ(o->channels[3].url, "http://127.0.0.1:9/json");

  EXPECT_EQ(o->policy.max_attempts, 3);
  EXPECT_EQ(o->policy.initial_backoff, 2000ms);
  EXPECT_EQ(o->policy.max_backoff, 60'000ms);
  EXPECT_EQ(o->policy.request_timeout, 7000ms);
  EXPECT_EQ(o->policy.connect_timeout, 4000ms);
}

TEST(PagerOptionsFromConfig, DefaultsMakeNoChannelAndTheDocumentedPolicy) {
  Result<pager::PagerOptions> o = PagerOptionsFromConfig(Loaded({}));
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_TRUE(o->channels.empty());
  EXPECT_EQ(o->policy.max_attempts, 8);
  EXPECT_EQ(o->policy.initial_backoff, 1000ms);
  EXPECT_EQ(o->policy.max_backoff, 300'000ms);
  EXPECT_EQ(o->policy.request_timeout, 10'000ms);
  EXPECT_EQ(o->policy.connect_timeout, 5000ms);
  EXPECT_TRUE(pager::Validate(o->policy).ok());
}

TEST(PagerOptionsFromConfig, ASlackOnlyConfigurationPassesThePagersOwnValidation) {
  Result<pager::PagerOptions> o = PagerOptionsFromConfig(
      Loaded({{"pager.enabled", "true"}, {"pager.webhook", "https://hooks.slack.example/T1"}}));
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(pager::Pager::Validate(*o).ok()) << pager::Pager::Validate(*o).ToString();
}

TEST(ChannelSetting, NamesTheKeyAndTheVariableOfEachKind) {
  EXPECT_EQ(ChannelSetting(pager::ChannelKind::kSlack), "pager.webhook (MANN_PAGER_WEBHOOK)");
  EXPECT_THAT(ChannelSetting(pager::ChannelKind::kPagerDuty),
              HasSubstr("MANN_PAGERDUTY_ROUTING_KEY"));
  EXPECT_THAT(
      ChannelSetting(pager::ChannelKind::kEmail),
      AllOf(HasSubstr("MANN_SMTP_URL"), HasSubstr("MANN_SMTP_FROM"), HasSubstr("MANN_SMTP_TO")));
  EXPECT_THAT(ChannelSetting(pager::ChannelKind::kWebhook), HasSubstr("MANN_PAGER_JSON_WEBHOOK"));
}

TEST(MonitorOptionsFromConfig, CarriesIntervalWindowRulesAndRenotifyFloors) {
  const config::Config c = Loaded({{"monitoring.health_check_interval", "5"},
                                   {"monitoring.alert_rules", "deep: queue>3 for 2m error"},
                                   {"monitoring.renotify_info", "600"},
                                   {"monitoring.renotify_warning", "120"},
                                   {"monitoring.renotify_error", "20"},
                                   {"monitoring.renotify_critical", "5"},
                                   {"monitoring.request_window", "60"},
                                   {"monitoring.min_requests", "3"},
                                   {"storage.data_dir", "/srv/mann"}});
  Result<monitor::MonitorOptions> o = MonitorOptionsFromConfig(c);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->interval, 5000ms);
  EXPECT_EQ(o->probe.data_dir, "/srv/mann");
  EXPECT_EQ(o->request_window, 60s);
  EXPECT_EQ(o->min_requests, 3u);
  ASSERT_EQ(o->rules.size(), 1u);
  EXPECT_EQ(o->rules[0].name, "deep");
  EXPECT_EQ(o->rules[0].for_duration, 120s);
  EXPECT_EQ(o->rules[0].level, monitor::Level::kError);
  EXPECT_EQ(o->alerts.renotify.info, 600s);
  EXPECT_EQ(o->alerts.renotify.warning, 120s);
  EXPECT_EQ(o->alerts.renotify.error, 20s);
  EXPECT_EQ(o->alerts.renotify.critical, 5s);
  EXPECT_FALSE(static_cast<bool>(o->sink));
}

TEST(MonitorOptionsFromConfig, EmptyRulesAreTheDefaultsWithTheDefaultFloors) {
  Result<monitor::MonitorOptions> o = MonitorOptionsFromConfig(Loaded({}));
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(monitor::FormatAlertRules(o->rules),
            monitor::FormatAlertRules(monitor::DefaultAlertRules()));
  EXPECT_EQ(o->interval, 30'000ms);
  EXPECT_EQ(o->request_window, 300s);
  EXPECT_EQ(o->min_requests, 10u);
  EXPECT_EQ(o->alerts.renotify.info, 60s);
  EXPECT_EQ(o->alerts.renotify.warning, 30s);
  EXPECT_EQ(o->alerts.renotify.error, 10s);
  EXPECT_EQ(o->alerts.renotify.critical, 0s);
}

TEST(AlertRulesFromConfig, BadTextIsRefusedNamingTheKey) {
  config::MonitoringConfig m;
  m.alert_rules = "disk > lots";
  Result<std::vector<monitor::AlertRule>> rules = AlertRulesFromConfig(m);
  ASSERT_FALSE(rules.ok());
  EXPECT_EQ(rules.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(rules.status().message(),
              AllOf(HasSubstr("monitoring.alert_rules: "), HasSubstr("lots")));
}

// ---- Health checks -----------------------------------------------------------------------------

BankStats Stats(std::vector<std::pair<std::string, std::size_t>> counts, std::size_t size,
                std::size_t capacity) {
  BankStats s;
  s.memory_size = size;
  s.max_memory_capacity = capacity;
  for (const auto& [ns, n] : counts) {
    NamespaceStats one;
    one.ns = ns;
    one.total_memories = n;
    one.utilization = double(n) / double(size);
    s.overall.total_memories += n;
    s.overall.utilization = std::max(s.overall.utilization, one.utilization);
    s.namespaces.push_back(one);
  }
  return s;
}

TEST(BankHealth, HealthySummaryCountsWithoutNamingNamespaces) {
  const monitor::CheckResult r = BankHealth(Stats({{"alice", 3}, {"bob", 1}}, 10, 20), {});
  EXPECT_EQ(r.state, monitor::HealthState::kHealthy);
  EXPECT_EQ(r.reason, "4 memories in 2 namespaces, highest utilization 30.0%");
  EXPECT_EQ(BankHealth(Stats({{"alice", 1}}, 10, 20), {}).reason,
            "1 memory in 1 namespace, highest utilization 10.0%");
}

TEST(BankHealth, NamespaceAtCapacityDegradesWithoutBeingNamed) {
  const monitor::CheckResult r = BankHealth(Stats({{"alice", 20}, {"bob", 1}}, 10, 20), {});
  EXPECT_EQ(r.state, monitor::HealthState::kDegraded);
  EXPECT_THAT(r.reason, AllOf(HasSubstr("1 namespace at memory.max_memory_capacity (20)"),
                              HasSubstr("evicts"), Not(HasSubstr("alice"))));
}

TEST(BankHealth, EncoderFallbackDegrades) {
  runtime::EncoderStatus encoder;
  encoder.configured = "use-lite";
  encoder.active = "hashed";
  encoder.fallback_reason = "model files missing";
  const monitor::CheckResult r = BankHealth(Stats({}, 10, 20), encoder);
  EXPECT_EQ(r.state, monitor::HealthState::kDegraded);
  EXPECT_THAT(r.reason,
              AllOf(HasSubstr("use-lite"), HasSubstr("hashed"), HasSubstr("model files missing")));
}

TEST(FormatHealthReport, OverallStateThenOneAlignedLinePerCheck) {
  monitor::HealthReport report;
  report.overall = monitor::HealthState::kDegraded;
  report.checks = {{"memory_bank", monitor::HealthState::kHealthy, "2 memories", {}},
                   {"pager", monitor::HealthState::kDegraded, "channel slack: 1 dead", {}}};
  EXPECT_EQ(FormatHealthReport(report),
            "degraded\n"
            "  memory_bank  healthy    2 memories\n"
            "  pager        degraded   channel slack: 1 dead\n");
}

// A runtime over a temporary data directory, with the hashed encoder.
class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.path();
    ASSERT_FALSE(root_.empty());
    config_ = testing::TestRuntimeConfig(root_);
    config_.memory.memory_size = 2;
    auto rt = runtime::Runtime::Open(config_, clock_);
    ASSERT_TRUE(rt.ok()) << rt.status().ToString();
    runtime_ = std::move(*rt);
  }
  void TearDown() override { runtime_.reset(); }

  std::string Add(const std::string& ns, const std::string& content) {
    AddRequest r;
    r.ns = ns;
    r.content = content;
    auto w = runtime_->bank().Add(r);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    return w.ok() ? w->memory_id : std::string();
  }

  static const monitor::CheckReport* Find(const monitor::HealthReport& report,
                                          const std::string& name) {
    for (const monitor::CheckReport& c : report.checks) {
      if (c.name == name) return &c;
    }
    return nullptr;
  }

  testing::TempDir dir_{"mann-monitoring"};
  fs::path root_;
  FakeClock clock_;
  config::Config config_;
  std::unique_ptr<runtime::Runtime> runtime_;
};

TEST_F(ServiceTest, ChecksOfTheBankTheStoreAndTheMachineAreHealthyOnAFreshRuntime) {
  Add("alice", "Alice keeps bees");
  monitor::HealthChecker checker;
  ASSERT_TRUE(RegisterServiceChecks(checker, *runtime_, {.system = true}).ok());
  const monitor::HealthReport report = checker.RunAll();
  std::vector<std::string> names;
  for (const monitor::CheckReport& c : report.checks) names.push_back(c.name);
  EXPECT_THAT(names, ElementsAre("memory_bank", "storage", "system"));
  EXPECT_EQ(Find(report, "memory_bank")->state, monitor::HealthState::kHealthy);
  EXPECT_EQ(Find(report, "memory_bank")->reason,
            "1 memory in 1 namespace, highest utilization 50.0%");
  EXPECT_EQ(Find(report, "storage")->state, monitor::HealthState::kHealthy);
  EXPECT_EQ(Find(report, "storage")->reason, "ok");
  EXPECT_NE(Find(report, "system")->reason, "");
}

TEST_F(ServiceTest, IntegrityVariantRunsTheStoresCheckAndNamesIt) {
  monitor::HealthChecker checker;
  ASSERT_TRUE(RegisterServiceChecks(checker, *runtime_, {.storage_integrity = true}).ok());
  const monitor::HealthReport report = checker.RunAll();
  ASSERT_NE(Find(report, "storage"), nullptr);
  EXPECT_EQ(Find(report, "storage")->state, monitor::HealthState::kHealthy);
  EXPECT_THAT(Find(report, "storage")->reason, HasSubstr("passed its integrity check"));
  EXPECT_EQ(Find(report, "system"), nullptr) << "only when asked for";
}

TEST_F(ServiceTest, RegisteringTwiceIsRefusedByName) {
  monitor::HealthChecker checker;
  ASSERT_TRUE(RegisterServiceChecks(checker, *runtime_, {}).ok());
  const Status again = RegisterServiceChecks(checker, *runtime_, {});
  EXPECT_EQ(again.code(), StatusCode::kAlreadyExists) << again.ToString();
}

TEST_F(ServiceTest, UtilizationSourceReportsEveryNamespace) {
  Add("alice", "Alice keeps bees");
  Add("alice", "Alice's hive is on the roof");
  Add("bob", "Bob likes tea");
  const std::map<std::string, double> values = UtilizationByNamespace(runtime_->bank())();
  EXPECT_EQ(values, (std::map<std::string, double>{{"alice", 1.0}, {"bob", 0.5}}));
}

// The path `mann serve` builds, without HTTP: the monitor sees a namespace fill up, its sink
// enqueues the alert in the pager's outbox, the pager's worker posts it to a real receiver on
// loopback; the namespace empties and the resolve follows under the same dedup key.
TEST_F(ServiceTest, AlertRaisedByTheMonitorReachesTheReceiverThroughTheOutbox) {
  pager::test_support::Receiver receiver;
  config_.pager.enabled = true;
  config_.pager.json_webhook = receiver.Url("/alerts");
  config_.monitoring.alert_rules = "full: memory_utilization>0.9 for 0s critical";
  metrics::Registry registry;

  Result<pager::PagerOptions> pager_options = PagerOptionsFromConfig(config_);
  ASSERT_TRUE(pager_options.ok()) << pager_options.status().ToString();
  pager_options->registry = &registry;
  pager_options->clock = &clock_;
  pager_options->policy.poll_interval = 20ms;
  auto pager = pager::Pager::Create(std::move(*pager_options), runtime_->store());
  ASSERT_TRUE(pager.ok()) << pager.status().ToString();
  ASSERT_TRUE((*pager)->Start().ok());

  Result<monitor::MonitorOptions> options = MonitorOptionsFromConfig(config_);
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  options->sink = PagerSink(**pager);
  options->may_notify = ReplicaNotifyGate(config_);
  auto monitor = monitor::Monitor::Create(std::move(*options), clock_);
  ASSERT_TRUE(monitor.ok()) << monitor.status().ToString();
  ASSERT_TRUE(
      (*monitor)
          ->AddSource("memory_utilization", UtilizationByNamespace(runtime_->bank()), "namespace")
          .ok());
  ASSERT_TRUE(RegisterServiceChecks((*monitor)->health(), *runtime_, {.pager = pager->get()}).ok());
  ASSERT_TRUE((*monitor)->CheckRules().ok());

  const std::string first = Add("alice", "Alice keeps bees");
  const std::string second = Add("alice", "Alice's hive is on the roof");
  const monitor::TickResult fired = (*monitor)->Tick();
  ASSERT_EQ(fired.events.size(), 1u);
  EXPECT_EQ(fired.events[0].kind, monitor::AlertEventKind::kTrigger);
  ASSERT_TRUE(receiver.WaitForRequests(1, 5s));

  ASSERT_TRUE(runtime_->bank().Delete("alice", first).ok());
  ASSERT_TRUE(runtime_->bank().Delete("alice", second).ok());
  clock_.AdvanceMs(1000);
  const monitor::TickResult resolved = (*monitor)->Tick();
  ASSERT_EQ(resolved.events.size(), 1u);
  EXPECT_EQ(resolved.events[0].kind, monitor::AlertEventKind::kResolve);
  ASSERT_TRUE(receiver.WaitForRequests(2, 5s));

  const auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].target, "/alerts");
  EXPECT_EQ(requests[0].json.at("event"), "trigger");
  EXPECT_EQ(requests[0].json.at("level"), "critical");
  EXPECT_EQ(requests[0].json.at("dedup_key"), "full:alice");
  EXPECT_EQ(requests[0].json.at("metadata").at("subject"), "alice");
  EXPECT_EQ(requests[1].json.at("event"), "resolve");
  EXPECT_EQ(requests[1].json.at("dedup_key"), "full:alice");

  const monitor::HealthReport health = (*monitor)->health().RunAll();
  ASSERT_NE(Find(health, "pager"), nullptr);
  EXPECT_EQ(Find(health, "pager")->state, monitor::HealthState::kHealthy)
      << Find(health, "pager")->reason;
  EXPECT_EQ(Find(health, "pager")->reason, "delivering to webhook");

  (*monitor)->Stop();
  (*pager)->Stop();
}

// A notification the pager refuses (here: a dedup key longer than PagerDuty allows, made from a
// subject of 300 characters) is an error the monitor logs and counts, not a crash of its thread.
TEST_F(ServiceTest, NotificationThePagerRefusesIsCountedAsASinkError) {
  metrics::Registry registry;
  pager::PagerOptions options;
  options.registry = &registry;
  pager::ChannelConfig webhook;
  webhook.kind = pager::ChannelKind::kWebhook;
  webhook.url = "http://127.0.0.1:9/never";
  options.channels.push_back(webhook);
  auto pager = pager::Pager::Create(std::move(options), runtime_->store());
  ASSERT_TRUE(pager.ok()) << pager.status().ToString();

  const monitor::AlertSink sink = PagerSink(**pager);
  monitor::AlertEvent long_key = Event(monitor::AlertEventKind::kTrigger);
  long_key.dedup_key = std::string(300, 'k');
  EXPECT_THROW(sink(long_key), std::runtime_error);
  EXPECT_NO_THROW(sink(Event(monitor::AlertEventKind::kTrigger)));

  monitor::MonitorOptions monitor_options;
  monitor_options.rules = *monitor::ParseAlertRules("deep: depth>1 critical");
  monitor_options.sink = sink;
  auto monitor = monitor::Monitor::Create(std::move(monitor_options), clock_);
  ASSERT_TRUE(monitor.ok()) << monitor.status().ToString();
  ASSERT_TRUE((*monitor)->RegisterMetrics(registry).ok());
  ASSERT_TRUE((*monitor)
                  ->AddSource("depth",
                              [] {
                                return std::map<std::string, double>{{std::string(300, 's'), 5.0}};
                              })
                  .ok());
  const monitor::TickResult tick = (*monitor)->Tick();
  ASSERT_EQ(tick.events.size(), 1u);
  EXPECT_THAT(registry.Render(), HasSubstr("mann_monitor_errors_total{source=\"sink\"} 1\n"));
}

}  // namespace
}  // namespace mann::cli
