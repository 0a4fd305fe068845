#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <exception>
#include <set>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <mann/core/log.h>
#include <mann/monitor/monitor.h>

namespace mann::monitor {
namespace {

std::shared_ptr<spdlog::logger> Log() {
  static const std::shared_ptr<spdlog::logger> logger = log::Get("monitor");
  return logger;
}

constexpr std::array<AlertEventKind, 3> kKinds = {
    AlertEventKind::kTrigger, AlertEventKind::kRenotify, AlertEventKind::kResolve};
// The probe's sources, as ProbeError::source names them.
constexpr std::array<std::string_view, 6> kProbeSources = {
    "cpu", "resident_memory", "system_memory", "open_fds", "max_fds", "disk"};

const std::set<std::string, std::less<>>& BuiltInMetrics() {
  static const std::set<std::string, std::less<>> metrics = {
      std::string(kCpuPercentMetric),     std::string(kSystemMemoryMetric),
      std::string(kDiskMetric),           std::string(kResidentBytesMetric),
      std::string(kFdUtilizationMetric),  std::string(kErrorRateMetric),
      std::string(kProcessingTimeMetric), std::string(kHealthStateMetric)};
  return metrics;
}

std::optional<double> Known(double v) {
  if (std::isnan(v)) return std::nullopt;
  return v;
}

std::string ExceptionText(std::exception_ptr e) {
  try {
    std::rethrow_exception(std::move(e));
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace

// Logs a failing source once per distinct error, and once when it recovers, so a broken /proc
// file read every 30 s makes two lines, not one per tick.
class Monitor::ErrorLog {
 public:
  void Failed(const std::string& source, const std::string& error) {
    Entry& entry = failing_[source];
    ++entry.failures;
    if (entry.error == error) return;
    entry.error = error;
    Log()->warn(
        "monitor source failed source={} error={}: its metric is skipped until it can be read "
        "again",
        source, error);
  }

  void Succeeded(const std::string& source) {
    auto it = failing_.find(source);
    if (it == failing_.end()) return;
    Log()->info("monitor source recovered source={} failed_ticks={}", source, it->second.failures);
    failing_.erase(it);
  }

 private:
  struct Entry {
    std::string error;
    std::uint64_t failures = 0;
  };
  std::map<std::string, Entry> failing_;
};

// The monitor's metric families and callbacks; the callbacks are removed when it is destroyed.
struct Monitor::MetricHandles {
  std::vector<metrics::CallbackHandle> callbacks;
  std::array<std::array<metrics::Counter*, kSeverities.size()>, kKinds.size()> events{};
  std::array<std::array<metrics::Counter*, kSeverities.size()>, kKinds.size()> withheld{};
  metrics::CounterFamily* errors = nullptr;
};

Result<std::unique_ptr<Monitor>> Monitor::Create(MonitorOptions options, const Clock& clock) {
  if (options.interval.count() <= 0) {
    return InvalidArgumentError(fmt::format("monitor interval is {} ms, expected a positive time",
                                            options.interval.count()));
  }
  AlertEngineOptions alerts = options.alerts;
  alerts.subject_labels.emplace(kHealthStateMetric, "check");
  MANN_ASSIGN_OR_RETURN(auto engine, AlertEngine::Create(options.rules, std::move(alerts)));
  std::unique_ptr<Monitor> monitor(new Monitor(std::move(options), clock, std::move(engine)));

  // The "system" check judges the sample of the tick that runs it, so it never reads /proc
  // itself (which would disturb the CPU measurement between ticks).
  MANN_RETURN_IF_ERROR(monitor->health_->Register(
      "system", [m = monitor.get(), thresholds = monitor->options_.resources]() -> CheckResult {
        std::optional<SystemSample> sample = m->LastSample();
        if (!sample) return {HealthState::kHealthy, "not sampled yet"};
        return EvaluateResources(*sample, thresholds);
      }));
  return monitor;
}

Monitor::Monitor(MonitorOptions options, const Clock& clock, std::unique_ptr<AlertEngine> engine)
    : options_(std::move(options)),
      clock_(clock),
      probe_(options_.probe),
      window_(clock, options_.request_window),
      engine_(std::move(engine)),
      error_log_(std::make_unique<ErrorLog>()),
      health_(std::make_unique<HealthChecker>(options_.health_budget)) {}

Monitor::~Monitor() { Stop(); }

Status Monitor::AddSource(std::string metric, MetricSource source, std::string subject_label) {
  const bool well_formed = !metric.empty() &&
                           !std::isdigit(static_cast<unsigned char>(metric.front())) &&
                           std::all_of(metric.begin(), metric.end(), [](char c) {
                             return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
                           });
  if (!well_formed) {
    return InvalidArgumentError(
        fmt::format("monitor source metric '{}' must match [a-z_][a-z0-9_]*", metric));
  }
  if (!source) {
    return InvalidArgumentError(fmt::format("monitor source '{}' has no function", metric));
  }
  if (BuiltInMetrics().contains(metric)) {
    return AlreadyExistsError(
        fmt::format("monitor source metric '{}' is reported by the monitor itself", metric));
  }
  std::lock_guard lock(mu_);
  for (const Source& s : sources_) {
    if (s.metric == metric) {
      return AlreadyExistsError(fmt::format("monitor source '{}' is already added", metric));
    }
  }
  engine_->SetSubjectLabel(metric, std::move(subject_label));
  sources_.push_back({std::move(metric), std::move(source)});
  return Status::Ok();
}

Status Monitor::CheckRules() const {
  std::set<std::string, std::less<>> known = BuiltInMetrics();
  {
    std::lock_guard lock(mu_);
    for (const Source& s : sources_) known.insert(s.metric);
  }
  std::vector<std::string> orphans;
  for (const AlertRule& rule : engine_->rules()) {
    if (!known.contains(rule.metric)) {
      orphans.push_back(fmt::format("'{}' (metric '{}')", rule.name, rule.metric));
    }
  }
  if (orphans.empty()) return Status::Ok();
  return InvalidArgumentError(fmt::format(
      "alert rules {} watch metrics that nothing reports, so they can never fire; reported "
      "metrics: {}",
      fmt::join(orphans, ", "), fmt::join(known, ", ")));
}

// ---- Metrics ----------------------------------------------------------------------------------

Status Monitor::RegisterMetrics(metrics::Registry& registry) {
  {
    std::lock_guard lock(mu_);
    if (metrics_) return FailedPreconditionError("monitor metrics are already registered");
  }
  auto handles = std::make_shared<MetricHandles>();
  auto add_value = [&](std::string_view name, std::string_view help,
                       metrics::ValueCallback callback) -> Status {
    MANN_ASSIGN_OR_RETURN(auto handle, registry.AddGaugeCallback(name, help, std::move(callback)));
    handles->callbacks.push_back(std::move(handle));
    return Status::Ok();
  };
  auto sampled = [this](double SystemSample::*field) {
    return [this, field]() -> std::optional<double> {
      std::optional<SystemSample> s = LastSample();
      return s ? Known((*s).*field) : std::nullopt;
    };
  };

  // System, as of the last tick.
  MANN_RETURN_IF_ERROR(add_value(
      "mann_system_cpu_percent",
      "CPU time the process used over the last monitor interval, in percent of all cores.",
      sampled(&SystemSample::cpu_percent)));
  MANN_RETURN_IF_ERROR(add_value("mann_system_memory_used_ratio",
                                 "Share of the machine's memory not available (1 - "
                                 "MemAvailable/MemTotal), as of the last monitor tick.",
                                 sampled(&SystemSample::system_memory_used_ratio)));
  MANN_RETURN_IF_ERROR(
      add_value("mann_disk_used_ratio",
                "Share of the data directory's file system in use, as of the last monitor tick.",
                sampled(&SystemSample::disk_used_ratio)));

  // Requests, at scrape time.
  MANN_RETURN_IF_ERROR(
      add_value("mann_request_error_ratio",
                "Share of the requests of the monitor's window answered with a 5xx status.",
                [this]() -> std::optional<double> { return window_.Snapshot().error_rate; }));
  const std::pair<std::string_view, double WindowSnapshot::*> percentiles[] = {
      {"p50", &WindowSnapshot::p50}, {"p95", &WindowSnapshot::p95}, {"p99", &WindowSnapshot::p99}};
  for (const auto& [name, field] : percentiles) {
    MANN_RETURN_IF_ERROR(add_value(
        fmt::format("mann_request_duration_{}_seconds", name),
        fmt::format("{} percentile of request durations in the monitor's window (0 when empty), "
                    "within 6%.",
                    name),
        [this, field = field]() -> std::optional<double> { return window_.Snapshot().*field; }));
  }

  // Alerts.
  MANN_ASSIGN_OR_RETURN(auto active,
                        registry.AddGaugeCallback(
                            "mann_alerts_active", "Alerts firing, by level.", {"level"}, [this] {
                              std::array<double, kSeverities.size()> counts{};
                              for (const ActiveAlert& a : engine_->Active()) {
                                if (a.phase == AlertPhase::kFiring) {
                                  counts[static_cast<std::size_t>(a.level)] += 1;
                                }
                              }
                              std::vector<metrics::Sample> samples;
                              for (Level level : kSeverities) {
                                samples.push_back({{std::string(LevelName(level))},
                                                   counts[static_cast<std::size_t>(level)]});
                              }
                              return samples;
                            }));
  handles->callbacks.push_back(std::move(active));
  MANN_ASSIGN_OR_RETURN(
      auto* events,
      registry.AddCounter("mann_alert_events_total",
                          "Alert events emitted (trigger, renotify, resolve).", {"kind", "level"}));
  MANN_ASSIGN_OR_RETURN(
      auto* withheld,
      registry.AddCounter("mann_alert_events_withheld_total",
                          "Alert events not delivered because the notification gate refused "
                          "them (another replica notifies).",
                          {"kind", "level"}));
  for (std::size_t k = 0; k < kKinds.size(); ++k) {
    for (std::size_t l = 0; l < kSeverities.size(); ++l) {
      const std::string_view labels[] = {AlertEventKindName(kKinds[k]), LevelName(kSeverities[l])};
      handles->events[k][l] = &events->WithLabels(labels);
      handles->withheld[k][l] = &withheld->WithLabels(labels);
    }
  }

  // Health and the monitor's own failures.
  MANN_ASSIGN_OR_RETURN(
      auto health,
      registry.AddGaugeCallback(
          "mann_health_check_status",
          "State of each health check at the last monitor tick: 0 healthy, 1 degraded, 2 "
          "unhealthy.",
          {"check"}, [this] {
            std::vector<metrics::Sample> samples;
            if (std::optional<HealthReport> report = LastHealth()) {
              for (const CheckReport& c : report->checks) {
                samples.push_back({{c.name}, static_cast<double>(c.state)});
              }
            }
            return samples;
          }));
  handles->callbacks.push_back(std::move(health));
  MANN_ASSIGN_OR_RETURN(handles->errors,
                        registry.AddCounter("mann_monitor_errors_total",
                                            "Monitor ticks on which a probe source, a metric "
                                            "source or the alert sink failed.",
                                            {"source"}));

  std::lock_guard lock(mu_);
  if (metrics_) return FailedPreconditionError("monitor metrics are already registered");
  metrics_ = std::move(handles);
  return Status::Ok();
}

void Monitor::CountError(const std::string& source) {
  std::shared_ptr<MetricHandles> m;
  {
    std::lock_guard lock(mu_);
    m = metrics_;
  }
  if (m) m->errors->WithLabels({source}).Inc();
}

// ---- Ticks ------------------------------------------------------------------------------------

TickResult Monitor::Tick() { return Tick(clock_.NowMs()); }

TickResult Monitor::Tick(TimestampMs now) {
  std::lock_guard tick(tick_mu_);
  TickResult result;
  ReadSystem(now, result);
  ReadRequests(now, result.values);
  ReadSources(result.values);
  RunHealth(result);
  result.events = engine_->Evaluate(result.values, now, options_.may_notify);
  Deliver(result.events);
  return result;
}

void Monitor::ReadSystem(TimestampMs now, TickResult& result) {
  ProbeReading reading = probe_.Read(now);
  for (std::string_view source : kProbeSources) {
    const std::string name(source);
    auto failed = std::find_if(reading.errors.begin(), reading.errors.end(),
                               [&](const ProbeError& e) { return e.source == name; });
    if (failed == reading.errors.end()) {
      error_log_->Succeeded(name);
    } else {
      error_log_->Failed(name, failed->status.ToString());
      CountError(name);
    }
  }

  const SystemSample& s = reading.sample;
  auto put = [&](std::string_view metric, double value) {
    if (!std::isnan(value)) result.values[std::string(metric)][""] = value;
  };
  put(kCpuPercentMetric, s.cpu_percent);
  put(kSystemMemoryMetric, s.system_memory_used_ratio);
  put(kDiskMetric, s.disk_used_ratio);
  put(kResidentBytesMetric, s.resident_bytes);
  if (std::isfinite(s.max_fds) && s.max_fds > 0) put(kFdUtilizationMetric, s.open_fds / s.max_fds);

  result.probe_errors = std::move(reading.errors);
  std::lock_guard lock(mu_);
  last_sample_ = s;
}

void Monitor::ReadRequests(TimestampMs now, MetricValues& values) {
  const WindowSnapshot w = window_.Snapshot(now);
  if (w.count > 0 && w.count < options_.min_requests) return;
  values[std::string(kErrorRateMetric)][""] = w.error_rate;
  values[std::string(kProcessingTimeMetric)][""] = w.p95;
}

void Monitor::ReadSources(MetricValues& values) {
  std::vector<Source> sources;
  {
    std::lock_guard lock(mu_);
    sources = sources_;
  }
  for (const Source& source : sources) {
    try {
      values[source.metric] = source.read();
      error_log_->Succeeded(source.metric);
    } catch (...) {
      error_log_->Failed(source.metric, ExceptionText(std::current_exception()));
      CountError(source.metric);
    }
  }
}

void Monitor::RunHealth(TickResult& result) {
  result.health = health_->RunAll();
  auto& states = result.values[std::string(kHealthStateMetric)];
  for (const CheckReport& c : result.health.checks) states[c.name] = static_cast<double>(c.state);

  std::optional<HealthReport> previous;
  {
    std::lock_guard lock(mu_);
    previous = std::exchange(last_health_, result.health);
  }
  const HealthState was = previous ? previous->overall : HealthState::kHealthy;
  if (result.health.overall == was) return;
  std::vector<std::string> reasons;
  for (const CheckReport& c : result.health.checks) {
    if (c.state != HealthState::kHealthy)
      reasons.push_back(fmt::format("{}: {}", c.name, c.reason));
  }
  if (result.health.overall > was) {
    Log()->warn("health changed from={} to={} checks=[{}]: see GET /health for details",
                HealthStateName(was), HealthStateName(result.health.overall),
                fmt::join(reasons, "; "));
  } else {
    Log()->info("health changed from={} to={}", HealthStateName(was),
                HealthStateName(result.health.overall));
  }
}

void Monitor::Deliver(const std::vector<AlertEvent>& events) {
  std::shared_ptr<MetricHandles> m;
  {
    std::lock_guard lock(mu_);
    m = metrics_;
  }
  for (const AlertEvent& e : events) {
    const auto k = static_cast<std::size_t>(e.kind);
    const auto l = static_cast<std::size_t>(e.level);
    // A taken-over event was counted (and logged) when it was first emitted and withheld.
    if (m && !e.taken_over) m->events[k][l]->Inc();
    const spdlog::level::level_enum level =
        e.kind == AlertEventKind::kRenotify  ? spdlog::level::debug
        : e.kind == AlertEventKind::kResolve ? spdlog::level::info
                                             : spdlog::level::warn;
    Log()->log(level, "alert {} dedup_key={} level={} withheld={} taken_over={} message=\"{}\"",
               AlertEventKindName(e.kind), e.dedup_key, LevelName(e.level), e.withheld,
               e.taken_over, e.message);
    if (e.withheld) {
      if (m) m->withheld[k][l]->Inc();
      continue;
    }
    if (!options_.sink) continue;
    try {
      options_.sink(e);
      error_log_->Succeeded("sink");
    } catch (...) {
      // Not confirmed: the other replicas' copies stay pending and take over after the TTL.
      error_log_->Failed("sink", ExceptionText(std::current_exception()));
      CountError("sink");
      continue;
    }
    ConfirmDelivered(e);
  }
}

void Monitor::ConfirmDelivered(const AlertEvent& event) {
  if (!options_.may_notify.delivered) return;
  try {
    options_.may_notify.delivered(event);
  } catch (...) {
    Log()->error("alert gate failed to confirm a delivery dedup_key={} error={}", event.dedup_key,
                 ExceptionText(std::current_exception()));
  }
}

// ---- Thread -----------------------------------------------------------------------------------

Status Monitor::Start() {
  std::lock_guard lock(run_mu_);
  if (thread_.joinable()) return FailedPreconditionError("monitor is already running");
  if (Status rules = CheckRules(); !rules.ok()) {
    Log()->warn("monitor rules incomplete error={}: add the missing sources or drop the rules",
                rules.message());
  }
  stop_ = false;
  thread_ = std::thread([this] { Loop(); });
  Log()->info("monitor started interval_ms={} rules={}", options_.interval.count(),
              engine_->rules().size());
  return Status::Ok();
}

void Monitor::Stop() {
  std::thread thread;
  {
    std::lock_guard lock(run_mu_);
    if (!thread_.joinable()) return;
    stop_ = true;
    thread = std::move(thread_);
  }
  run_cv_.notify_all();
  thread.join();
}

bool Monitor::running() const {
  std::lock_guard lock(run_mu_);
  return thread_.joinable();
}

void Monitor::Loop() {
  std::unique_lock lock(run_mu_);
  while (!stop_) {
    lock.unlock();
    try {
      Tick();
    } catch (...) {
      // Sources, checks, the gate and the sink are guarded; this is memory exhaustion or a bug.
      Log()->error("monitor tick failed error={}: the next tick runs as scheduled",
                   ExceptionText(std::current_exception()));
    }
    lock.lock();
    run_cv_.wait_for(lock, options_.interval, [&] { return stop_; });
  }
}

std::optional<SystemSample> Monitor::LastSample() const {
  std::lock_guard lock(mu_);
  return last_sample_;
}

std::optional<HealthReport> Monitor::LastHealth() const {
  std::lock_guard lock(mu_);
  return last_health_;
}

}  // namespace mann::monitor
