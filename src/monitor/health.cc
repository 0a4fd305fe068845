#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <system_error>
#include <thread>
#include <utility>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <mann/monitor/health.h>

namespace mann::monitor {
namespace {

using SteadyClock = std::chrono::steady_clock;

// "250 ms", "5 s", "1.5 s": budgets and running times for people.
std::string FormatSeconds(std::chrono::duration<double> d) {
  const double s = d.count();
  if (s < 1.0) return fmt::format("{:.0f} ms", s * 1000.0);
  return fmt::format("{:g} s", std::round(s * 10.0) / 10.0);
}

// Runs `check`, turning an exception into an unhealthy result.
CheckResult Invoke(const HealthCheck& check) {
  try {
    return check();
  } catch (const std::exception& e) {
    return {HealthState::kUnhealthy, fmt::format("check threw: {}", e.what())};
  } catch (...) {
    return {HealthState::kUnhealthy, "check threw an unknown exception"};
  }
}

}  // namespace

std::string_view HealthStateName(HealthState state) {
  switch (state) {
    case HealthState::kHealthy:
      return "healthy";
    case HealthState::kDegraded:
      return "degraded";
    case HealthState::kUnhealthy:
      return "unhealthy";
  }
  return "unhealthy";
}

boost::json::value ToJson(const HealthReport& report) {
  boost::json::array checks;
  for (const CheckReport& c : report.checks) {
    checks.push_back(boost::json::object{{"name", c.name},
                                         {"status", HealthStateName(c.state)},
                                         {"reason", c.reason},
                                         {"duration_seconds", c.duration.count()}});
  }
  return boost::json::object{{"status", HealthStateName(report.overall)},
                             {"checks", std::move(checks)}};
}

// ---- HealthChecker ----------------------------------------------------------------------------

// One execution of a check, shared by its thread and every RunAll waiting for it.
struct HealthChecker::Run {
  SteadyClock::time_point started = SteadyClock::now();
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;                      // guarded by mu
  CheckResult result;                     // guarded by mu; set when done
  std::chrono::duration<double> took{0};  // guarded by mu; set when done
};

struct HealthChecker::Entry {
  std::string name;
  std::shared_ptr<const HealthCheck> check;
  std::chrono::milliseconds budget;
  std::shared_ptr<Run> last;  // the latest run; guarded by HealthChecker::mu_
};

// Outlives the checker while runs are in flight, so their threads can report the end of them.
struct HealthChecker::Control {
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;  // guarded by mu
};

HealthChecker::HealthChecker(std::chrono::milliseconds default_budget)
    : default_budget_(default_budget.count() > 0 ? default_budget : kDefaultBudget),
      control_(std::make_shared<Control>()) {}

HealthChecker::~HealthChecker() {
  std::unique_lock lock(control_->mu);
  control_->cv.wait(lock, [&] { return control_->in_flight == 0; });
}

Status HealthChecker::Register(std::string name, HealthCheck check,
                               std::optional<std::chrono::milliseconds> budget) {
  if (name.empty()) return InvalidArgumentError("health check name is empty");
  if (!check) return InvalidArgumentError(fmt::format("health check '{}' has no function", name));
  if (budget && budget->count() <= 0) {
    return InvalidArgumentError(fmt::format(
        "health check '{}' budget is {} ms, expected a positive duration", name, budget->count()));
  }
  std::lock_guard lock(mu_);
  for (const auto& e : entries_) {
    if (e->name == name) {
      return AlreadyExistsError(fmt::format("health check '{}' is already registered", name));
    }
  }
  auto entry = std::make_unique<Entry>();
  entry->name = std::move(name);
  entry->check = std::make_shared<const HealthCheck>(std::move(check));
  entry->budget = budget.value_or(default_budget_);
  entries_.push_back(std::move(entry));
  return Status::Ok();
}

std::shared_ptr<HealthChecker::Run> HealthChecker::StartRun(Entry& entry) {
  if (entry.last) {
    std::lock_guard lock(entry.last->mu);
    if (!entry.last->done) return entry.last;
  }
  auto run = std::make_shared<Run>();
  entry.last = run;
  {
    std::lock_guard lock(control_->mu);
    ++control_->in_flight;
  }
  auto finish = [run, control = control_](CheckResult result) {
    {
      std::lock_guard lock(run->mu);
      run->result = std::move(result);
      run->took = SteadyClock::now() - run->started;
      run->done = true;
    }
    run->cv.notify_all();
    std::lock_guard lock(control->mu);
    --control->in_flight;
    control->cv.notify_all();
  };
  try {
    std::thread([check = entry.check, finish]() mutable {
      CheckResult result = Invoke(*check);
      check.reset();  // what the check captured is released before the checker may go
      finish(std::move(result));
    }).detach();
  } catch (const std::system_error& e) {
    finish({HealthState::kUnhealthy, fmt::format("could not start the check: {}", e.what())});
  }
  return run;
}

HealthReport HealthChecker::RunAll() {
  // Start every check first, so they run side by side.
  struct Pending {
    std::string name;
    std::chrono::milliseconds budget;
    std::shared_ptr<Run> run;
  };
  std::vector<Pending> pending;
  {
    std::lock_guard lock(mu_);
    pending.reserve(entries_.size());
    for (auto& entry : entries_) pending.push_back({entry->name, entry->budget, StartRun(*entry)});
  }

  // Then wait for each until its own deadline.
  HealthReport report;
  for (Pending& p : pending) {
    CheckReport c;
    c.name = std::move(p.name);
    std::unique_lock lock(p.run->mu);
    if (p.run->cv.wait_until(lock, p.run->started + p.budget, [&] { return p.run->done; })) {
      c.state = p.run->result.state;
      c.reason = p.run->result.reason;
      c.duration = p.run->took;
    } else {
      c.duration = SteadyClock::now() - p.run->started;
      c.state = HealthState::kUnhealthy;
      c.reason = fmt::format("did not finish within its {} budget (running for {})",
                             FormatSeconds(p.budget), FormatSeconds(c.duration));
    }
    report.overall = std::max(report.overall, c.state);
    report.checks.push_back(std::move(c));
  }
  return report;
}

// ---- Ready-made checks ------------------------------------------------------------------------

CheckResult EvaluateResources(const SystemSample& sample, const ResourceThresholds& thresholds) {
  struct Resource {
    std::string_view label;
    double value;
    double warn;
    double critical;
    bool percent;
  };
  const double fds = sample.max_fds > 0 && std::isfinite(sample.max_fds)
                         ? sample.open_fds / sample.max_fds
                         : std::nan("");
  const Resource resources[] = {
      {"CPU", sample.cpu_percent, thresholds.cpu_percent_warn, thresholds.cpu_percent_critical,
       true},
      {"system memory used", sample.system_memory_used_ratio, thresholds.memory_warn,
       thresholds.memory_critical, false},
      {"disk used", sample.disk_used_ratio, thresholds.disk_warn, thresholds.disk_critical, false},
      {"file descriptors used", fds, thresholds.fds_warn, thresholds.fds_critical, false},
  };
  auto show = [](double v, bool percent) {
    return percent ? fmt::format("{:.1f}%", v) : fmt::format("{:.2f}", v);
  };

  CheckResult result;
  std::vector<std::string> over;
  std::vector<std::string> summary;
  for (const Resource& r : resources) {
    if (std::isnan(r.value)) continue;
    summary.push_back(fmt::format("{} {}", r.label, show(r.value, r.percent)));
    HealthState state = HealthState::kHealthy;
    double level = 0;
    if (r.value > r.critical) {
      state = HealthState::kUnhealthy;
      level = r.critical;
    } else if (r.value > r.warn) {
      state = HealthState::kDegraded;
      level = r.warn;
    }
    if (state == HealthState::kHealthy) continue;
    over.push_back(fmt::format("{} {} > {} ({})", r.label, show(r.value, r.percent),
                               show(level, r.percent),
                               state == HealthState::kUnhealthy ? "critical" : "warning"));
    result.state = std::max(result.state, state);
  }
  result.reason = over.empty() ? fmt::format("{}", fmt::join(summary, ", "))
                               : fmt::format("{}", fmt::join(over, "; "));
  if (result.reason.empty()) result.reason = "no resource could be measured";
  return result;
}

HealthCheck ResourceCheck(std::function<Result<SystemSample>()> sample,
                          ResourceThresholds thresholds) {
  return [sample = std::move(sample), thresholds]() -> CheckResult {
    Result<SystemSample> s = sample();
    if (!s.ok()) {
      return {HealthState::kDegraded,
              fmt::format("resources not measured: {}", s.status().ToString())};
    }
    return EvaluateResources(*s, thresholds);
  };
}

HealthCheck StatusCheck(std::function<Status()> probe, HealthState on_error) {
  return [probe = std::move(probe), on_error]() -> CheckResult {
    Status status = probe();
    if (status.ok()) return {HealthState::kHealthy, "ok"};
    return {on_error, status.ToString()};
  };
}

}  // namespace mann::monitor
