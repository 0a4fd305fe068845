#include <atomic>
#include <chrono>
#include <condition_variable>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mann/monitor/health.h>

namespace mann::monitor {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;
using SteadyClock = std::chrono::steady_clock;

// Holds checks until released, and tells when one has started.
class Gate {
 public:
  void Enter() {
    std::unique_lock lock(mu_);
    ++entered_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void WaitEntered(int n) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return entered_ >= n; });
  }
  int entered() {
    std::lock_guard lock(mu_);
    return entered_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  int entered_ = 0;
};

TEST(HealthChecker, OverallIsTheWorstCheckAndOrderIsKept) {
  HealthChecker checker;
  ASSERT_TRUE(checker.Register("store",
                               [] {
                                 return CheckResult{HealthState::kHealthy, "ok"};
                               })
                  .ok());
  ASSERT_TRUE(checker.Register("bank",
                               [] {
                                 return CheckResult{HealthState::kDegraded, "slow"};
                               })
                  .ok());
  ASSERT_TRUE(checker.Register("disk",
                               [] {
                                 return CheckResult{HealthState::kHealthy, "fine"};
                               })
                  .ok());
  HealthReport report = checker.RunAll();
  EXPECT_EQ(report.overall, HealthState::kDegraded);
  ASSERT_EQ(report.checks.size(), 3u);
  EXPECT_EQ(report.checks[0].name, "store");
  EXPECT_EQ(report.checks[1].name, "bank");
  EXPECT_EQ(report.checks[1].reason, "slow");
  EXPECT_EQ(report.checks[2].name, "disk");

  const boost::json::value json = ToJson(report);
  EXPECT_EQ(json.at("status"), "degraded");
  EXPECT_EQ(json.at("checks").at(1).at("name"), "bank");
  EXPECT_EQ(json.at("checks").at(1).at("status"), "degraded");
  EXPECT_EQ(json.at("checks").at(1).at("reason"), "slow");
  EXPECT_TRUE(json.at("checks").at(1).at("duration_seconds").is_double());

  ASSERT_TRUE(checker.Register("down",
                               [] {
                                 return CheckResult{HealthState::kUnhealthy, "gone"};
                               })
                  .ok());
  EXPECT_EQ(checker.RunAll().overall, HealthState::kUnhealthy);
}

TEST(HealthChecker, NoChecksIsHealthy) {
  HealthChecker checker;
  const HealthReport report = checker.RunAll();
  EXPECT_EQ(report.overall, HealthState::kHealthy);
  EXPECT_TRUE(report.checks.empty());
  EXPECT_EQ(HealthStateName(HealthState::kUnhealthy), "unhealthy");
}

TEST(HealthChecker, ThrowingChecksAreUnhealthyWithTheReason) {
  HealthChecker checker;
  ASSERT_TRUE(
      checker
          .Register("store", []() -> CheckResult { throw std::runtime_error("database locked"); })
          .ok());
  ASSERT_TRUE(checker.Register("odd", []() -> CheckResult { throw 42; }).ok());
  const HealthReport report = checker.RunAll();
  EXPECT_EQ(report.overall, HealthState::kUnhealthy);
  EXPECT_EQ(report.checks[0].state, HealthState::kUnhealthy);
  EXPECT_EQ(report.checks[0].reason, "check threw: database locked");
  EXPECT_EQ(report.checks[1].reason, "check threw an unknown exception");
}

TEST(HealthChecker, SlowCheckCostsOnlyItsBudgetAndRunsOnce) {
  auto gate = std::make_shared<Gate>();
  HealthChecker checker;
  ASSERT_TRUE(checker
                  .Register(
                      "slow",
                      [gate] {
                        gate->Enter();
                        return CheckResult{HealthState::kHealthy, "finally"};
                      },
                      milliseconds(500))
                  .ok());
  ASSERT_TRUE(checker.Register("fast",
                               [] {
                                 return CheckResult{HealthState::kHealthy, "ok"};
                               })
                  .ok());

  const auto start = SteadyClock::now();
  HealthReport report = checker.RunAll();
  const auto took = SteadyClock::now() - start;
  EXPECT_GE(took, milliseconds(500));
  EXPECT_LT(took, milliseconds(3000));
  EXPECT_EQ(report.overall, HealthState::kUnhealthy);
  EXPECT_EQ(report.checks[0].state, HealthState::kUnhealthy);
  EXPECT_THAT(report.checks[0].reason, HasSubstr("did not finish within its 500 ms budget"));
  EXPECT_GE(report.checks[0].duration, milliseconds(500));
  EXPECT_EQ(report.checks[1].state, HealthState::kHealthy);

  // Still stuck: the next report waits for the same run, whose budget is already spent, so it
  // answers without waiting a second budget, and starts no second copy.
  const auto again = SteadyClock::now();
  report = checker.RunAll();
  EXPECT_LT(SteadyClock::now() - again, milliseconds(400));
  EXPECT_EQ(report.checks[0].state, HealthState::kUnhealthy);
  EXPECT_EQ(gate->entered(), 1);

  // Released, it reports normally, and the next report runs it afresh.
  gate->Open();
  for (int i = 0; i < 100 && checker.RunAll().checks[0].reason != "finally"; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  report = checker.RunAll();
  EXPECT_EQ(report.checks[0].state, HealthState::kHealthy);
  EXPECT_EQ(report.checks[0].reason, "finally");
  EXPECT_GE(gate->entered(), 2);
}

TEST(HealthChecker, ConcurrentReportsShareOneRun) {
  auto gate = std::make_shared<Gate>();
  std::atomic<int> runs{0};
  HealthChecker checker;
  ASSERT_TRUE(checker
                  .Register("store",
                            [gate, &runs] {
                              ++runs;
                              gate->Enter();
                              return CheckResult{HealthState::kHealthy, "ok"};
                            })
                  .ok());
  HealthReport first;
  std::thread a([&] { first = checker.RunAll(); });
  gate->WaitEntered(1);
  HealthReport second;
  std::thread b([&] { second = checker.RunAll(); });
  std::this_thread::sleep_for(milliseconds(20));  // let b find the run in flight
  gate->Open();
  a.join();
  b.join();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(first.checks[0].reason, "ok");
  EXPECT_EQ(second.checks[0].reason, "ok");
}

TEST(HealthChecker, DestructorWaitsForChecksStillRunning) {
  auto finished = std::make_shared<std::atomic<bool>>(false);
  {
    HealthChecker checker;
    ASSERT_TRUE(checker
                    .Register(
                        "sleepy",
                        [finished] {
                          std::this_thread::sleep_for(milliseconds(150));
                          finished->store(true);
                          return CheckResult{};
                        },
                        milliseconds(10))
                    .ok());
    EXPECT_EQ(checker.RunAll().checks[0].state, HealthState::kUnhealthy);
    EXPECT_FALSE(finished->load());
  }
  EXPECT_TRUE(finished->load());
}

TEST(HealthChecker, RegisterRejectsBadInput) {
  HealthChecker checker;
  auto ok = [] { return CheckResult{}; };
  EXPECT_EQ(checker.Register("", ok).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(checker.Register("store", nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(checker.Register("store", ok, milliseconds(0)).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(checker.Register("store", ok).ok());
  const Status dup = checker.Register("store", ok);
  EXPECT_EQ(dup.code(), StatusCode::kAlreadyExists);
  EXPECT_THAT(dup.message(), HasSubstr("'store'"));
}

TEST(HealthResources, DegradedAboveWarnUnhealthyAboveCritical) {
  const SystemSample calm{.cpu_percent = 10,
                          .resident_bytes = 1e8,
                          .system_memory_used_ratio = 0.5,
                          .disk_used_ratio = 0.3,
                          .open_fds = 10,
                          .max_fds = 1024};
  struct Case {
    const char* name;
    SystemSample sample;
    HealthState state;
    const char* reason;  // a part of it
  };
  auto with = [&](auto field, double value) {
    SystemSample s = calm;
    s.*field = value;
    return s;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Case cases[] = {
      {"calm", calm, HealthState::kHealthy, "CPU 10.0%, system memory used 0.50, disk used 0.30"},
      {"cpu at warn", with(&SystemSample::cpu_percent, 80), HealthState::kHealthy, "CPU 80.0%"},
      {"cpu over warn", with(&SystemSample::cpu_percent, 85), HealthState::kDegraded,
       "CPU 85.0% > 80.0% (warning)"},
      {"cpu over critical", with(&SystemSample::cpu_percent, 99), HealthState::kUnhealthy,
       "CPU 99.0% > 95.0% (critical)"},
      {"memory", with(&SystemSample::system_memory_used_ratio, 0.85), HealthState::kDegraded,
       "system memory used 0.85 > 0.80"},
      {"disk", with(&SystemSample::disk_used_ratio, 0.97), HealthState::kUnhealthy,
       "disk used 0.97 > 0.95 (critical)"},
      {"descriptors", with(&SystemSample::open_fds, 1000), HealthState::kUnhealthy,
       "file descriptors used 0.98 > 0.95"},
      {"unmeasured disk", with(&SystemSample::disk_used_ratio, nan), HealthState::kHealthy,
       "CPU 10.0%, system memory used 0.50, file descriptors"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const CheckResult r = EvaluateResources(c.sample, {});
    EXPECT_EQ(r.state, c.state);
    EXPECT_THAT(r.reason, HasSubstr(c.reason));
  }

  // Two over their levels: the worst wins and both are named.
  SystemSample both = with(&SystemSample::cpu_percent, 85);
  both.disk_used_ratio = 0.99;
  const CheckResult r = EvaluateResources(both, {});
  EXPECT_EQ(r.state, HealthState::kUnhealthy);
  EXPECT_EQ(r.reason, "CPU 85.0% > 80.0% (warning); disk used 0.99 > 0.95 (critical)");
}

TEST(HealthResources, AnUnmeasuredSampleIsDegraded) {
  HealthCheck check = ResourceCheck(
      []() -> Result<SystemSample> { return NotFoundError("cannot open /proc/meminfo"); });
  const CheckResult r = check();
  EXPECT_EQ(r.state, HealthState::kDegraded);
  EXPECT_THAT(r.reason, HasSubstr("cannot open /proc/meminfo"));
}

TEST(HealthStatusCheck, MapsTheStatus) {
  Status next = Status::Ok();
  HealthCheck check = StatusCheck([&] { return next; });
  EXPECT_EQ(check().state, HealthState::kHealthy);
  EXPECT_EQ(check().reason, "ok");
  next = UnavailableError("store is locked: /var/lib/mann/mann.db");
  EXPECT_EQ(check().state, HealthState::kUnhealthy);
  EXPECT_EQ(check().reason, "unavailable: store is locked: /var/lib/mann/mann.db");
  HealthCheck soft = StatusCheck([] { return InternalError("x"); }, HealthState::kDegraded);
  EXPECT_EQ(soft().state, HealthState::kDegraded);
}

}  // namespace
}  // namespace mann::monitor
