#include "monitoring.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

#include <mann/cache/alert_lock.h>
#include <mann/core/entry_json.h>
#include <mann/monitor/probes.h>

namespace mann::cli {
namespace {

using std::chrono::milliseconds;

// Up to 6 significant digits, without a trailing ".0": what a person reads in a page.
std::string FormatValue(double v) { return fmt::format("{:g}", v); }

}  // namespace

// ---- From the configuration ------------------------------------------------------------------

Result<std::vector<monitor::AlertRule>> AlertRulesFromConfig(const config::MonitoringConfig& c) {
  if (c.alert_rules.empty()) return monitor::DefaultAlertRules();
  Result<std::vector<monitor::AlertRule>> rules = monitor::ParseAlertRules(c.alert_rules);
  if (!rules.ok())
    return InvalidArgumentError("monitoring.alert_rules: " + rules.status().message());
  if (Status st = monitor::ValidateAlertRules(*rules); !st.ok()) {
    return InvalidArgumentError("monitoring.alert_rules: " + st.message());
  }
  return rules;
}

monitor::RenotifyIntervals RenotifyFromConfig(const config::MonitoringConfig& c) {
  return {.info = c.renotify_info,
          .warning = c.renotify_warning,
          .error = c.renotify_error,
          .critical = c.renotify_critical};
}

Result<monitor::MonitorOptions> MonitorOptionsFromConfig(const config::Config& config) {
  const config::MonitoringConfig& c = config.monitoring;
  monitor::MonitorOptions o;
  o.interval = c.health_check_interval;
  o.probe.data_dir = config.storage.data_dir;
  o.request_window = c.request_window;
  o.min_requests = static_cast<std::uint64_t>(std::max<std::int64_t>(c.min_requests, 0));
  MANN_ASSIGN_OR_RETURN(o.rules, AlertRulesFromConfig(c));
  o.alerts.renotify = RenotifyFromConfig(c);
  return o;
}

Result<pager::PagerOptions> PagerOptionsFromConfig(const config::Config& config) {
  const config::PagerConfig& c = config.pager;
  const std::optional<pager::Level> min_level = pager::ParseLevel(c.min_level);
  if (!min_level) {
    return InvalidArgumentError(fmt::format(
        "pager.min_level must be one of: info, warning, error, critical, got \"{}\"", c.min_level));
  }

  pager::PagerOptions o;
  auto add = [&](pager::ChannelKind kind) -> pager::ChannelConfig& {
    pager::ChannelConfig& channel = o.channels.emplace_back();
    channel.name = std::string(pager::ChannelKindName(kind));
    channel.kind = kind;
    channel.min_level = *min_level;
    return channel;
  };
  if (!c.webhook.empty()) add(pager::ChannelKind::kSlack).url = c.webhook;
  if (!c.pagerduty_routing_key.empty()) {
    pager::ChannelConfig& pd = add(pager::ChannelKind::kPagerDuty);
    pd.routing_key = c.pagerduty_routing_key;
    pd.url = c.pagerduty_url;
  }
  if (!c.smtp_url.empty()) {
    pager::ChannelConfig& email = add(pager::ChannelKind::kEmail);
    email.smtp.url = c.smtp_url;
    email.smtp.username = c.smtp_username;
    email.smtp.password = c.smtp_password;
    email.smtp.ca_file = c.smtp_ca_file;
    email.email.from = c.smtp_from;
    email.email.to = config::SplitList(c.smtp_to);
  }
  if (!c.json_webhook.empty()) add(pager::ChannelKind::kWebhook).url = c.json_webhook;

  o.policy.max_attempts = static_cast<int>(c.max_attempts);
  o.policy.initial_backoff = c.initial_backoff;
  o.policy.max_backoff = c.max_backoff;
  o.policy.request_timeout = c.request_timeout;
  o.policy.connect_timeout = c.connect_timeout;
  return o;
}

std::string ChannelSetting(pager::ChannelKind kind) {
  switch (kind) {
    case pager::ChannelKind::kSlack:
      return "pager.webhook (MANN_PAGER_WEBHOOK)";
    case pager::ChannelKind::kPagerDuty:
      return "pager.pagerduty_routing_key (MANN_PAGERDUTY_ROUTING_KEY)";
    case pager::ChannelKind::kEmail:
      return "pager.smtp_url (MANN_SMTP_URL), with pager.smtp_from (MANN_SMTP_FROM) and "
             "pager.smtp_to (MANN_SMTP_TO)";
    case pager::ChannelKind::kWebhook:
      return "pager.json_webhook (MANN_PAGER_JSON_WEBHOOK)";
  }
  return "a pager channel setting";
}

// ---- Alerts to notifications -----------------------------------------------------------------

pager::Notification NotificationFromAlertEvent(const monitor::AlertEvent& event) {
  pager::Notification n;
  n.dedup_key = event.dedup_key;
  switch (event.kind) {
    case monitor::AlertEventKind::kTrigger:
      n.kind = pager::Kind::kTrigger;
      break;
    case monitor::AlertEventKind::kRenotify:
      n.kind = pager::Kind::kRenotify;
      break;
    case monitor::AlertEventKind::kResolve:
      n.kind = pager::Kind::kResolve;
      break;
  }
  n.level = event.level;

  n.title = event.summary.empty() ? event.rule : event.summary;
  if (!event.subject.empty()) n.title += " on " + event.subject;
  if (event.kind == monitor::AlertEventKind::kRenotify) n.title += " (still firing)";
  n.message = event.message;
  n.time = std::chrono::system_clock::time_point(milliseconds(event.at));

  n.metadata.emplace_back("rule", event.rule);
  if (!event.subject.empty()) n.metadata.emplace_back("subject", event.subject);
  // A resolve because the subject disappeared has no value to show.
  if (std::isfinite(event.value)) n.metadata.emplace_back("value", FormatValue(event.value));
  n.metadata.emplace_back("threshold", FormatValue(event.threshold));
  n.metadata.emplace_back("started_at", FormatTimestamp(event.started_at));
  return n;
}

monitor::AlertSink PagerSink(pager::Pager& pager) {
  return [&pager](const monitor::AlertEvent& event) {
    if (Status st = pager.Notify(NotificationFromAlertEvent(event)); !st.ok()) {
      throw std::runtime_error(fmt::format("pager refused the {} of alert {}: {}",
                                           monitor::AlertEventKindName(event.kind), event.dedup_key,
                                           st.ToString()));
    }
  };
}

monitor::NotifyGate ReplicaNotifyGate(const config::Config& config,
                                      std::shared_ptr<cache::RedisClient> redis) {
  if (redis == nullptr) return {};
  // Replicas tick independently, up to one interval apart: the lock must outlive that spread
  // so that the later replica finds it held.
  const auto ttl = std::max<std::chrono::milliseconds>(std::chrono::seconds(10),
                                                       2 * config.monitoring.health_check_interval);
  return NotifyGateOf(std::make_shared<cache::AlertLock>(cache::AlertLockOptions{
      .redis = std::move(redis), .key_prefix = config.redis.key_prefix, .ttl = ttl}));
}

monitor::NotifyGate NotifyGateOf(std::shared_ptr<cache::AlertLock> lock) {
  // An event asked about while already withheld is a copy asked again.
  auto as_lock_event = [](const monitor::AlertEvent& event) {
    return cache::AlertLockEvent{.dedup_key = event.dedup_key,
                                 .stage = static_cast<cache::AlertStage>(event.kind),
                                 .at_ms = event.at,
                                 .retry = event.withheld};
  };
  static_assert(static_cast<int>(monitor::AlertEventKind::kTrigger) ==
                    static_cast<int>(cache::AlertStage::kTrigger) &&
                static_cast<int>(monitor::AlertEventKind::kRenotify) ==
                    static_cast<int>(cache::AlertStage::kRenotify) &&
                static_cast<int>(monitor::AlertEventKind::kResolve) ==
                    static_cast<int>(cache::AlertStage::kResolve));
  monitor::NotifyGate gate;
  gate.decide = [lock, as_lock_event](const monitor::AlertEvent& event) {
    switch (lock->Decide(as_lock_event(event))) {
      case cache::AlertLockDecision::kDeliver:
        return monitor::NotifyDecision::kDeliver;
      case cache::AlertLockDecision::kWithhold:
        return monitor::NotifyDecision::kWithhold;
      case cache::AlertLockDecision::kDeliveredElsewhere:
        return monitor::NotifyDecision::kDeliveredElsewhere;
    }
    return monitor::NotifyDecision::kDeliver;
  };
  gate.delivered = [lock, as_lock_event](const monitor::AlertEvent& event) {
    cache::AlertLockEvent delivered = as_lock_event(event);
    delivered.retry = false;
    lock->Confirm(delivered);
  };
  gate.gave_up = [lock, as_lock_event](const monitor::AlertEvent& event, std::string_view reason) {
    lock->GiveUp(as_lock_event(event), reason);
  };
  gate.max_wait = lock->max_wait();
  return gate;
}

// ---- Health checks ---------------------------------------------------------------------------

monitor::MetricSource UtilizationByNamespace(MemoryBank& bank) {
  return [&bank] {
    std::map<std::string, double> out;
    for (const NamespaceStats& ns : bank.Stats().namespaces) out[ns.ns] = ns.utilization;
    return out;
  };
}

monitor::CheckResult BankHealth(const BankStats& stats, const runtime::EncoderStatus& encoder) {
  std::size_t full = 0;
  for (const NamespaceStats& ns : stats.namespaces) {
    if (stats.max_memory_capacity > 0 && ns.total_memories >= stats.max_memory_capacity) ++full;
  }
  std::vector<std::string> problems;
  if (encoder.fallback()) {
    problems.push_back(fmt::format("encoder {} unavailable, recall uses {}: {}", encoder.configured,
                                   encoder.active, encoder.fallback_reason));
  }
  if (full > 0) {
    problems.push_back(
        fmt::format("{} namespace{} at memory.max_memory_capacity ({}): each new memory evicts one",
                    full, full == 1 ? "" : "s", stats.max_memory_capacity));
  }
  if (!problems.empty()) {
    return {monitor::HealthState::kDegraded, fmt::format("{}", fmt::join(problems, "; "))};
  }
  const std::size_t memories = stats.overall.total_memories;
  const std::size_t namespaces = stats.namespaces.size();
  return {monitor::HealthState::kHealthy,
          fmt::format("{} {} in {} namespace{}, highest utilization {:.1f}%", memories,
                      memories == 1 ? "memory" : "memories", namespaces, namespaces == 1 ? "" : "s",
                      stats.overall.utilization * 100.0)};
}

Status RegisterServiceChecks(monitor::HealthChecker& checker, runtime::Runtime& rt,
                             ServiceCheckOptions options) {
  MANN_RETURN_IF_ERROR(checker.Register(
      "memory_bank", [&rt] { return BankHealth(rt.bank().Stats(), rt.encoder_status()); }));

  if (options.storage_integrity) {
    MANN_RETURN_IF_ERROR(checker.Register("storage", [&rt]() -> monitor::CheckResult {
      if (Status st = rt.store().CheckIntegrity(); !st.ok()) {
        return {monitor::HealthState::kUnhealthy, st.ToString()};
      }
      return {monitor::HealthState::kHealthy,
              rt.store().Describe() + " passed its integrity check"};
    }));
  } else {
    // The query /ready makes: it reaches the database file without scanning it.
    MANN_RETURN_IF_ERROR(checker.Register(
        "storage", monitor::StatusCheck([&rt] { return rt.store().Counters().status(); })));
  }

  if (options.pager != nullptr) {
    const pager::Pager* pager = options.pager;
    MANN_RETURN_IF_ERROR(checker.Register("pager", [pager]() -> monitor::CheckResult {
      const pager::DeliveryHealth h = pager->Health();
      if (!h.ok) return {monitor::HealthState::kDegraded, h.reason};
      return {monitor::HealthState::kHealthy,
              fmt::format("delivering to {}", fmt::join(pager->ChannelNames(), ", "))};
    }));
  }

  if (options.redis != nullptr) {
    cache::RedisClient* redis = options.redis;
    MANN_RETURN_IF_ERROR(checker.Register("redis", [redis]() -> monitor::CheckResult {
      const auto start = std::chrono::steady_clock::now();
      if (Status st = redis->Ping(); !st.ok()) {
        return {monitor::HealthState::kDegraded,
                fmt::format("{}; serving goes on: search answers are not cached, rate limits "
                            "are per replica and every replica may page",
                            st.message())};
      }
      const std::chrono::duration<double, std::milli> took =
          std::chrono::steady_clock::now() - start;
      return {monitor::HealthState::kHealthy,
              fmt::format("redis {} answered PING in {:.1f} ms", redis->endpoint().Describe(),
                          took.count())};
    }));
  }

  if (options.system) {
    // Shared with the check's runs, which may outlive a report that gave up waiting on them.
    auto probe = std::make_shared<monitor::SystemProbe>(
        monitor::SystemProbeOptions{.data_dir = rt.config().storage.data_dir});
    const Clock& clock = rt.clock();
    MANN_RETURN_IF_ERROR(checker.Register("system", monitor::ResourceCheck([probe, &clock] {
                                            return probe->Sample(clock.NowMs());
                                          })));
  }
  return Status::Ok();
}

std::string FormatHealthReport(const monitor::HealthReport& report) {
  std::size_t width = 0;
  for (const monitor::CheckReport& c : report.checks) width = std::max(width, c.name.size());
  std::string out = std::string(monitor::HealthStateName(report.overall)) + '\n';
  for (const monitor::CheckReport& c : report.checks) {
    out += fmt::format("  {:<{}}  {:<9}  {}\n", c.name, width, monitor::HealthStateName(c.state),
                       c.reason);
  }
  return out;
}

}  // namespace mann::cli
