// The monitor and the pager as the configuration describes them, and the health checks of the
// service's parts: what `mann serve` runs, what `mann chat`'s /health prints and what
// `mann alert` tests and lists.
//
//   MANN_ASSIGN_OR_RETURN(pager::PagerOptions po, PagerOptionsFromConfig(config));
//   MANN_ASSIGN_OR_RETURN(auto pager, pager::Pager::Create(std::move(po), rt.store()));
//   MANN_ASSIGN_OR_RETURN(monitor::MonitorOptions mo, MonitorOptionsFromConfig(config));
//   mo.sink = PagerSink(*pager);
//   mo.may_notify = ReplicaNotifyGate(config, redis);  // redis: nullptr without redis.url
//   MANN_ASSIGN_OR_RETURN(auto monitor, monitor::Monitor::Create(std::move(mo)));
//   MANN_RETURN_IF_ERROR(RegisterServiceChecks(monitor->health(), rt, {.pager = pager.get()}));
//
// An alert event becomes one notification (NotificationFromAlertEvent): trigger, renotify and
// resolve keep their kind and share the alert's dedup key, so PagerDuty updates and closes the
// incident it opened, and every channel can tell a reminder from a new page.
//
// Thread-safety: the functions are pure apart from what the checks and sinks they return call
// (the bank, the store and the pager are safe for concurrent use).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <mann/cache/alert_lock.h>
#include <mann/cache/redis.h>
#include <mann/config/config.h>
#include <mann/core/memory_bank.h>
#include <mann/core/status.h>
#include <mann/monitor/alerts.h>
#include <mann/monitor/health.h>
#include <mann/monitor/monitor.h>
#include <mann/pager/notification.h>
#include <mann/pager/pager.h>
#include <mann/runtime/runtime.h>

namespace mann::cli {

// ---- From the configuration ------------------------------------------------------------------

// monitoring.alert_rules parsed and validated, or monitor::DefaultAlertRules() when it is empty.
// InvalidArgument beginning "monitoring.alert_rules: " otherwise.
Result<std::vector<monitor::AlertRule>> AlertRulesFromConfig(const config::MonitoringConfig& c);

// monitoring.renotify_info .. renotify_critical.
monitor::RenotifyIntervals RenotifyFromConfig(const config::MonitoringConfig& c);

// Everything of MonitorOptions the configuration decides: interval, the data directory whose
// disk is watched, the request window, min_requests, the rules and the renotify floors. The
// sink and the gate are the caller's.
Result<monitor::MonitorOptions> MonitorOptionsFromConfig(const config::Config& config);

// The channels the configuration makes deliverable, each named after its kind, in this order:
//   slack      pager.webhook
//   pagerduty  pager.pagerduty_routing_key (pager.pagerduty_url, empty: the Events API v2)
//   email      pager.smtp_url with pager.smtp_from, pager.smtp_to and the other smtp_* keys
//   webhook    pager.json_webhook
// each taking pager.min_level, with the delivery policy of the pager.* keys. No channel at all
// is not an error here (config::LoadConfig refuses it when pager.enabled is set); the pager's
// own validation runs in pager::Pager::Create.
Result<pager::PagerOptions> PagerOptionsFromConfig(const config::Config& config);

// The setting that makes a channel of `kind` deliverable, for messages telling the operator
// what to set: "pager.webhook (MANN_PAGER_WEBHOOK)".
std::string ChannelSetting(pager::ChannelKind kind);

// ---- Alerts to notifications -----------------------------------------------------------------

// The notification of one alert event:
//   dedup_key  the alert's ("rule:subject")       kind   trigger, renotify or resolve
//   level      the rule's                         time   when the event happened
//   title      the rule's summary, "on <subject>" when it has one, and "(still firing)" for a
//              renotification ("memory utilization above 0.9 on alice (still firing)")
//   message    the event's own sentence
//   metadata   rule, subject (when any), value (when known), threshold, started_at
// The id and the service are left empty for the pager to fill.
pager::Notification NotificationFromAlertEvent(const monitor::AlertEvent& event);

// A monitor sink that enqueues each event's notification in the pager's outbox (durable, with
// no network I/O on the monitor's thread). A refusal (the store failing) is thrown, so that the
// monitor logs it and counts it in mann_monitor_errors_total{source="sink"}.
// The pager must outlive the sink.
monitor::AlertSink PagerSink(pager::Pager& pager);

// Decides which alert events this process delivers, so that of several replicas watching one
// database only one pages for a given alert. With `redis`, a gate asking a cache::AlertLock in
// it (keys <redis.key_prefix>alert:<dedup key>, held for two monitoring.health_check_interval,
// at least 10 s; Redis down lets every event through, counted): deliveries are confirmed in the
// lock, and a withheld copy waits up to three TTLs for a confirmation, delivered late when the
// holder died without one. Without: an empty gate, which the monitor reads as "always" (a
// single process is the only one paging).
monitor::NotifyGate ReplicaNotifyGate(const config::Config& config,
                                      std::shared_ptr<cache::RedisClient> redis = nullptr);

// The gate on one alert lock that ReplicaNotifyGate builds, for a lock of the caller's (tests
// use short TTLs and replica names of their own).
monitor::NotifyGate NotifyGateOf(std::shared_ptr<cache::AlertLock> lock);

// ---- Health checks ---------------------------------------------------------------------------

// Memory utilization of each namespace (entries over memory.memory_size), for the
// memory_utilization alert rule.
monitor::MetricSource UtilizationByNamespace(MemoryBank& bank);

// The "memory_bank" check's verdict: degraded when the dense encoder runs in a fallback or when
// a namespace is at max_memory_capacity (each new memory evicts one); else healthy with a
// summary. Namespaces are counted, never named: /health is public.
monitor::CheckResult BankHealth(const BankStats& stats, const runtime::EncoderStatus& encoder);

struct ServiceCheckOptions {
  // true: "storage" runs the store's full integrity check (for a person asking); false: a cheap
  // read that goes to the database (for the monitor's every tick and /health?detail=1).
  bool storage_integrity = false;
  // Adds "pager" (Pager::Health: degraded while deliveries are stale or were dead-lettered).
  const pager::Pager* pager = nullptr;
  // Adds "system", judging a SystemProbe of its own: for a checker without a Monitor, which
  // registers its own "system" check from its ticks' samples.
  bool system = false;
  // Adds "redis": a PING, degraded (never unhealthy: serving goes on without it) when Redis
  // does not answer. Must outlive the checker.
  cache::RedisClient* redis = nullptr;
};

// Registers "memory_bank", "storage" and, as `options` says, "pager", "system" and "redis". Errors
// are HealthChecker::Register's (AlreadyExists when a name is taken). The runtime and the pager
// must outlive the checker.
Status RegisterServiceChecks(monitor::HealthChecker& checker, runtime::Runtime& rt,
                             ServiceCheckOptions options);

// The report as text for a person: the overall state, then one aligned line per check with its
// state and reason.
std::string FormatHealthReport(const monitor::HealthReport& report);

}  // namespace mann::cli
