#include "alert_command.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <ostream>
#include <vector>

#include <boost/json.hpp>
#include <fmt/format.h>

#include <mann/core/clock.h>
#include <mann/core/entry_json.h>
#include <mann/core/id.h>
#include <mann/metrics/registry.h>
#include <mann/pager/pager.h>
#include <mann/pager/payloads.h>
#include <mann/runtime/runtime.h>
#include <mann/store/store.h>

#include "monitoring.h"

namespace mann::cli {
namespace {

namespace json = boost::json;

// The configured store alone (SQLite in the data directory, or the shared PostgreSQL): the alert
// commands need neither the bank nor an encoder.
Result<std::unique_ptr<store::Store>> OpenAlertStore(const config::Config& config) {
  MANN_RETURN_IF_ERROR(runtime::ConfigureLogging(config.log));
  MANN_RETURN_IF_ERROR(runtime::EnsureDataDir(config.storage.data_dir));
  return runtime::OpenStore(config.storage);
}

pager::Notification TestNotification(std::string_view channel) {
  pager::Notification n;
  n.id = IdGenerator(SystemClock::Instance()).Next();
  n.kind = pager::Kind::kTest;
  n.level = pager::Level::kInfo;
  n.title = "Test notification from mann";
  n.message = fmt::format(
      "This is a test of the {} channel, sent by `mann alert test`. Nothing is wrong; no action "
      "is needed.",
      channel);
  n.time = std::chrono::system_clock::now();
  n.metadata = {{"channel", std::string(channel)}, {"sent_by", "mann alert test"}};
  return n;
}

// "HTTP 200", "SMTP 250", or "no answer".
std::string AnswerCode(const pager::Delivery& d) {
  if (d.http_status != 0) return fmt::format("HTTP {}", d.http_status);
  if (d.smtp_reply != 0) return fmt::format("SMTP {}", d.smtp_reply);
  return "no answer";
}

json::object DeliveryToJson(std::string_view channel, const pager::Notification& n,
                            const pager::Delivery& d, double seconds) {
  json::object o;
  o["channel"] = channel;
  o["delivered"] = d.succeeded();
  o["notification_id"] = n.id;
  o["http_status"] = d.http_status;
  o["smtp_reply"] = d.smtp_reply;
  o["response"] = d.response_snippet;
  o["error"] = d.error;
  o["timed_out"] = d.timed_out;
  o["permanent"] = d.permanent;
  o["retry_after_seconds"] =
      d.retry_after ? json::value(d.retry_after->count()) : json::value(nullptr);
  o["duration_seconds"] = seconds;
  return o;
}

void PrintDelivery(std::ostream& out, std::string_view channel, const pager::Delivery& d,
                   double seconds) {
  const bool answered = d.http_status != 0 || d.smtp_reply != 0;
  const std::string_view verdict =
      d.succeeded() ? "delivered" : (answered ? "refused" : "not delivered");
  out << fmt::format("{}: {} ({}) in {:.2f} s\n", channel, verdict, AnswerCode(d), seconds);
  if (!d.response_snippet.empty()) out << "  receiver said: " << d.response_snippet << '\n';
  if (!d.error.empty()) {
    out << "  error: " << d.error << (d.timed_out ? " (timed out)" : "") << '\n';
  }
  if (d.retry_after) out << fmt::format("  retry after: {} s\n", d.retry_after->count());
}

// ---- alert list ----

struct DeliveryView {
  const store::OutboxDelivery& row;
  std::optional<pager::Notification> notification;  // nullopt when the row's JSON is unreadable
};

json::object RuleToJson(const monitor::AlertRule& r) {
  return {{"name", r.name},
          {"metric", r.metric},
          {"threshold", r.threshold},
          {"for_seconds", r.for_duration.count()},
          {"level", monitor::LevelName(r.level)},
          {"summary", r.summary}};
}

json::object DeliveryViewToJson(const DeliveryView& v) {
  const store::OutboxDelivery& r = v.row;
  json::object o{{"id", r.id},
                 {"channel", r.channel},
                 {"notification_id", r.notification_id},
                 {"state", store::OutboxStateName(r.state)},
                 {"attempts", r.attempts},
                 {"last_status", r.last_status},
                 {"last_error", r.last_error},
                 {"created_at", FormatTimestamp(r.created_ms)},
                 {"updated_at", FormatTimestamp(r.updated_ms)},
                 {"next_attempt_at", r.state == store::OutboxState::kPending
                                         ? json::value(FormatTimestamp(r.next_attempt_ms))
                                         : json::value(nullptr)}};
  if (v.notification) {
    o["kind"] = pager::KindName(v.notification->kind);
    o["level"] = pager::LevelName(v.notification->level);
    o["dedup_key"] = v.notification->dedup_key;
    o["title"] = v.notification->title;
  }
  return o;
}

std::string Seconds(std::chrono::seconds s) { return fmt::format("{} s", s.count()); }

void PrintList(std::ostream& out, const config::Config& config,
               const std::vector<monitor::AlertRule>& rules,
               const std::vector<std::string>& channels, const std::vector<DeliveryView>& views,
               std::size_t limit) {
  const config::MonitoringConfig& m = config.monitoring;
  out << fmt::format(
      "Monitoring: {}, every {}. Pager: {}; channels: {} (min level {}).\n",
      m.enabled ? "on" : "off", Seconds(m.health_check_interval),
      config.pager.enabled ? "on" : "off",
      channels.empty() ? std::string("none") : fmt::format("{}", fmt::join(channels, ", ")),
      config.pager.min_level);

  out << fmt::format("\nAlert rules ({}):\n",
                     m.alert_rules.empty() ? "the defaults; monitoring.alert_rules changes them"
                                           : "from monitoring.alert_rules");
  std::vector<std::string> conditions;
  std::size_t name_width = 0;
  std::size_t condition_width = 0;
  for (const monitor::AlertRule& r : rules) {
    conditions.push_back(
        fmt::format("{} > {:g} for {}", r.metric, r.threshold, Seconds(r.for_duration)));
    name_width = std::max(name_width, r.name.size());
    condition_width = std::max(condition_width, conditions.back().size());
  }
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const monitor::AlertRule& r = rules[i];
    out << fmt::format("  {:<{}}  {:<{}}  {:<8}  {}\n", r.name, name_width, conditions[i],
                       condition_width, monitor::LevelName(r.level), r.summary);
  }
  if (rules.empty()) out << "  (none: nothing is watched)\n";
  out << "  as text: " << monitor::FormatAlertRules(rules) << '\n';
  out << fmt::format("Re-notification floors: info {}, warning {}, error {}, critical {}.\n",
                     Seconds(m.renotify_info), Seconds(m.renotify_warning),
                     Seconds(m.renotify_error), Seconds(m.renotify_critical));

  out << fmt::format("\nRecent deliveries (newest first, at most {}):\n", limit);
  if (views.empty()) out << "  (none)\n";
  for (const DeliveryView& v : views) {
    const store::OutboxDelivery& r = v.row;
    std::string what = "(unreadable notification)";
    if (v.notification) what = pager::Headline(*v.notification);
    std::string last = r.last_status != 0 ? std::to_string(r.last_status) : "-";
    out << fmt::format("  {}  {:<9}  {:<9}  {:>2} attempt{}  last {:<3}  {}\n",
                       FormatTimestamp(r.created_ms), r.channel, store::OutboxStateName(r.state),
                       r.attempts, r.attempts == 1 ? " " : "s", last, what);
    if (!r.last_error.empty()) out << "      last error: " << r.last_error << '\n';
  }
}

}  // namespace

int RunAlertTest(const config::LoadedConfig& loaded, const AlertTestArgs& args, Io& io) {
  const config::Config& config = loaded.config;
  const std::optional<pager::ChannelKind> kind = pager::ParseChannelKind(args.channel);
  if (!kind) {
    return ReportError(io.err, InvalidArgumentError(fmt::format(
                                   "--channel must be slack, pagerduty, email or webhook, got "
                                   "\"{}\"",
                                   args.channel)));
  }
  Result<pager::PagerOptions> options = PagerOptionsFromConfig(config);
  if (!options.ok()) return ReportError(io.err, options.status());

  // Only the channel under test: a mistake in another one is not this test's business.
  auto channel = std::find_if(options->channels.begin(), options->channels.end(),
                              [&](const pager::ChannelConfig& c) { return c.kind == *kind; });
  if (channel == options->channels.end()) {
    return ReportError(io.err,
                       InvalidArgumentError(fmt::format("the {} channel is not configured: set {}",
                                                        args.channel, ChannelSetting(*kind))));
  }
  options->channels = {*channel};
  metrics::Registry registry;  // the command's own: nothing scrapes it
  options->registry = &registry;

  auto store = OpenAlertStore(config);
  if (!store.ok()) return ReportError(io.err, store.status());
  auto pager = pager::Pager::Create(std::move(*options), **store);
  if (!pager.ok()) return ReportError(io.err, pager.status());

  const pager::Notification notification = TestNotification(args.channel);
  const auto started = std::chrono::steady_clock::now();
  Result<pager::Delivery> delivery = (*pager)->SendNow(*kind, notification);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (!delivery.ok()) return ReportError(io.err, delivery.status());

  if (args.json) {
    io.out << json::serialize(DeliveryToJson(args.channel, notification, *delivery, seconds))
           << '\n';
  } else {
    PrintDelivery(io.out, args.channel, *delivery, seconds);
  }
  io.out.flush();
  if (delivery->succeeded()) return kExitOk;
  io.err << fmt::format("error: the {} channel did not accept the test notification ({})\n",
                        args.channel, AnswerCode(*delivery));
  return kExitFailure;
}

int RunAlertList(const config::LoadedConfig& loaded, const AlertListArgs& args, Io& io) {
  const config::Config& config = loaded.config;
  Result<std::vector<monitor::AlertRule>> rules = AlertRulesFromConfig(config.monitoring);
  if (!rules.ok()) return ReportError(io.err, rules.status());
  std::vector<std::string> channels;
  if (Result<pager::PagerOptions> options = PagerOptionsFromConfig(config); options.ok()) {
    for (const pager::ChannelConfig& c : options->channels) channels.push_back(c.name);
  }

  auto store = OpenAlertStore(config);
  if (!store.ok()) return ReportError(io.err, store.status());
  Result<std::vector<store::OutboxDelivery>> rows = (*store)->RecentDeliveries(args.limit);
  if (!rows.ok()) return ReportError(io.err, rows.status());
  std::vector<DeliveryView> views;
  for (const store::OutboxDelivery& row : *rows) {
    Result<pager::Notification> n = pager::FromJsonText(row.notification);
    views.push_back({row, n.ok() ? std::optional(std::move(*n)) : std::nullopt});
  }

  if (!args.json) {
    PrintList(io.out, config, *rules, channels, views, args.limit);
    return kExitOk;
  }
  const config::MonitoringConfig& m = config.monitoring;
  json::array rule_list;
  for (const monitor::AlertRule& r : *rules) rule_list.push_back(RuleToJson(r));
  json::array channel_list;
  for (const std::string& c : channels) channel_list.emplace_back(c);
  json::array delivery_list;
  for (const DeliveryView& v : views) delivery_list.push_back(DeliveryViewToJson(v));
  json::object o;
  o["monitoring_enabled"] = m.enabled;
  o["pager_enabled"] = config.pager.enabled;
  o["rules_source"] = m.alert_rules.empty() ? "default" : "monitoring.alert_rules";
  o["rules_text"] = monitor::FormatAlertRules(*rules);
  o["rules"] = std::move(rule_list);
  o["renotify_seconds"] = {{"info", m.renotify_info.count()},
                           {"warning", m.renotify_warning.count()},
                           {"error", m.renotify_error.count()},
                           {"critical", m.renotify_critical.count()}};
  o["channels"] = std::move(channel_list);
  o["min_level"] = config.pager.min_level;
  o["deliveries"] = std::move(delivery_list);
  io.out << json::serialize(o) << '\n';
  return kExitOk;
}

}  // namespace mann::cli
