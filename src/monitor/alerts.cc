#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <exception>
#include <limits>
#include <set>
#include <utility>

#include <boost/json.hpp>
#include <fmt/format.h>

#include <mann/core/entry_json.h>
#include <mann/core/log.h>
#include <mann/core/strings.h>
#include <mann/monitor/alerts.h>

namespace mann::monitor {
namespace {

using std::chrono::seconds;

std::shared_ptr<spdlog::logger> Log() {
  static const std::shared_ptr<spdlog::logger> logger = log::Get("monitor");
  return logger;
}

// The gate's decision; an exception delivers: a duplicate page is better than a missing one.
NotifyDecision Ask(const NotifyGate& gate, const AlertEvent& event) {
  try {
    return gate.decide(event);
  } catch (const std::exception& e) {
    Log()->error("alert gate failed dedup_key={} error={}: delivering the event anyway",
                 event.dedup_key, e.what());
  } catch (...) {
    Log()->error(
        "alert gate failed dedup_key={} error=unknown exception: delivering the event "
        "anyway",
        event.dedup_key);
  }
  return NotifyDecision::kDeliver;
}

std::vector<std::string_view> SplitWords(std::string_view s) {
  std::vector<std::string_view> words;
  std::size_t pos = 0;
  while (pos < s.size()) {
    while (pos < s.size() && std::isspace(static_cast<unsigned char>(s[pos]))) ++pos;
    std::size_t end = pos;
    while (end < s.size() && !std::isspace(static_cast<unsigned char>(s[end]))) ++end;
    if (end > pos) words.push_back(s.substr(pos, end - pos));
    pos = end;
  }
  return words;
}

bool IsMetricName(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name.front()))) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

bool IsRuleName(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

// How messages name a metric, and the unit its values are written with.
struct MetricText {
  std::string_view label;
  std::string_view unit;
};

MetricText TextOf(std::string_view metric) {
  static const std::map<std::string_view, MetricText> texts = {
      {"memory_utilization", {"memory utilization", ""}},
      {"processing_time", {"p95 processing time", " s"}},
      {"error_rate", {"error rate", ""}},
      {"cpu_percent", {"CPU", "%"}},
      {"system_memory", {"system memory used", ""}},
      {"disk", {"disk used", ""}},
      {"fd_utilization", {"file descriptors used", ""}},
      {"resident_bytes", {"resident memory", " bytes"}},
      {"health_state", {"health state", ""}},
  };
  auto it = texts.find(metric);
  if (it != texts.end()) return it->second;
  return {metric, ""};
}

std::string Label(std::string_view metric) {
  std::string label(TextOf(metric).label);
  std::replace(label.begin(), label.end(), '_', ' ');
  return label;
}

// Three significant digits for people; large values in full.
std::string FormatNumber(double v) {
  if (std::abs(v) >= 1000) return fmt::format("{:.0f}", v);
  return fmt::format("{:.3g}", v);
}

// "45 s", "3 min", "2.5 h".
std::string FormatDuration(std::int64_t ms) {
  const double s = static_cast<double>(std::max<std::int64_t>(ms, 0)) / 1000.0;
  if (s < 120) return fmt::format("{:.0f} s", s);
  if (s < 7200) return fmt::format("{:.0f} min", s / 60);
  return fmt::format("{:g} h", std::round(s / 360) / 10);
}

std::string DedupKey(std::string_view rule, std::string_view subject) {
  if (subject.empty()) return std::string(rule);
  return fmt::format("{}:{}", rule, subject);
}

std::int64_t Ms(seconds s) { return static_cast<std::int64_t>(s.count()) * 1000; }

boost::json::value NumberOrNull(double v) {
  if (std::isfinite(v)) return v;
  return nullptr;
}

// "60s", "5m", "1h" (a whole number and a unit).
Result<seconds> ParseDuration(std::string_view text) {
  auto refuse = [&] {
    return InvalidArgumentError(fmt::format(
        "duration '{}' must be a whole number of seconds, minutes or hours, e.g. 60s, 5m, 1h",
        text));
  };
  if (text.size() < 2) return refuse();
  const char unit = text.back();
  const std::int64_t scale = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 0;
  if (scale == 0) return refuse();
  std::string_view digits = text.substr(0, text.size() - 1);
  std::int64_t n = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc() || end != digits.data() + digits.size() || n < 0 || n > 1'000'000'000) {
    return refuse();
  }
  return seconds(n * scale);
}

// One rule of the compact form, without its position (the caller adds it).
Result<AlertRule> ParseRule(std::string_view text) {
  if (text.empty()) return InvalidArgumentError("the rule is empty");
  AlertRule rule;

  // [name:]
  std::string_view rest = text;
  if (const std::size_t colon = text.find(':'); colon != std::string_view::npos) {
    rule.name = std::string(TrimSpace(text.substr(0, colon)));
    rest = text.substr(colon + 1);
    if (rule.name.empty()) return InvalidArgumentError("the name before ':' is empty");
  }

  // metric > threshold
  const std::size_t gt = rest.find('>');
  if (gt == std::string_view::npos) {
    if (rest.find_first_of("<=") != std::string_view::npos) {
      return InvalidArgumentError(
          "only '>' is supported: a rule fires when the value is above its threshold");
    }
    return InvalidArgumentError("expected 'metric > threshold'");
  }
  rule.metric = std::string(TrimSpace(rest.substr(0, gt)));
  if (!IsMetricName(rule.metric)) {
    return InvalidArgumentError(
        fmt::format("metric '{}' must match [a-z_][a-z0-9_]*", rule.metric));
  }
  std::string_view after = rest.substr(gt + 1);
  if (after.starts_with('=')) {
    return InvalidArgumentError(
        "'>=' is not supported: a rule fires when the value is above its threshold");
  }
  const std::vector<std::string_view> words = SplitWords(after);
  if (words.empty()) return InvalidArgumentError("no threshold after '>'");
  const std::string_view number = words[0];
  const auto [end, ec] =
      std::from_chars(number.data(), number.data() + number.size(), rule.threshold);
  if (ec != std::errc() || end != number.data() + number.size() || !std::isfinite(rule.threshold)) {
    return InvalidArgumentError(fmt::format("threshold '{}' is not a number", number));
  }

  // [for <duration>] [level]
  std::size_t i = 1;
  if (i < words.size() && words[i] == "for") {
    if (i + 1 == words.size()) return InvalidArgumentError("'for' without a duration");
    MANN_ASSIGN_OR_RETURN(rule.for_duration, ParseDuration(words[i + 1]));
    i += 2;
  }
  if (i < words.size()) {
    MANN_ASSIGN_OR_RETURN(rule.level, ParseLevel(words[i]));
    ++i;
  }
  if (i < words.size()) {
    return InvalidArgumentError(
        fmt::format("unexpected '{}' (after the threshold come 'for <duration>' and a level, both "
                    "optional)",
                    words[i]));
  }

  if (rule.name.empty()) rule.name = rule.metric;
  rule.summary = fmt::format("{} above {}{}", Label(rule.metric), FormatNumber(rule.threshold),
                             TextOf(rule.metric).unit);
  return rule;
}

}  // namespace

// ---- Levels and rules -------------------------------------------------------------------------

Result<Level> ParseLevel(std::string_view name) {
  if (const std::optional<Level> level = ParseSeverity(name)) return *level;
  return InvalidArgumentError(
      fmt::format("level '{}' is not one of info, warning, error, critical", name));
}

std::vector<AlertRule> DefaultAlertRules() {
  return {
      {"memory_utilization", "memory_utilization", 0.9, seconds(60), Level::kWarning,
       "Memory bank of a namespace above 90% of memory_size"},
      {"processing_time", "processing_time", 5.0, seconds(60), Level::kWarning,
       "Slow requests: p95 processing time above 5 s"},
      {"error_rate", "error_rate", 0.1, seconds(60), Level::kError,
       "More than 10% of requests fail with a server error"},
      {"cpu_percent", "cpu_percent", 80.0, seconds(300), Level::kWarning,
       "Process CPU above 80% of the machine"},
      {"system_memory", "system_memory", 0.8, seconds(300), Level::kWarning,
       "System memory more than 80% used"},
      {"disk", "disk", 0.9, seconds(60), Level::kCritical,
       "Disk of the data directory more than 90% full"},
  };
}

Status ValidateAlertRules(const std::vector<AlertRule>& rules) {
  std::set<std::string_view> names;
  for (const AlertRule& rule : rules) {
    if (!IsRuleName(rule.name)) {
      return InvalidArgumentError(fmt::format(
          "alert rule name '{}' must be letters, digits, '_', '-' or '.' (and not empty)",
          rule.name));
    }
    if (!names.insert(rule.name).second) {
      return InvalidArgumentError(fmt::format(
          "alert rule name '{}' is used twice: give each rule on one metric a name of its own, "
          "e.g. '{}_critical: {} > ...'",
          rule.name, rule.name, rule.metric));
    }
    if (!IsMetricName(rule.metric)) {
      return InvalidArgumentError(fmt::format(
          "alert rule '{}': metric '{}' must match [a-z_][a-z0-9_]*", rule.name, rule.metric));
    }
    if (!std::isfinite(rule.threshold)) {
      return InvalidArgumentError(
          fmt::format("alert rule '{}': threshold must be a finite number", rule.name));
    }
    if (rule.for_duration < seconds(0)) {
      return InvalidArgumentError(fmt::format("alert rule '{}': for duration is negative, {} s",
                                              rule.name, rule.for_duration.count()));
    }
  }
  return Status::Ok();
}

Result<std::vector<AlertRule>> ParseAlertRules(std::string_view text) {
  std::vector<AlertRule> rules;
  if (TrimSpace(text).empty()) return rules;
  std::size_t position = 0;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    const std::string_view piece = TrimSpace(text.substr(start, comma - start));
    ++position;
    Result<AlertRule> rule = ParseRule(piece);
    if (!rule.ok()) {
      return InvalidArgumentError(
          fmt::format("alert rule {} \"{}\": {}", position, piece, rule.status().message()));
    }
    rules.push_back(std::move(rule).value());
    start = comma + 1;
  }
  MANN_RETURN_IF_ERROR(ValidateAlertRules(rules));
  return rules;
}

std::string FormatAlertRules(const std::vector<AlertRule>& rules) {
  std::string out;
  for (const AlertRule& rule : rules) {
    if (!out.empty()) out += ", ";
    out += fmt::format("{}: {}>{} for {}s {}", rule.name, rule.metric, rule.threshold,
                       rule.for_duration.count(), LevelName(rule.level));
  }
  return out;
}

seconds RenotifyIntervals::For(Level level) const {
  switch (level) {
    case Level::kInfo:
      return info;
    case Level::kWarning:
      return warning;
    case Level::kError:
      return error;
    case Level::kCritical:
      return critical;
  }
  return critical;
}

// ---- Events -----------------------------------------------------------------------------------

std::string_view AlertEventKindName(AlertEventKind kind) {
  switch (kind) {
    case AlertEventKind::kTrigger:
      return "trigger";
    case AlertEventKind::kRenotify:
      return "renotify";
    case AlertEventKind::kResolve:
      return "resolve";
  }
  return "resolve";
}

std::string_view AlertPhaseName(AlertPhase phase) {
  return phase == AlertPhase::kPending ? "pending" : "firing";
}

boost::json::value ToJson(const AlertEvent& event) {
  return boost::json::object{
      {"sequence", event.sequence},
      {"kind", AlertEventKindName(event.kind)},
      {"dedup_key", event.dedup_key},
      {"rule", event.rule},
      {"subject", event.subject},
      {"level", LevelName(event.level)},
      {"value", NumberOrNull(event.value)},
      {"threshold", event.threshold},
      {"message", event.message},
      {"summary", event.summary},
      {"started_at", FormatTimestamp(event.started_at)},
      {"at", FormatTimestamp(event.at)},
      {"withheld", event.withheld},
      {"taken_over", event.taken_over},
  };
}

boost::json::value ToJson(const ActiveAlert& alert) {
  const bool firing = alert.phase == AlertPhase::kFiring;
  auto time_or_null = [&](TimestampMs t) -> boost::json::value {
    if (!firing) return nullptr;
    return boost::json::string(FormatTimestamp(t));
  };
  return boost::json::object{
      {"dedup_key", alert.dedup_key},
      {"rule", alert.rule},
      {"subject", alert.subject},
      {"level", LevelName(alert.level)},
      {"state", AlertPhaseName(alert.phase)},
      {"value", NumberOrNull(alert.value)},
      {"threshold", alert.threshold},
      {"message", alert.message},
      {"started_at", FormatTimestamp(alert.started_at)},
      {"fired_at", time_or_null(alert.fired_at)},
      {"last_notified_at", time_or_null(alert.last_notified_at)},
  };
}

// ---- AlertEngine ------------------------------------------------------------------------------

Result<std::unique_ptr<AlertEngine>> AlertEngine::Create(std::vector<AlertRule> rules,
                                                         AlertEngineOptions options) {
  MANN_RETURN_IF_ERROR(ValidateAlertRules(rules));
  for (Level level : {Level::kInfo, Level::kWarning, Level::kError, Level::kCritical}) {
    if (options.renotify.For(level) < seconds(0)) {
      return InvalidArgumentError(
          fmt::format("re-notification interval of level {} is negative", LevelName(level)));
    }
  }
  return std::unique_ptr<AlertEngine>(new AlertEngine(std::move(rules), std::move(options)));
}

AlertEngine::AlertEngine(std::vector<AlertRule> rules, AlertEngineOptions options)
    : rules_(std::move(rules)),
      renotify_(options.renotify),
      history_limit_(std::max<std::size_t>(options.history_limit, 1)),
      pending_limit_(std::max<std::size_t>(options.pending_limit, 1)),
      subject_labels_(std::move(options.subject_labels)) {}

void AlertEngine::SetSubjectLabel(const std::string& metric, std::string label) {
  std::lock_guard lock(mu_);
  subject_labels_[metric] = std::move(label);
}

std::string AlertEngine::Message(AlertEventKind kind, const State& state, TimestampMs now) const {
  const AlertRule& rule = rules_[state.rule];
  const MetricText text = TextOf(rule.metric);
  const std::string label = Label(rule.metric);
  std::string on;
  if (!state.subject.empty()) {
    auto it = subject_labels_.find(rule.metric);
    on = it == subject_labels_.end() || it->second.empty()
             ? fmt::format(" on {}", state.subject)
             : fmt::format(" on {} {}", it->second, state.subject);
  }
  const std::string threshold = FormatNumber(rule.threshold) + std::string(text.unit);

  if (kind != AlertEventKind::kResolve) {
    const std::int64_t held = now - state.started_at;
    const std::string held_text = held >= 1000 ? " for " + FormatDuration(held) : "";
    return fmt::format("{} {}{} > {}{}{}", label, FormatNumber(state.value), text.unit, threshold,
                       held_text, on);
  }
  const std::string firing = FormatDuration(now - state.fired_at);
  if (std::isnan(state.value)) {
    return fmt::format("{}{} is no longer reported; resolved after {} firing", label, on, firing);
  }
  return fmt::format("{} {}{} is back at or under {}{} after {} firing", label,
                     FormatNumber(state.value), text.unit, threshold, on, firing);
}

AlertEvent AlertEngine::MakeEvent(AlertEventKind kind, const State& state, TimestampMs now) const {
  const AlertRule& rule = rules_[state.rule];
  AlertEvent event;
  event.kind = kind;
  event.dedup_key = DedupKey(rule.name, state.subject);
  event.rule = rule.name;
  event.subject = state.subject;
  event.level = rule.level;
  event.value = state.value;
  event.threshold = rule.threshold;
  event.message = Message(kind, state, now);
  event.summary = rule.summary;
  event.started_at = state.started_at;
  event.at = now;
  return event;
}

void AlertEngine::Step(std::size_t r, const std::string& subject, std::optional<double> value,
                       TimestampMs now, std::vector<AlertEvent>& events) {
  const AlertRule& rule = rules_[r];
  const std::string key = DedupKey(rule.name, subject);
  const bool condition = value.has_value() && *value > rule.threshold;
  auto it = states_.find(key);

  // inactive -> inactive | pending | firing
  if (it == states_.end()) {
    if (!condition) return;
    State state{.rule = r,
                .subject = subject,
                .phase = AlertPhase::kPending,
                .value = *value,
                .started_at = now};
    if (rule.for_duration == seconds(0)) {
      state.phase = AlertPhase::kFiring;
      state.fired_at = state.last_notified_at = now;
      events.push_back(MakeEvent(AlertEventKind::kTrigger, state, now));
    }
    states_.emplace(key, std::move(state));
    return;
  }

  // pending | firing -> inactive, resolving a firing alert
  State& state = it->second;
  state.value = value.value_or(std::numeric_limits<double>::quiet_NaN());
  if (!condition) {
    if (state.phase == AlertPhase::kFiring) {
      events.push_back(MakeEvent(AlertEventKind::kResolve, state, now));
    }
    states_.erase(it);
    return;
  }

  // pending -> pending | firing
  if (state.phase == AlertPhase::kPending) {
    if (now - state.started_at >= Ms(rule.for_duration)) {
      state.phase = AlertPhase::kFiring;
      state.fired_at = state.last_notified_at = now;
      events.push_back(MakeEvent(AlertEventKind::kTrigger, state, now));
    }
    return;
  }

  // firing -> firing, repeated at most once per the level's interval
  if (now - state.last_notified_at >= Ms(renotify_.For(rule.level))) {
    state.last_notified_at = now;
    events.push_back(MakeEvent(AlertEventKind::kRenotify, state, now));
  }
}

void AlertEngine::GiveUp(const AlertEvent& event, const NotifyGate& gate, std::string_view reason) {
  // A gate that counts give-ups logs them too, with what to look at.
  if (!gate.gave_up) {
    Log()->warn("alert event given up dedup_key={} kind={} sequence={} reason=\"{}\"",
                event.dedup_key, AlertEventKindName(event.kind), event.sequence, reason);
    return;
  }
  try {
    gate.gave_up(event, reason);
  } catch (const std::exception& e) {
    Log()->error("alert gate failed to count a given-up event dedup_key={} error={}",
                 event.dedup_key, e.what());
  } catch (...) {
    Log()->error("alert gate failed to count a given-up event dedup_key={}", event.dedup_key);
  }
}

std::vector<AlertEvent> AlertEngine::RetryPending(TimestampMs now, const NotifyGate& gate) {
  std::deque<AlertEvent> pending;
  {
    std::lock_guard lock(mu_);
    pending = pending_;
  }
  std::vector<AlertEvent> released;
  std::deque<AlertEvent> kept;
  std::set<std::string> waiting;  // keys whose older event still waits: later ones queue behind
  for (AlertEvent& event : pending) {
    if (gate && now - event.at > gate.max_wait.count()) {
      GiveUp(event, gate,
             fmt::format("waited {} for a confirmation or a free lock",
                         FormatDuration(now - event.at)));
      continue;
    }
    if (waiting.contains(event.dedup_key)) {
      kept.push_back(std::move(event));
      continue;
    }
    switch (gate ? Ask(gate, event) : NotifyDecision::kDeliver) {
      case NotifyDecision::kDeliver:
        event.withheld = false;
        event.taken_over = true;
        released.push_back(std::move(event));
        break;
      case NotifyDecision::kDeliveredElsewhere:
        Log()->debug("withheld alert event dropped dedup_key={} kind={}: delivered elsewhere",
                     event.dedup_key, AlertEventKindName(event.kind));
        break;
      case NotifyDecision::kWithhold:
        waiting.insert(event.dedup_key);
        kept.push_back(std::move(event));
        break;
    }
  }

  std::lock_guard lock(mu_);
  pending_ = std::move(kept);
  // History shows what finally happened to a released event.
  for (const AlertEvent& event : released) {
    for (AlertEvent& recorded : history_) {
      if (recorded.sequence == event.sequence) recorded = event;
    }
  }
  return released;
}

std::vector<AlertEvent> AlertEngine::Evaluate(const MetricValues& values, TimestampMs now,
                                              const NotifyGate& may_notify) {
  std::lock_guard serial(evaluate_mu_);
  // The older copies first, so that an alert's events go out in order.
  std::vector<AlertEvent> released = RetryPending(now, may_notify);
  std::set<std::string> waiting;
  {
    std::lock_guard lock(mu_);
    for (const AlertEvent& event : pending_) waiting.insert(event.dedup_key);
  }
  std::vector<AlertEvent> events;

  // Step every alert whose metric is present: each subject with a value, and each subject with
  // an alert that is no longer reported.
  {
    std::lock_guard lock(mu_);
    last_evaluated_at_ = now;
    for (std::size_t r = 0; r < rules_.size(); ++r) {
      auto metric = values.find(rules_[r].metric);
      if (metric == values.end()) continue;
      std::map<std::string, std::optional<double>> inputs;
      for (const auto& [subject, value] : metric->second) {
        if (!std::isnan(value)) inputs.emplace(subject, value);
      }
      for (const auto& [key, state] : states_) {
        if (state.rule == r && !metric->second.contains(state.subject)) {
          inputs.emplace(state.subject, std::nullopt);
        }
      }
      for (const auto& [subject, value] : inputs) Step(r, subject, value, now, events);
    }
  }

  // Ask the gate without the lock: it may wait on another replica. An alert with an older
  // event still waiting queues the new one behind it unasked.
  std::vector<bool> to_pend(events.size(), false);
  if (may_notify) {
    for (std::size_t i = 0; i < events.size(); ++i) {
      AlertEvent& event = events[i];
      const NotifyDecision decision =
          waiting.contains(event.dedup_key) ? NotifyDecision::kWithhold : Ask(may_notify, event);
      event.withheld = decision != NotifyDecision::kDeliver;
      to_pend[i] = decision == NotifyDecision::kWithhold;
      if (to_pend[i]) waiting.insert(event.dedup_key);
    }
  }

  // Record.
  std::vector<AlertEvent> overflow;
  {
    std::lock_guard lock(mu_);
    for (std::size_t i = 0; i < events.size(); ++i) {
      AlertEvent& event = events[i];
      event.sequence = next_sequence_++;
      history_.push_back(event);
      if (history_.size() > history_limit_) history_.pop_front();
      if (to_pend[i]) pending_.push_back(event);
    }
    while (pending_.size() > pending_limit_) {
      overflow.push_back(std::move(pending_.front()));
      pending_.pop_front();
    }
  }
  for (const AlertEvent& event : overflow) {
    GiveUp(event, may_notify, fmt::format("more than {} withheld events waiting", pending_limit_));
  }
  released.insert(released.end(), std::make_move_iterator(events.begin()),
                  std::make_move_iterator(events.end()));
  return released;
}

std::vector<AlertEvent> AlertEngine::Pending() const {
  std::lock_guard lock(mu_);
  return {pending_.begin(), pending_.end()};
}

std::vector<ActiveAlert> AlertEngine::Active() const {
  std::lock_guard lock(mu_);
  std::vector<ActiveAlert> active;
  active.reserve(states_.size());
  for (const auto& [key, state] : states_) {
    const AlertRule& rule = rules_[state.rule];
    active.push_back({.dedup_key = key,
                      .rule = rule.name,
                      .subject = state.subject,
                      .level = rule.level,
                      .phase = state.phase,
                      .value = state.value,
                      .threshold = rule.threshold,
                      .message = Message(AlertEventKind::kTrigger, state, last_evaluated_at_),
                      .started_at = state.started_at,
                      .fired_at = state.fired_at,
                      .last_notified_at = state.last_notified_at});
  }
  return active;
}

std::vector<AlertEvent> AlertEngine::History(std::size_t limit) const {
  std::lock_guard lock(mu_);
  const std::size_t n = limit == 0 ? history_.size() : std::min(limit, history_.size());
  return {history_.end() - static_cast<std::ptrdiff_t>(n), history_.end()};
}

}  // namespace mann::monitor
