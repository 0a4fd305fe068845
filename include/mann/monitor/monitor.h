// Monitor: the in-process monitor of the operations guide. Every interval it samples the
// machine, reads the request window and the registered metric sources, runs the health checks,
// evaluates the alert rules and hands the resulting events to a sink (the pager).
//
//   MonitorOptions options;
//   options.interval = std::chrono::seconds(config.health_check_interval);
//   options.probe.data_dir = config.data_dir;
//   options.sink = [&](const monitor::AlertEvent& e) { pager.Enqueue(e); };
//   MANN_ASSIGN_OR_RETURN(auto monitor, monitor::Monitor::Create(std::move(options)));
//   MANN_RETURN_IF_ERROR(monitor->AddSource("memory_utilization", [&] {
//     return UtilizationByNamespace(bank);  // {"alice": 0.93, "bob": 0.2}
//   }, "namespace"));
//   MANN_RETURN_IF_ERROR(monitor->health().Register("store", monitor::StatusCheck(...)));
//   MANN_RETURN_IF_ERROR(monitor->RegisterMetrics(metrics::Registry::Default()));
//   router.Use(monitor::RecordingMiddleware(monitor->window()));
//   MANN_RETURN_IF_ERROR(monitor->Start());
//
// One tick, at time `now`:
//   1. the SystemProbe is read; a source that fails is logged (once per distinct error, and
//      once more when it recovers), counted, and its metric is left out of this tick;
//   2. the request window's snapshot gives error_rate and processing_time (p95). With no
//      request in the window both are 0; with fewer than min_requests they are left out (too
//      few to judge: their alerts keep their state);
//   3. each source added with AddSource is called; one that throws is logged, counted and left
//      out;
//   4. the health checks run (the monitor registers "system", from this tick's sample); each
//      check's state (0 healthy, 1 degraded, 2 unhealthy) becomes metric health_state, and a
//      change of the overall state is logged;
//   5. the AlertEngine evaluates the values (asking `may_notify` again, first, for the events
//      it withheld earlier); every event is logged and counted, and each one `may_notify`
//      allows goes to `sink`, after which may_notify.delivered confirms it. A withheld event is
//      still in alerts().History(), marked withheld, and waits in alerts().Pending(); one
//      released later (its lock's holder never confirmed it) goes to `sink` then, marked
//      taken_over. A sink that throws is logged and counted, and its event is not confirmed;
//      the tick goes on.
//
// Metrics the alert rules can watch (AlertRule::metric), all with subject "" unless said:
//   cpu_percent      the process's CPU, % of the machine's capacity (SystemSample::cpu_percent)
//   system_memory    used ratio of the machine's memory
//   disk             used ratio of the data directory's file system
//   resident_bytes   the process's resident set size
//   fd_utilization   open file descriptors over their limit
//   error_rate       share of requests in the window answered 5xx
//   processing_time  p95 duration of requests in the window, seconds
//   health_state     per health check (subject: its name), 0 / 1 / 2 as above
// and whatever AddSource adds (e.g. memory_utilization per namespace).
//
// Thread-safety: every member may be called from any thread. Ticks are serialized, whether the
// monitor's thread or a caller runs them.
// Lifetime: the clock must outlive the monitor; the registry given to RegisterMetrics too. The
// destructor stops the thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <mann/core/clock.h>
#include <mann/core/status.h>
#include <mann/metrics/registry.h>
#include <mann/monitor/alerts.h>
#include <mann/monitor/health.h>
#include <mann/monitor/probes.h>
#include <mann/monitor/window.h>

namespace mann::monitor {

// The metrics a Monitor reports by itself (see above).
inline constexpr std::string_view kCpuPercentMetric = "cpu_percent";
inline constexpr std::string_view kSystemMemoryMetric = "system_memory";
inline constexpr std::string_view kDiskMetric = "disk";
inline constexpr std::string_view kResidentBytesMetric = "resident_bytes";
inline constexpr std::string_view kFdUtilizationMetric = "fd_utilization";
inline constexpr std::string_view kErrorRateMetric = "error_rate";
inline constexpr std::string_view kProcessingTimeMetric = "processing_time";
inline constexpr std::string_view kHealthStateMetric = "health_state";

// Values of one metric by subject, e.g. memory utilization by namespace. NaN leaves a subject's
// alert as it is.
using MetricSource = std::function<std::map<std::string, double>()>;

// Receives the events to deliver. Called on the ticking thread, one event at a time; it should
// hand the event over (to an outbox) rather than send it there and then.
using AlertSink = std::function<void(const AlertEvent&)>;

struct MonitorOptions {
  // Time between ticks of the monitor's thread (monitoring.health_check_interval).
  std::chrono::milliseconds interval{std::chrono::seconds(30)};
  SystemProbeOptions probe;
  std::chrono::seconds request_window = RequestWindow::kDefaultWindow;
  // Fewer requests than this in the window and error_rate and processing_time are not
  // evaluated: one failure out of three requests is not a 33% error rate worth a page.
  std::uint64_t min_requests = 10;
  std::vector<AlertRule> rules = DefaultAlertRules();
  AlertEngineOptions alerts;
  ResourceThresholds resources;  // of the "system" health check
  std::chrono::milliseconds health_budget = HealthChecker::kDefaultBudget;
  AlertSink sink;         // empty: events are only logged and kept in History
  NotifyGate may_notify;  // empty: every event may be delivered
};

// What one tick saw and did, for tests and for a command that runs a single check.
struct TickResult {
  MetricValues values;
  std::vector<ProbeError> probe_errors;
  HealthReport health;
  std::vector<AlertEvent> events;  // every event, withheld ones included
};

class Monitor {
 public:
  // InvalidArgument for a non-positive interval or rules that fail ValidateAlertRules.
  static Result<std::unique_ptr<Monitor>> Create(MonitorOptions options,
                                                 const Clock& clock = SystemClock::Instance());
  ~Monitor();
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  // Records the HTTP requests (RecordingMiddleware(window())).
  RequestWindow& window() { return window_; }
  HealthChecker& health() { return *health_; }
  AlertEngine& alerts() { return *engine_; }

  // Adds a metric for the alert rules; `subject_label` names its subjects in messages
  // ("namespace": "... on namespace alice"). InvalidArgument for a malformed name (see
  // AlertRule::metric); AlreadyExists for a built-in metric or one already added.
  Status AddSource(std::string metric, MetricSource source, std::string subject_label = "");

  // OK when every rule's metric is reported (built in or added); else InvalidArgument naming
  // each rule whose metric nothing reports, which would never fire. Start() logs the same as a
  // warning; a caller that wants to refuse such a configuration calls this first.
  Status CheckRules() const;

  // Registers, in `registry`, for as long as the monitor lives:
  //   mann_system_cpu_percent               gauge, as of the last tick
  //   mann_system_memory_used_ratio         gauge, as of the last tick
  //   mann_disk_used_ratio                  gauge, as of the last tick
  //   mann_request_error_ratio              gauge, of the request window at scrape time
  //   mann_request_duration_p50_seconds     gauge, likewise (and _p95_, _p99_)
  //   mann_alerts_active{level}             gauge, firing alerts (pending ones not counted)
  //   mann_alert_events_total{kind,level}   counter, events emitted, withheld ones included
  //                                         (a taken-over one is counted once, when emitted)
  //   mann_alert_events_withheld_total{kind,level}  counter, events the gate refused
  //   mann_health_check_status{check}       gauge, 0 healthy, 1 degraded, 2 unhealthy
  //   mann_monitor_errors_total{source}     counter, probe sources, metric sources and the
  //                                         sink ("sink") that failed
  // A gauge whose value is unknown (no tick yet, source failing) is left out of the scrape.
  // Errors: what the registry returns; FailedPrecondition when called twice.
  Status RegisterMetrics(metrics::Registry& registry);

  // One tick (see above) at the clock's time, or at `now`.
  TickResult Tick();
  TickResult Tick(TimestampMs now);

  // Starts the thread that ticks at once and then every interval (FailedPrecondition when it
  // runs already). Stop() wakes it and waits for the tick in progress, if any, to end; a tick
  // takes at most the health budget plus what the sources and the sink take.
  Status Start();
  void Stop();
  bool running() const;

  // The system sample and the health report of the last tick; std::nullopt before the first.
  std::optional<SystemSample> LastSample() const;
  std::optional<HealthReport> LastHealth() const;

 private:
  struct Source {
    std::string metric;
    MetricSource read;
  };
  struct MetricHandles;
  class ErrorLog;

  Monitor(MonitorOptions options, const Clock& clock, std::unique_ptr<AlertEngine> engine);

  void Loop();
  void CountError(const std::string& source);
  void ReadSystem(TimestampMs now, TickResult& result);
  void ReadRequests(TimestampMs now, MetricValues& values);
  void ReadSources(MetricValues& values);
  void RunHealth(TickResult& result);
  void Deliver(const std::vector<AlertEvent>& events);
  // Tells the gate that `event` reached the sink.
  void ConfirmDelivered(const AlertEvent& event);

  const MonitorOptions options_;
  const Clock& clock_;
  SystemProbe probe_;
  RequestWindow window_;
  std::unique_ptr<AlertEngine> engine_;
  std::unique_ptr<ErrorLog> error_log_;  // used under tick_mu_

  std::mutex tick_mu_;  // serializes ticks
  mutable std::mutex mu_;
  std::vector<Source> sources_;              // guarded by mu_
  std::optional<SystemSample> last_sample_;  // guarded by mu_
  std::optional<HealthReport> last_health_;  // guarded by mu_
  std::shared_ptr<MetricHandles> metrics_;   // guarded by mu_; null until RegisterMetrics

  // Declared after the state its "system" check reads, so that it is destroyed (waiting for
  // checks in flight) before that state.
  std::unique_ptr<HealthChecker> health_;

  mutable std::mutex run_mu_;
  std::condition_variable run_cv_;
  bool stop_ = false;   // guarded by run_mu_
  std::thread thread_;  // guarded by run_mu_ (Start and Stop)
};

}  // namespace mann::monitor
