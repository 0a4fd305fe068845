#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mann/core/log.h>
#include <mann/metrics/registry.h>
#include <mann/monitor/monitor.h>

#include "fake_proc_testing.h"

namespace mann::monitor {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;
using testing::FakeProc;
using ::testing::HasSubstr;
using ::testing::Key;
using ::testing::Not;

AlertRule Rule(std::string metric, double threshold, int for_s, Level level = Level::kWarning) {
  AlertRule rule;
  rule.name = metric;
  rule.metric = std::move(metric);
  rule.threshold = threshold;
  rule.for_duration = seconds(for_s);
  rule.level = level;
  rule.summary = "test rule";
  return rule;
}

// Sample lines of an exposition by series (name and labels), values parsed.
std::map<std::string, double> Samples(const std::string& exposition) {
  std::map<std::string, double> samples;
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    const std::size_t space = line.rfind(' ');
    samples[line.substr(0, space)] = std::strtod(line.c_str() + space + 1, nullptr);
  }
  return samples;
}

class MonitorTest : public ::testing::Test {
 protected:
  // Options over the fake tree. Its data directory is on the real disk, whose usage the test
  // cannot choose: a nearly full build machine must not turn the "system" check degraded.
  MonitorOptions BaseOptions() const {
    MonitorOptions options;
    options.probe = {.proc_root = proc_.root(),
                     .data_dir = proc_.data_dir(),
                     .cpu_count = 2,
                     .clock_ticks = 100};
    options.resources.disk_warn = 1.0;  // a used ratio is never above 1
    options.resources.disk_critical = 1.0;
    return options;
  }

  // A monitor over the fake tree with `rules`, collecting delivered events.
  std::unique_ptr<Monitor> Make(std::vector<AlertRule> rules, NotifyGate gate = {}) {
    MonitorOptions options = BaseOptions();
    options.rules = std::move(rules);
    options.sink = [this](const AlertEvent& e) { delivered_.push_back(e); };
    options.may_notify = std::move(gate);
    auto monitor = Monitor::Create(std::move(options), clock_);
    EXPECT_TRUE(monitor.ok()) << monitor.status().ToString();
    return std::move(monitor).value();
  }

  FakeProc proc_;
  FakeClock clock_;
  std::vector<AlertEvent> delivered_;
};

TEST_F(MonitorTest, TickGathersSystemRequestAndHealthMetrics) {
  auto monitor = Make({});
  for (int i = 0; i < 18; ++i) monitor->window().Record(milliseconds(20), false);
  monitor->window().Record(milliseconds(20), true);
  monitor->window().Record(milliseconds(20), true);

  const TickResult tick = monitor->Tick();
  EXPECT_TRUE(tick.probe_errors.empty());
  const MetricValues& v = tick.values;
  EXPECT_EQ(v.at("cpu_percent").at(""), 0.0);
  EXPECT_DOUBLE_EQ(v.at("system_memory").at(""), 0.75);
  EXPECT_GE(v.at("disk").at(""), 0.0);
  EXPECT_EQ(v.at("resident_bytes").at(""), 2048.0 * 1024);
  EXPECT_DOUBLE_EQ(v.at("fd_utilization").at(""), 4.0 / 1024);
  EXPECT_DOUBLE_EQ(v.at("error_rate").at(""), 0.1);
  EXPECT_NEAR(v.at("processing_time").at(""), 0.020, 1e-9);  // identical durations: exact
  EXPECT_EQ(v.at("health_state").at("system"), 0.0);
  EXPECT_EQ(tick.health.overall, HealthState::kHealthy);

  ASSERT_TRUE(monitor->LastSample().has_value());
  EXPECT_DOUBLE_EQ(monitor->LastSample()->system_memory_used_ratio, 0.75);
  ASSERT_TRUE(monitor->LastHealth().has_value());
  EXPECT_EQ(monitor->LastHealth()->checks[0].name, "system");

  // CPU is measured between ticks: 100 ticks of 2 cores' 20 s.
  proc_.WriteStat(200, 50);
  clock_.AdvanceMs(10'000);
  EXPECT_DOUBLE_EQ(monitor->Tick().values.at("cpu_percent").at(""), 5.0);
}

TEST_F(MonitorTest, TooFewRequestsAreNotJudgedButNoneAreZero) {
  auto monitor = Make({});
  TickResult tick = monitor->Tick();
  EXPECT_EQ(tick.values.at("error_rate").at(""), 0.0);  // no requests: nothing failing
  EXPECT_EQ(tick.values.at("processing_time").at(""), 0.0);

  for (int i = 0; i < 3; ++i) monitor->window().Record(milliseconds(5), true);
  tick = monitor->Tick();
  EXPECT_THAT(tick.values, Not(::testing::Contains(Key("error_rate"))));
  EXPECT_THAT(tick.values, Not(::testing::Contains(Key("processing_time"))));
}

TEST_F(MonitorTest, EventsGoToTheSinkThroughTheirLifecycle) {
  auto monitor = Make({Rule("system_memory", 0.7, 0, Level::kCritical)});
  TickResult tick = monitor->Tick();
  ASSERT_EQ(tick.events.size(), 1u);
  EXPECT_EQ(tick.events[0].kind, AlertEventKind::kTrigger);
  ASSERT_EQ(delivered_.size(), 1u);
  EXPECT_EQ(delivered_[0].dedup_key, "system_memory");
  EXPECT_EQ(delivered_[0].message, "system memory used 0.75 > 0.7");

  clock_.AdvanceMs(30'000);
  monitor->Tick();  // critical: re-notified at every tick
  ASSERT_EQ(delivered_.size(), 2u);
  EXPECT_EQ(delivered_[1].kind, AlertEventKind::kRenotify);

  proc_.WriteMeminfo(1'000'000, 900'000);
  clock_.AdvanceMs(30'000);
  monitor->Tick();
  ASSERT_EQ(delivered_.size(), 3u);
  EXPECT_EQ(delivered_[2].kind, AlertEventKind::kResolve);
  EXPECT_EQ(delivered_[2].message,
            "system memory used 0.1 is back at or under 0.7 after 60 s firing");
  EXPECT_TRUE(monitor->alerts().Active().empty());
}

TEST_F(MonitorTest, MayNotifyWithholdsEventsButHistoryKeepsThem) {
  metrics::Registry registry;  // outlives the monitor and its callbacks
  std::vector<std::string> asked;
  std::vector<std::string> confirmed;
  NotifyGate gate;
  gate.decide = [&](const AlertEvent& e) {
    asked.push_back(e.dedup_key);
    return e.dedup_key == "disk" ? NotifyDecision::kDeliver : NotifyDecision::kDeliveredElsewhere;
  };
  gate.delivered = [&](const AlertEvent& e) { confirmed.push_back(e.dedup_key); };
  auto monitor = Make({Rule("system_memory", 0.7, 0), Rule("disk", -1, 0)}, gate);
  ASSERT_TRUE(monitor->RegisterMetrics(registry).ok());
  monitor->Tick();
  EXPECT_THAT(asked, ElementsAre("system_memory", "disk"));
  ASSERT_EQ(delivered_.size(), 1u);
  EXPECT_EQ(delivered_[0].dedup_key, "disk");
  EXPECT_THAT(confirmed, ElementsAre("disk")) << "confirmed once the sink has it";

  const std::vector<AlertEvent> history = monitor->alerts().History();
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[0].dedup_key, "system_memory");
  EXPECT_TRUE(history[0].withheld);
  EXPECT_FALSE(history[1].withheld);

  const auto samples = Samples(registry.Render());
  EXPECT_EQ(samples.at(R"(mann_alert_events_total{kind="trigger",level="warning"})"), 2);
  EXPECT_EQ(samples.at(R"(mann_alert_events_withheld_total{kind="trigger",level="warning"})"), 1);
  EXPECT_EQ(samples.at(R"(mann_alerts_active{level="warning"})"), 2);  // both fired
}

TEST_F(MonitorTest, AReleasedEventGoesToTheSinkAndOnlyDeliveredOnesAreConfirmed) {
  metrics::Registry registry;
  NotifyDecision answer = NotifyDecision::kWithhold;
  std::vector<std::string> confirmed;
  NotifyGate gate;
  gate.decide = [&](const AlertEvent&) { return answer; };
  gate.delivered = [&](const AlertEvent& e) {
    confirmed.push_back(std::string(AlertEventKindName(e.kind)) + (e.taken_over ? " late" : ""));
  };
  auto monitor = Make({Rule("disk", -1, 0)}, gate);
  ASSERT_TRUE(monitor->RegisterMetrics(registry).ok());
  monitor->Tick();
  EXPECT_TRUE(delivered_.empty());
  ASSERT_EQ(monitor->alerts().Pending().size(), 1u);

  // The holder died: the next tick releases the trigger to the sink and confirms it.
  answer = NotifyDecision::kDeliver;
  monitor->Tick();
  ASSERT_EQ(delivered_.size(), 1u);
  EXPECT_EQ(delivered_[0].kind, AlertEventKind::kTrigger);
  EXPECT_TRUE(delivered_[0].taken_over);
  EXPECT_THAT(confirmed, ElementsAre("trigger late"));
  EXPECT_TRUE(monitor->alerts().Pending().empty());
  const auto samples = Samples(registry.Render());
  EXPECT_EQ(samples.at(R"(mann_alert_events_total{kind="trigger",level="warning"})"), 1)
      << "counted once, when emitted";
}

TEST_F(MonitorTest, AnEventTheSinkRefusesIsNotConfirmed) {
  std::vector<std::string> confirmed;
  NotifyGate gate;
  gate.decide = [](const AlertEvent&) { return NotifyDecision::kDeliver; };
  gate.delivered = [&](const AlertEvent& e) { confirmed.push_back(e.dedup_key); };
  MonitorOptions options = BaseOptions();
  options.rules = {Rule("disk", -1, 0)};
  options.sink = [](const AlertEvent&) { throw std::runtime_error("outbox unavailable"); };
  options.may_notify = gate;
  auto monitor = Monitor::Create(std::move(options), clock_);
  ASSERT_TRUE(monitor.ok()) << monitor.status().ToString();
  (*monitor)->Tick();
  EXPECT_TRUE(confirmed.empty()) << "the other replicas' copies must stay pending";
}

TEST_F(MonitorTest, SourcesFeedRulesPerSubject) {
  auto monitor = Make(DefaultAlertRules());
  std::map<std::string, double> utilization = {{"alice", 0.95}, {"bob", 0.1}};
  ASSERT_TRUE(monitor
                  ->AddSource(
                      "memory_utilization", [&] { return utilization; }, "namespace")
                  .ok());
  EXPECT_TRUE(monitor->CheckRules().ok());

  EXPECT_TRUE(monitor->Tick().events.empty());  // pending for 60 s
  clock_.AdvanceMs(30'000);
  EXPECT_TRUE(monitor->Tick().events.empty());
  clock_.AdvanceMs(30'000);
  const TickResult tick = monitor->Tick();
  ASSERT_EQ(tick.events.size(), 1u);
  EXPECT_EQ(tick.events[0].dedup_key, "memory_utilization:alice");
  EXPECT_EQ(tick.events[0].message, "memory utilization 0.95 > 0.9 for 60 s on namespace alice");
  EXPECT_EQ(tick.events[0].summary, DefaultAlertRules()[0].summary);
}

TEST_F(MonitorTest, AddSourceRejectsClashesAndBadNames) {
  auto monitor = Make({});
  auto source = [] { return std::map<std::string, double>{}; };
  EXPECT_EQ(monitor->AddSource("disk", source).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(monitor->AddSource("Queue-Depth", source).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(monitor->AddSource("queue_depth", nullptr).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(monitor->AddSource("queue_depth", source).ok());
  EXPECT_EQ(monitor->AddSource("queue_depth", source).code(), StatusCode::kAlreadyExists);
}

TEST_F(MonitorTest, CheckRulesNamesRulesNothingFeeds) {
  auto monitor = Make(DefaultAlertRules());
  const Status status = monitor->CheckRules();
  ASSERT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("'memory_utilization' (metric 'memory_utilization')"));
  EXPECT_THAT(status.message(), Not(HasSubstr("'disk'")));
  EXPECT_THAT(status.message(), HasSubstr("reported metrics: cpu_percent, disk"));
}

TEST_F(MonitorTest, FailingSourcesAreSkippedCountedAndTheTickGoesOn) {
  metrics::Registry registry;  // outlives the monitor and its callbacks
  auto monitor = Make({Rule("system_memory", 0.7, 0), Rule("queue_depth", 10, 0)});
  ASSERT_TRUE(monitor->RegisterMetrics(registry).ok());
  ASSERT_TRUE(monitor
                  ->AddSource("queue_depth",
                              []() -> std::map<std::string, double> {
                                throw std::runtime_error("queue unreachable");
                              })
                  .ok());
  monitor->Tick();  // system_memory fires
  ASSERT_EQ(delivered_.size(), 1u);

  proc_.Remove("meminfo");
  clock_.AdvanceMs(60'000);
  const TickResult tick = monitor->Tick();
  ASSERT_EQ(tick.probe_errors.size(), 1u);
  EXPECT_EQ(tick.probe_errors[0].source, "system_memory");
  EXPECT_THAT(tick.values, Not(::testing::Contains(Key("system_memory"))));
  EXPECT_THAT(tick.values, Not(::testing::Contains(Key("queue_depth"))));
  EXPECT_TRUE(tick.values.contains("disk"));
  // The alert keeps its state while its metric cannot be read: no Resolve, no Renotify.
  EXPECT_TRUE(tick.events.empty());
  ASSERT_EQ(monitor->alerts().Active().size(), 1u);

  const auto samples = Samples(registry.Render());
  EXPECT_EQ(samples.at(R"(mann_monitor_errors_total{source="system_memory"})"), 1);
  EXPECT_EQ(samples.at(R"(mann_monitor_errors_total{source="queue_depth"})"), 2);
  EXPECT_FALSE(samples.contains("mann_system_memory_used_ratio"));  // unknown, left out
}

TEST_F(MonitorTest, ASinkThatThrowsDoesNotStopTheTick) {
  metrics::Registry registry;  // outlives the monitor and its callbacks
  MonitorOptions options = BaseOptions();
  options.rules = {Rule("system_memory", 0.7, 0), Rule("disk", -1, 0)};
  int calls = 0;
  options.sink = [&](const AlertEvent&) {
    ++calls;
    throw std::runtime_error("outbox full");
  };
  auto monitor = Monitor::Create(std::move(options), clock_).value();
  ASSERT_TRUE(monitor->RegisterMetrics(registry).ok());
  EXPECT_EQ(monitor->Tick().events.size(), 2u);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(Samples(registry.Render()).at(R"(mann_monitor_errors_total{source="sink"})"), 2);
}

TEST_F(MonitorTest, HealthChecksBecomeTheHealthStateMetric) {
  AlertRule rule = Rule("health_state", 1, 0, Level::kError);
  auto monitor = Make({rule});
  Status store = UnavailableError("database is locked");
  ASSERT_TRUE(monitor->health().Register("store", StatusCheck([&] { return store; })).ok());
  TickResult tick = monitor->Tick();
  EXPECT_EQ(tick.values.at("health_state").at("store"), 2.0);
  EXPECT_EQ(tick.health.overall, HealthState::kUnhealthy);
  ASSERT_EQ(tick.events.size(), 1u);
  EXPECT_EQ(tick.events[0].dedup_key, "health_state:store");
  EXPECT_EQ(tick.events[0].message, "health state 2 > 1 on check store");

  store = Status::Ok();
  clock_.AdvanceMs(30'000);
  tick = monitor->Tick();
  ASSERT_EQ(tick.events.size(), 1u);
  EXPECT_EQ(tick.events[0].kind, AlertEventKind::kResolve);
}

TEST_F(MonitorTest, RegistersItsMetrics) {
  metrics::Registry registry;  // outlives the monitor and its callbacks
  auto monitor = Make({Rule("disk", -1, 0, Level::kCritical)});
  ASSERT_TRUE(monitor->RegisterMetrics(registry).ok());
  EXPECT_EQ(monitor->RegisterMetrics(registry).code(), StatusCode::kFailedPrecondition);

  // Before the first tick the system gauges are unknown.
  auto samples = Samples(registry.Render());
  EXPECT_FALSE(samples.contains("mann_system_cpu_percent"));
  EXPECT_EQ(samples.at("mann_request_error_ratio"), 0);

  for (int i = 0; i < 10; ++i) monitor->window().Record(milliseconds(250), i < 5);
  monitor->Tick();
  samples = Samples(registry.Render());
  EXPECT_EQ(samples.at("mann_system_cpu_percent"), 0);
  EXPECT_DOUBLE_EQ(samples.at("mann_system_memory_used_ratio"), 0.75);
  EXPECT_TRUE(samples.contains("mann_disk_used_ratio"));
  EXPECT_DOUBLE_EQ(samples.at("mann_request_error_ratio"), 0.5);
  EXPECT_DOUBLE_EQ(samples.at("mann_request_duration_p50_seconds"), 0.25);
  EXPECT_DOUBLE_EQ(samples.at("mann_request_duration_p95_seconds"), 0.25);
  EXPECT_DOUBLE_EQ(samples.at("mann_request_duration_p99_seconds"), 0.25);
  EXPECT_EQ(samples.at(R"(mann_alerts_active{level="critical"})"), 1);
  EXPECT_EQ(samples.at(R"(mann_alerts_active{level="info"})"), 0);
  EXPECT_EQ(samples.at(R"(mann_alert_events_total{kind="trigger",level="critical"})"), 1);
  EXPECT_EQ(samples.at(R"(mann_alert_events_total{kind="resolve",level="info"})"), 0);
  EXPECT_EQ(samples.at(R"(mann_health_check_status{check="system"})"), 0);
}

TEST_F(MonitorTest, CreateRejectsBadOptions) {
  MonitorOptions zero;
  zero.interval = milliseconds(0);
  EXPECT_EQ(Monitor::Create(std::move(zero), clock_).status().code(), StatusCode::kInvalidArgument);
  MonitorOptions twice;
  twice.rules = {Rule("disk", 0.9, 0), Rule("disk", 0.95, 0)};
  EXPECT_THAT(Monitor::Create(std::move(twice), clock_).status().message(),
              HasSubstr("used twice"));
}

TEST_F(MonitorTest, ThreadTicksAtOnceAndStopsPromptly) {
  MonitorOptions options;
  options.probe.proc_root = proc_.root();
  options.rules = {};
  options.interval = std::chrono::hours(1);
  auto monitor = Monitor::Create(std::move(options), clock_).value();
  ASSERT_TRUE(monitor->Start().ok());
  EXPECT_TRUE(monitor->running());
  EXPECT_EQ(monitor->Start().code(), StatusCode::kFailedPrecondition);
  for (int i = 0; i < 500 && !monitor->LastSample(); ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_TRUE(monitor->LastSample().has_value());  // the first tick does not wait an hour

  const auto start = std::chrono::steady_clock::now();
  monitor->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(1));
  EXPECT_FALSE(monitor->running());
  monitor->Stop();  // idempotent
}

TEST_F(MonitorTest, ThreadTicksEveryInterval) {
  MonitorOptions options;
  options.probe.proc_root = proc_.root();
  options.rules = {};
  options.interval = milliseconds(20);
  auto monitor = Monitor::Create(std::move(options), clock_).value();
  std::atomic<int> reads{0};
  ASSERT_TRUE(monitor
                  ->AddSource("ticks",
                              [&] {
                                ++reads;
                                return std::map<std::string, double>{};
                              })
                  .ok());
  ASSERT_TRUE(monitor->Start().ok());
  for (int i = 0; i < 500 && reads.load() < 3; ++i) std::this_thread::sleep_for(milliseconds(10));
  monitor->Stop();
  const int after_stop = reads.load();
  EXPECT_GE(after_stop, 3);
  std::this_thread::sleep_for(milliseconds(60));
  EXPECT_EQ(reads.load(), after_stop);  // no tick after Stop returned

  ASSERT_TRUE(monitor->Start().ok());  // restartable
  for (int i = 0; i < 500 && reads.load() == after_stop; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_GT(reads.load(), after_stop);
}

// Logs to a file, so the test can count lines; restores standard error afterwards.
class MonitorLogTest : public MonitorTest {
 protected:
  void SetUp() override {
    std::string pattern = (fs::path(::testing::TempDir()) / "mann-monitor-log-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    ASSERT_TRUE(log::Configure({.level = "info", .file = (dir_ / "mann.log").string()}).ok());
  }
  void TearDown() override {
    log::Configure(log::LogOptions{}).IgnoreError();
    fs::remove_all(dir_);
  }
  int LinesContaining(const std::string& text) {
    log::Get("monitor")->flush();
    std::ifstream in(dir_ / "mann.log");
    int n = 0;
    for (std::string line; std::getline(in, line);) n += line.find(text) != std::string::npos;
    return n;
  }

  fs::path dir_;
};

TEST_F(MonitorLogTest, AProbeFailureIsLoggedOncePerDistinctError) {
  auto monitor = Make({});
  proc_.Remove("meminfo");
  for (int i = 0; i < 3; ++i) monitor->Tick();
  EXPECT_EQ(LinesContaining("monitor source failed source=system_memory"), 1);

  proc_.Write("meminfo", "MemTotal: 10 kB\n");  // a different error
  monitor->Tick();
  monitor->Tick();
  EXPECT_EQ(LinesContaining("monitor source failed source=system_memory"), 2);
  EXPECT_EQ(LinesContaining("no MemAvailable line"), 1);

  proc_.WriteMeminfo(1000, 500);
  monitor->Tick();
  monitor->Tick();
  EXPECT_EQ(LinesContaining("monitor source recovered source=system_memory failed_ticks=5"), 1);

  proc_.Remove("meminfo");  // the same error as before recovery is news again
  monitor->Tick();
  EXPECT_EQ(LinesContaining("monitor source failed source=system_memory"), 3);
}

TEST_F(MonitorLogTest, HealthChangesAndAlertsAreLogged) {
  auto monitor = Make({Rule("disk", -1, 0, Level::kCritical)});
  bool broken = true;
  ASSERT_TRUE(monitor->health()
                  .Register("store",
                            [&] {
                              return broken ? CheckResult{HealthState::kUnhealthy, "locked"}
                                            : CheckResult{HealthState::kHealthy, "ok"};
                            })
                  .ok());
  monitor->Tick();
  monitor->Tick();
  EXPECT_EQ(LinesContaining("health changed from=healthy to=unhealthy checks=[store: locked]"), 1);
  EXPECT_EQ(LinesContaining("alert trigger dedup_key=disk level=critical"), 1);
  broken = false;
  monitor->Tick();
  EXPECT_EQ(LinesContaining("health changed from=unhealthy to=healthy"), 1);
}

}  // namespace
}  // namespace mann::monitor
