// HealthChecker: named checks of the service's parts (storage, memory bank, system resources),
// run together into one report for /health and the monitor's periodic check.
//
//   monitor::HealthChecker health;
//   MANN_RETURN_IF_ERROR(health.Register("store", monitor::StatusCheck([&] {
//     return store.Ping();
//   })));
//   monitor::HealthReport report = health.RunAll();
//   return server::Response::Json(monitor::ToJson(report), report.overall ==
//       monitor::HealthState::kUnhealthy ? 503 : 200);
//
// Each check runs on a thread of its own, so a slow one delays the report by at most its time
// budget (default 5 s) and never delays the others. A check that throws is reported unhealthy
// with the exception's message; one that has not returned when its budget is spent is reported
// unhealthy ("did not finish within 5 s") and left to finish in the background. While a run of
// a check is still going, RunAll starts no second one: it waits on the same run, so a check that
// hangs costs one thread, not one per report.
//
// Thread-safety: every member may be called concurrently; checks must be safe to run on any
// thread, and two different checks may run at once.
// Lifetime: the destructor waits for check runs still going (they may use what their function
// captured), so every check must return eventually: give its I/O a timeout.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/value.hpp>

#include <mann/core/status.h>
#include <mann/monitor/probes.h>

namespace mann::monitor {

// Ordered from best to worst: a report's overall state is the maximum of its checks'.
enum class HealthState { kHealthy, kDegraded, kUnhealthy };

// "healthy", "degraded", "unhealthy".
std::string_view HealthStateName(HealthState state);

struct CheckResult {
  HealthState state = HealthState::kHealthy;
  std::string reason;  // for the operator: what is wrong, or a short summary when healthy
};

using HealthCheck = std::function<CheckResult()>;

struct CheckReport {
  std::string name;
  HealthState state = HealthState::kHealthy;
  std::string reason;
  // How long the check took; for one that did not finish, how long it has been running.
  std::chrono::duration<double> duration{0};
};

struct HealthReport {
  HealthState overall = HealthState::kHealthy;  // the worst check's; healthy with no checks
  std::vector<CheckReport> checks;              // in registration order
};

// {"status": "degraded", "checks": [{"name": "store", "status": "healthy", "reason": "ok",
//  "duration_seconds": 0.0012}, ...]}
boost::json::value ToJson(const HealthReport& report);

class HealthChecker {
 public:
  static constexpr std::chrono::milliseconds kDefaultBudget{5000};

  explicit HealthChecker(std::chrono::milliseconds default_budget = kDefaultBudget);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Adds a check; `budget` overrides the default. InvalidArgument for an empty name or a
  // budget that is not positive; AlreadyExists when the name is taken.
  Status Register(std::string name, HealthCheck check,
                  std::optional<std::chrono::milliseconds> budget = std::nullopt);

  // Runs every check (see above) and waits for each until its budget is spent.
  HealthReport RunAll();

 private:
  struct Run;
  struct Entry;
  struct Control;

  // Starts `entry`'s check on a thread of its own, or returns the run still going.
  std::shared_ptr<Run> StartRun(Entry& entry);

  const std::chrono::milliseconds default_budget_;
  std::shared_ptr<Control> control_;  // counts runs in flight; shared with their threads
  std::mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_;  // guarded by mu_
};

// ---- Ready-made checks ------------------------------------------------------------------------

// Levels above which (strictly) a resource is degraded ("warn") or unhealthy ("critical").
struct ResourceThresholds {
  double cpu_percent_warn = 80.0;
  double cpu_percent_critical = 95.0;
  double memory_warn = 0.80;  // system_memory_used_ratio
  double memory_critical = 0.95;
  double disk_warn = 0.90;  // disk_used_ratio
  double disk_critical = 0.95;
  double fds_warn = 0.80;  // open_fds / max_fds
  double fds_critical = 0.95;
};

// The worst of the sample's resources against the thresholds, with a reason naming each one
// over its level ("disk used 0.93 > 0.9"), or a summary when all are within. Fields that are
// NaN (not measured) are left out.
CheckResult EvaluateResources(const SystemSample& sample, const ResourceThresholds& thresholds);

// A check of the sample `sample` returns; when that fails, degraded with its error (the
// resources could not be measured, which is not evidence that they are exhausted).
HealthCheck ResourceCheck(std::function<Result<SystemSample>()> sample,
                          ResourceThresholds thresholds = {});

// A check of a Status-returning probe (a store ping, a memory-bank self-test): healthy "ok"
// when it returns OK, else `on_error` with the status as the reason.
HealthCheck StatusCheck(std::function<Status()> probe,
                        HealthState on_error = HealthState::kUnhealthy);

}  // namespace mann::monitor
