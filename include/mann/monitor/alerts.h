// Alert rules and the AlertEngine that turns metric values into the pending / firing / resolved
// lifecycle of alerts, emitting the events the pager delivers.
//
//   MANN_ASSIGN_OR_RETURN(auto rules, monitor::ParseAlertRules(
//       "memory_utilization>0.9 for 60s warning, disk_full: disk>0.95 for 0s critical"));
//   MANN_ASSIGN_OR_RETURN(auto engine, monitor::AlertEngine::Create(rules));
//   for (const monitor::AlertEvent& e :
//        engine->Evaluate({{"memory_utilization", {{"alice", 0.93}}}}, clock.NowMs())) {
//     pager.Send(e);
//   }
//
// A rule watches one metric; each value of the metric belongs to a subject (a namespace, a
// health check, or "" for the process as a whole), and each (rule, subject) pair has an alert of
// its own, named by its dedup key: "rule:subject", or just "rule" when the subject is "". Rule
// names cannot hold ':' so keys never collide.
//
// Lifecycle of one alert, evaluated at each Evaluate(values, now). "true" means the metric is in
// `values`, the subject has a value and value > threshold; "false" means the metric is in
// `values` and the subject's value is <= threshold or the subject is absent (a namespace that
// no longer exists resolves its alerts). The interval is RenotifyIntervals::For(rule.level).
//
//   from      condition  and also                             to        emits
//   inactive  false                                           inactive  -
//   inactive  true       for_duration == 0                    firing    Trigger
//   inactive  true       for_duration > 0                     pending   -
//   pending   true       now - started_at <  for_duration     pending   -
//   pending   true       now - started_at >= for_duration     firing    Trigger
//   pending   false                                           inactive  -
//   firing    true       now - last_notified_at <  interval   firing    -
//   firing    true       now - last_notified_at >= interval   firing    Renotify
//   firing    false                                           inactive  Resolve (once)
//   any       metric absent from `values`, or value NaN       (as is)   -
//
// started_at is when the condition was first seen true; last_notified_at is the latest Trigger
// or Renotify. "Resolved" is the Resolve event itself: the alert is gone from Active() after it,
// and a new breach starts a new alert (pending again, with a new started_at).
//
// Thread-safety: every member may be called concurrently; Evaluate calls are serialized
// internally, and the gate passed to Evaluate runs without the engine's lock held.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/value.hpp>

#include <mann/core/clock.h>
#include <mann/core/severity.h>
#include <mann/core/status.h>

namespace mann::monitor {

using Level = Severity;  // the pager's too, so an alert pages at the level it fired at

inline std::string_view LevelName(Level level) { return SeverityName(level); }
// The inverse of LevelName; InvalidArgument listing the names otherwise.
Result<Level> ParseLevel(std::string_view name);

struct AlertRule {
  std::string name;                      // unique among the rules; letters, digits, '_', '-', '.'
  std::string metric;                    // e.g. "memory_utilization"; [a-z_][a-z0-9_]*
  double threshold = 0.0;                // the alert's condition is value > threshold
  std::chrono::seconds for_duration{0};  // how long the condition must hold before firing
  Level level = Level::kWarning;
  std::string summary;  // one line for people, e.g. "Memory bank nearly full"
};

// The rules of the operations guide:
//   memory_utilization > 0.9  for 60 s   warning   (per namespace: entries over memory_size)
//   processing_time    > 5    for 60 s   warning   (p95 of the request window, seconds)
//   error_rate         > 0.1  for 60 s   error     (5xx share of the request window)
//   cpu_percent        > 80   for 300 s  warning   (the process, % of the machine)
//   system_memory      > 0.8  for 300 s  warning   (used ratio of the machine's memory)
//   disk               > 0.9  for 60 s   critical  (used ratio of the data directory's disk)
// Each is named after its metric. CPU and memory wait longer because short peaks (a burst of
// encoding, the page cache) are normal there; the request figures already average five minutes.
std::vector<AlertRule> DefaultAlertRules();

// Checks a rule set: names valid and unique, metrics well-formed, thresholds finite, durations
// not negative. InvalidArgument naming the rule otherwise.
Status ValidateAlertRules(const std::vector<AlertRule>& rules);

// Parses the compact text form used in configuration: rules separated by commas, each
//
//   [name:] metric > threshold [for <N>s|<N>m|<N>h] [info|warning|error|critical]
//
// e.g. "memory_utilization>0.9 for 60s warning, disk_full: disk > 0.95 for 0s critical".
// The name defaults to the metric, `for` to 0 s and the level to warning; the summary is made
// from the metric and threshold. Two rules on one metric therefore need a name each. Empty text
// is no rules. Errors: InvalidArgument naming the rule (its position and text) and the part
// that is wrong.
Result<std::vector<AlertRule>> ParseAlertRules(std::string_view text);

// The compact text of `rules` (names always written), which ParseAlertRules reads back to the
// same rules apart from their summaries.
std::string FormatAlertRules(const std::vector<AlertRule>& rules);

// The least time between two notifications (Trigger or Renotify) of one firing alert, by its
// level: the more severe, the more often a still-firing alert is repeated. 0 repeats it at every
// evaluation. Any value >= 0 may be configured.
struct RenotifyIntervals {
  std::chrono::seconds info{60};
  std::chrono::seconds warning{30};
  std::chrono::seconds error{10};
  std::chrono::seconds critical{0};

  std::chrono::seconds For(Level level) const;
};

enum class AlertEventKind { kTrigger, kRenotify, kResolve };

// "trigger", "renotify", "resolve".
std::string_view AlertEventKindName(AlertEventKind kind);

struct AlertEvent {
  std::uint64_t sequence = 0;  // increases by one per event of this engine, from 1
  AlertEventKind kind = AlertEventKind::kTrigger;
  std::string dedup_key;  // "rule:subject" or "rule"
  std::string rule;
  std::string subject;
  Level level = Level::kWarning;
  double value = 0.0;  // NaN for a Resolve because the subject disappeared
  double threshold = 0.0;
  // For people: "memory utilization 0.93 > 0.9 for 60 s on namespace alice";
  // "memory utilization 0.85 is back at or under 0.9 on namespace alice after 3 min firing".
  std::string message;
  std::string summary;         // the rule's
  TimestampMs started_at = 0;  // when the condition was first seen true
  TimestampMs at = 0;          // when this event happened
  // The Evaluate gate refused it (withheld or delivered elsewhere): recorded in History but
  // not to be delivered.
  bool withheld = false;
  // Withheld first, then released at a later Evaluate because the replica that held its lock
  // never confirmed delivering it: this replica delivers it late.
  bool taken_over = false;
};

// {"sequence": 7, "kind": "trigger", "dedup_key": ..., "rule", "subject", "level", "value"
//  (null when NaN), "threshold", "message", "summary", "started_at", "at" (ISO 8601 UTC),
//  "withheld", "taken_over"}
boost::json::value ToJson(const AlertEvent& event);

enum class AlertPhase { kPending, kFiring };

// "pending", "firing".
std::string_view AlertPhaseName(AlertPhase phase);

struct ActiveAlert {
  std::string dedup_key;
  std::string rule;
  std::string subject;
  Level level = Level::kWarning;
  AlertPhase phase = AlertPhase::kPending;
  double value = 0.0;  // the latest value seen
  double threshold = 0.0;
  std::string message;               // as an event of it would say now
  TimestampMs started_at = 0;        // condition first seen true
  TimestampMs fired_at = 0;          // when it fired; 0 while pending
  TimestampMs last_notified_at = 0;  // latest Trigger or Renotify; 0 while pending
};

// {"dedup_key", "rule", "subject", "level", "state": "pending"|"firing", "value", "threshold",
//  "message", "started_at", "fired_at" and "last_notified_at" (null while pending)}
boost::json::value ToJson(const ActiveAlert& alert);

// Metric values: metric name -> subject -> value.
using MetricValues = std::map<std::string, std::map<std::string, double>>;

// What a NotifyGate says about one event.
enum class NotifyDecision {
  kDeliver,             // deliver it now
  kWithhold,            // another replica holds it: keep it back and ask again later
  kDeliveredElsewhere,  // another replica has delivered it: drop it
};

// Decides which events this process delivers when several replicas raise the same alerts
// (cli::ReplicaNotifyGate builds one on cache::AlertLock). Empty (no `decide`): every event is
// delivered.
struct NotifyGate {
  // Asked once per new event, and again at each later Evaluate for an event it withheld (then
  // with event.withheld already true). Runs without the engine's lock.
  std::function<NotifyDecision(const AlertEvent& event)> decide;
  // Told by the Monitor when an event `decide` let through has been handed to its sink (the
  // durable outbox), so that the replicas that withheld their copies can drop them. Optional.
  std::function<void(const AlertEvent& event)> delivered;
  // Told when a withheld event is dropped without anyone confirming it: it waited max_wait, or
  // the pending list was full. Optional: without it the engine logs the event itself.
  std::function<void(const AlertEvent& event, std::string_view reason)> gave_up;
  // How long (by event time) a withheld event waits before it is given up.
  std::chrono::milliseconds max_wait{std::chrono::minutes(3)};

  explicit operator bool() const { return static_cast<bool>(decide); }
};

struct AlertEngineOptions {
  RenotifyIntervals renotify;
  std::size_t history_limit = 1000;  // events kept for History(); older ones are dropped
  // The word naming a metric's subjects in messages ("on namespace alice"); a metric not listed
  // says "on alice".
  std::map<std::string, std::string> subject_labels = {{"memory_utilization", "namespace"}};
  // Withheld events kept to ask the gate again; beyond this the oldest is given up.
  std::size_t pending_limit = 256;
};

class AlertEngine {
 public:
  // InvalidArgument when the rules fail ValidateAlertRules or an interval is negative.
  static Result<std::unique_ptr<AlertEngine>> Create(std::vector<AlertRule> rules,
                                                     AlertEngineOptions options = {});
  AlertEngine(const AlertEngine&) = delete;
  AlertEngine& operator=(const AlertEngine&) = delete;

  // Applies the lifecycle above to every rule and returns the events it produced, in rule order
  // then subject order, each also recorded in History. `may_notify` decides once per event; an
  // event it refuses is returned and recorded with withheld = true. The lifecycle goes on
  // either way: a withheld Trigger still fires the alert, whose Renotify may be allowed later.
  // An exception from the gate is logged and the event is not withheld: a duplicate page is
  // better than a missing one.
  //
  // Withheld events (kWithhold, not kDeliveredElsewhere) wait in a pending list, oldest first.
  // Before stepping the lifecycle, each Evaluate asks the gate again for each of them: kDeliver
  // releases it (returned first, in the order withheld, with withheld = false and taken_over =
  // true, and so marked in History too), kDeliveredElsewhere drops it, kWithhold keeps it. Behind
  // an alert's waiting event its later events wait unasked, so that an alert's events are never
  // delivered out of order. An event older than may_notify.max_wait, or the oldest beyond
  // pending_limit, is given up (may_notify.gave_up, else logged). Without a gate, every pending
  // event is released.
  std::vector<AlertEvent> Evaluate(const MetricValues& values, TimestampMs now,
                                   const NotifyGate& may_notify = {});

  // Withheld events waiting for the gate's answer, oldest first.
  std::vector<AlertEvent> Pending() const;

  // Pending and firing alerts, by dedup key.
  std::vector<ActiveAlert> Active() const;

  // The latest `limit` events (all kept when limit is 0 or larger), oldest first.
  std::vector<AlertEvent> History(std::size_t limit = 0) const;

  const std::vector<AlertRule>& rules() const { return rules_; }

  // Sets the word for a metric's subjects (see AlertEngineOptions::subject_labels).
  void SetSubjectLabel(const std::string& metric, std::string label);

 private:
  struct State {
    std::size_t rule;
    std::string subject;
    AlertPhase phase;
    double value;
    TimestampMs started_at;
    TimestampMs fired_at = 0;
    TimestampMs last_notified_at = 0;
  };

  AlertEngine(std::vector<AlertRule> rules, AlertEngineOptions options);

  // One step of the lifecycle for rule `r` and `subject`, whose value is std::nullopt when the
  // subject is absent from its metric's values; appends any event to `events`.
  void Step(std::size_t r, const std::string& subject, std::optional<double> value, TimestampMs now,
            std::vector<AlertEvent>& events);
  AlertEvent MakeEvent(AlertEventKind kind, const State& state, TimestampMs now) const;
  std::string Message(AlertEventKind kind, const State& state, TimestampMs now) const;
  // Asks the gate again for the pending events (see Evaluate); returns those released.
  std::vector<AlertEvent> RetryPending(TimestampMs now, const NotifyGate& gate);
  void GiveUp(const AlertEvent& event, const NotifyGate& gate, std::string_view reason);

  const std::vector<AlertRule> rules_;
  const RenotifyIntervals renotify_;
  const std::size_t history_limit_;
  const std::size_t pending_limit_;

  std::mutex evaluate_mu_;  // serializes Evaluate, so events are recorded in sequence order
  mutable std::mutex mu_;
  std::map<std::string, std::string> subject_labels_;  // guarded by mu_
  std::map<std::string, State> states_;                // by dedup key; guarded by mu_
  std::deque<AlertEvent> history_;                     // guarded by mu_
  std::uint64_t next_sequence_ = 1;                    // guarded by mu_
  TimestampMs last_evaluated_at_ = 0;                  // guarded by mu_; for Active()'s messages
  std::deque<AlertEvent> pending_;                     // guarded by mu_; asked under evaluate_mu_
};

}  // namespace mann::monitor
