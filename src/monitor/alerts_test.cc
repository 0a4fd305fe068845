#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mann/monitor/alerts.h>

namespace mann::monitor {
namespace {

using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr TimestampMs kT0 = 1'764'720'000'000;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

TimestampMs At(int s) { return kT0 + static_cast<TimestampMs>(s) * 1000; }

AlertRule Rule(std::string metric, double threshold, int for_s, Level level = Level::kWarning) {
  AlertRule rule;
  rule.name = metric;
  rule.metric = std::move(metric);
  rule.threshold = threshold;
  rule.for_duration = seconds(for_s);
  rule.level = level;
  rule.summary = "test rule";
  return rule;
}

std::unique_ptr<AlertEngine> Engine(std::vector<AlertRule> rules, AlertEngineOptions options = {}) {
  auto engine = AlertEngine::Create(std::move(rules), std::move(options));
  EXPECT_TRUE(engine.ok()) << engine.status().ToString();
  return std::move(engine).value();
}

std::vector<AlertEventKind> Kinds(const std::vector<AlertEvent>& events) {
  std::vector<AlertEventKind> kinds;
  for (const AlertEvent& e : events) kinds.push_back(e.kind);
  return kinds;
}

// ---- Levels and rules -------------------------------------------------------------------------

TEST(AlertLevel, NamesRoundTrip) {
  for (Level level : {Level::kInfo, Level::kWarning, Level::kError, Level::kCritical}) {
    EXPECT_EQ(*ParseLevel(LevelName(level)), level);
  }
  EXPECT_EQ(LevelName(Level::kCritical), "critical");
  EXPECT_THAT(ParseLevel("warn").status().message(),
              HasSubstr("'warn' is not one of info, warning, error, critical"));
}

TEST(AlertRules, DefaultsAreTheGuidesThresholds) {
  const std::vector<AlertRule> rules = DefaultAlertRules();
  ASSERT_TRUE(ValidateAlertRules(rules).ok());
  struct Expected {
    const char* metric;
    double threshold;
    Level level;
  };
  const Expected expected[] = {
      {"memory_utilization", 0.9, Level::kWarning}, {"processing_time", 5, Level::kWarning},
      {"error_rate", 0.1, Level::kError},           {"cpu_percent", 80, Level::kWarning},
      {"system_memory", 0.8, Level::kWarning},      {"disk", 0.9, Level::kCritical},
  };
  ASSERT_EQ(rules.size(), std::size(expected));
  for (std::size_t i = 0; i < rules.size(); ++i) {
    SCOPED_TRACE(rules[i].name);
    EXPECT_EQ(rules[i].metric, expected[i].metric);
    EXPECT_EQ(rules[i].name, expected[i].metric);
    EXPECT_EQ(rules[i].threshold, expected[i].threshold);
    EXPECT_EQ(rules[i].level, expected[i].level);
    EXPECT_GT(rules[i].for_duration, seconds(0));
    EXPECT_FALSE(rules[i].summary.empty());
  }
}

TEST(AlertRules, ParsesTheCompactForm) {
  auto rules = ParseAlertRules(
      "memory_utilization>0.9 for 60s warning,  disk_full: disk > 0.95 for 0s critical,"
      "error_rate>0.25, cpu_percent > 90 for 5m, slow: processing_time>2.5 for 1h info");
  ASSERT_TRUE(rules.ok()) << rules.status().ToString();
  ASSERT_EQ(rules->size(), 5u);
  const AlertRule& a = (*rules)[0];
  EXPECT_EQ(a.name, "memory_utilization");
  EXPECT_EQ(a.metric, "memory_utilization");
  EXPECT_EQ(a.threshold, 0.9);
  EXPECT_EQ(a.for_duration, seconds(60));
  EXPECT_EQ(a.level, Level::kWarning);
  EXPECT_EQ(a.summary, "memory utilization above 0.9");
  const AlertRule& b = (*rules)[1];
  EXPECT_EQ(b.name, "disk_full");
  EXPECT_EQ(b.metric, "disk");
  EXPECT_EQ(b.threshold, 0.95);
  EXPECT_EQ(b.for_duration, seconds(0));
  EXPECT_EQ(b.level, Level::kCritical);
  const AlertRule& c = (*rules)[2];  // defaults: for 0 s, warning
  EXPECT_EQ(c.for_duration, seconds(0));
  EXPECT_EQ(c.level, Level::kWarning);
  EXPECT_EQ((*rules)[3].for_duration, seconds(300));
  EXPECT_EQ((*rules)[4].for_duration, seconds(3600));
  EXPECT_EQ((*rules)[4].summary, "p95 processing time above 2.5 s");

  EXPECT_TRUE(ParseAlertRules("").value().empty());
  EXPECT_TRUE(ParseAlertRules("   ").value().empty());
}

TEST(AlertRules, ParseErrorsNameTheRule) {
  struct Case {
    const char* text;
    const char* message;
  };
  const Case cases[] = {
      {"disk>0.9, ", "alert rule 2 \"\": the rule is empty"},
      {"disk 0.9", "alert rule 1 \"disk 0.9\": expected 'metric > threshold'"},
      {"disk<0.9", "only '>' is supported"},
      {"disk>=0.9", "'>=' is not supported"},
      {"Disk>0.9", "metric 'Disk' must match [a-z_][a-z0-9_]*"},
      {"disk>", "no threshold after '>'"},
      {"disk>lots", "threshold 'lots' is not a number"},
      {"disk>0.9 for", "'for' without a duration"},
      {"disk>0.9 for 60", "duration '60' must be a whole number of seconds, minutes or hours"},
      {"disk>0.9 for 1.5m", "duration '1.5m'"},
      {"disk>0.9 for -5s", "duration '-5s'"},
      {"disk>0.9 for 60s severe", "level 'severe' is not one of"},
      {"disk>0.9 for 60s warning now", "unexpected 'now'"},
      {": disk>0.9", "the name before ':' is empty"},
      {"my rule: disk>0.9", "alert rule name 'my rule' must be letters"},
      {"disk>0.9 warning, disk>0.95 critical",
       "alert rule name 'disk' is used twice: give each rule on one metric a name of its own"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    auto rules = ParseAlertRules(c.text);
    ASSERT_FALSE(rules.ok());
    EXPECT_EQ(rules.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(rules.status().message(), HasSubstr(c.message));
  }
}

TEST(AlertRules, FormatReadsBackToTheSameRules) {
  const std::vector<AlertRule> defaults = DefaultAlertRules();
  auto parsed = ParseAlertRules(FormatAlertRules(defaults));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ASSERT_EQ(parsed->size(), defaults.size());
  for (std::size_t i = 0; i < defaults.size(); ++i) {
    EXPECT_EQ((*parsed)[i].name, defaults[i].name);
    EXPECT_EQ((*parsed)[i].metric, defaults[i].metric);
    EXPECT_EQ((*parsed)[i].threshold, defaults[i].threshold);
    EXPECT_EQ((*parsed)[i].for_duration, defaults[i].for_duration);
    EXPECT_EQ((*parsed)[i].level, defaults[i].level);
  }
  EXPECT_EQ(FormatAlertRules({Rule("disk", 0.1 + 0.2, 30, Level::kError)}),
            "disk: disk>0.30000000000000004 for 30s error");
}

TEST(AlertRules, ValidationRejectsBadRules) {
  AlertRule nan_threshold = Rule("disk", kNaN, 0);
  AlertRule negative = Rule("disk", 0.9, -1);
  AlertRule colon = Rule("disk", 0.9, 0);
  colon.name = "disk:full";
  AlertRule bad_metric = Rule("disk", 0.9, 0);
  bad_metric.metric = "disk-used";
  EXPECT_THAT(ValidateAlertRules({nan_threshold}).message(), HasSubstr("finite"));
  EXPECT_THAT(ValidateAlertRules({negative}).message(), HasSubstr("negative"));
  EXPECT_THAT(ValidateAlertRules({colon}).message(), HasSubstr("'disk:full'"));
  EXPECT_THAT(ValidateAlertRules({bad_metric}).message(), HasSubstr("'disk-used'"));
  EXPECT_FALSE(AlertEngine::Create({negative}).ok());
  EXPECT_FALSE(
      AlertEngine::Create({Rule("disk", 0.9, 0)}, {.renotify = {.warning = seconds(-1)}}).ok());
}

TEST(AlertRules, RenotifyIntervalsDefaultToTheGuide) {
  const RenotifyIntervals intervals;
  EXPECT_EQ(intervals.For(Level::kInfo), seconds(60));
  EXPECT_EQ(intervals.For(Level::kWarning), seconds(30));
  EXPECT_EQ(intervals.For(Level::kError), seconds(10));
  EXPECT_EQ(intervals.For(Level::kCritical), seconds(0));
}

// ---- The lifecycle ----------------------------------------------------------------------------

// What one evaluation feeds the rule "m > 1" for subject "s".
enum class Input { kAbove, kBelow, kMetricMissing, kValueNaN, kSubjectAbsent };

MetricValues ValuesFor(Input input) {
  switch (input) {
    case Input::kAbove:
      return {{"m", {{"s", 2.0}}}};
    case Input::kBelow:
      return {{"m", {{"s", 0.5}}}};
    case Input::kMetricMissing:
      return {{"other", {{"s", 2.0}}}};
    case Input::kValueNaN:
      return {{"m", {{"s", kNaN}}}};
    case Input::kSubjectAbsent:
      return {{"m", {{"t", 0.5}}}};
  }
  return {};
}

struct StepCase {
  int at_s;
  Input input;
  std::vector<AlertEventKind> events;
  std::optional<AlertPhase> phase;  // after the step; std::nullopt: inactive
};

struct LifecycleCase {
  const char* transition;
  int for_s;
  std::vector<StepCase> steps;
};

TEST(AlertEngine, EveryTransitionOfTheTable) {
  using K = AlertEventKind;
  using P = AlertPhase;
  const std::optional<AlertPhase> inactive;
  // Warning level: re-notified at most every 30 s.
  const LifecycleCase cases[] = {
      {"inactive, false -> inactive", 60, {{0, Input::kBelow, {}, inactive}}},
      {"inactive, true, for 0 -> firing + Trigger",
       0,
       {{0, Input::kAbove, {K::kTrigger}, P::kFiring}}},
      {"inactive, true, for > 0 -> pending", 60, {{0, Input::kAbove, {}, P::kPending}}},
      {"pending, true, before for -> pending",
       60,
       {{0, Input::kAbove, {}, P::kPending}, {59, Input::kAbove, {}, P::kPending}}},
      {"pending, true, for reached -> firing + Trigger",
       60,
       {{0, Input::kAbove, {}, P::kPending}, {60, Input::kAbove, {K::kTrigger}, P::kFiring}}},
      {"pending, false -> inactive, nothing emitted",
       60,
       {{0, Input::kAbove, {}, P::kPending},
        {30, Input::kBelow, {}, inactive},
        {60, Input::kAbove, {}, P::kPending}}},  // the clock of for_duration starts over
      {"pending, subject absent -> inactive",
       60,
       {{0, Input::kAbove, {}, P::kPending}, {10, Input::kSubjectAbsent, {}, inactive}}},
      {"firing, true, before the interval -> firing",
       0,
       {{0, Input::kAbove, {K::kTrigger}, P::kFiring}, {29, Input::kAbove, {}, P::kFiring}}},
      {"firing, true, interval reached -> firing + Renotify",
       0,
       {{0, Input::kAbove, {K::kTrigger}, P::kFiring},
        {30, Input::kAbove, {K::kRenotify}, P::kFiring},
        {59, Input::kAbove, {}, P::kFiring},
        {60, Input::kAbove, {K::kRenotify}, P::kFiring}}},
      {"firing, false -> inactive + Resolve, once",
       0,
       {{0, Input::kAbove, {K::kTrigger}, P::kFiring},
        {10, Input::kBelow, {K::kResolve}, inactive},
        {20, Input::kBelow, {}, inactive},
        {30, Input::kBelow, {}, inactive}}},
      {"firing, subject absent -> inactive + Resolve",
       0,
       {{0, Input::kAbove, {K::kTrigger}, P::kFiring},
        {10, Input::kSubjectAbsent, {K::kResolve}, inactive}}},
      {"pending, metric missing or NaN -> as is",
       60,
       {{0, Input::kAbove, {}, P::kPending},
        {30, Input::kMetricMissing, {}, P::kPending},
        {40, Input::kValueNaN, {}, P::kPending},
        {60, Input::kAbove, {K::kTrigger}, P::kFiring}}},  // pending since 0 all along
      {"firing, metric missing or NaN -> as is, not even re-notified",
       0,
       {{0, Input::kAbove, {K::kTrigger}, P::kFiring},
        {40, Input::kMetricMissing, {}, P::kFiring},
        {80, Input::kValueNaN, {}, P::kFiring},
        {81, Input::kAbove, {K::kRenotify}, P::kFiring}}},
      {"inactive, metric missing -> inactive", 0, {{0, Input::kMetricMissing, {}, inactive}}},
  };
  for (const LifecycleCase& c : cases) {
    SCOPED_TRACE(c.transition);
    auto engine = Engine({Rule("m", 1.0, c.for_s)});
    for (const StepCase& step : c.steps) {
      SCOPED_TRACE(::testing::Message() << "at " << step.at_s << " s");
      const std::vector<AlertEvent> events = engine->Evaluate(ValuesFor(step.input), At(step.at_s));
      EXPECT_EQ(Kinds(events), step.events);
      const std::vector<ActiveAlert> active = engine->Active();
      if (step.phase) {
        ASSERT_EQ(active.size(), 1u);
        EXPECT_EQ(active[0].dedup_key, "m:s");
        EXPECT_EQ(active[0].phase, *step.phase);
      } else {
        EXPECT_TRUE(active.empty());
      }
    }
  }
}

TEST(AlertEngine, EventsCarryTheAlertsFacts) {
  AlertRule rule = Rule("memory_utilization", 0.9, 60);
  rule.summary = "Memory bank nearly full";
  auto engine = Engine({rule});
  ASSERT_TRUE(engine->Evaluate({{"memory_utilization", {{"alice", 0.91}}}}, At(0)).empty());
  const std::vector<AlertEvent> fired =
      engine->Evaluate({{"memory_utilization", {{"alice", 0.93}}}}, At(60));
  ASSERT_EQ(fired.size(), 1u);
  const AlertEvent& e = fired[0];
  EXPECT_EQ(e.sequence, 1u);
  EXPECT_EQ(e.kind, AlertEventKind::kTrigger);
  EXPECT_EQ(e.dedup_key, "memory_utilization:alice");
  EXPECT_EQ(e.rule, "memory_utilization");
  EXPECT_EQ(e.subject, "alice");
  EXPECT_EQ(e.level, Level::kWarning);
  EXPECT_EQ(e.value, 0.93);
  EXPECT_EQ(e.threshold, 0.9);
  EXPECT_EQ(e.message, "memory utilization 0.93 > 0.9 for 60 s on namespace alice");
  EXPECT_EQ(e.summary, "Memory bank nearly full");
  EXPECT_EQ(e.started_at, At(0));
  EXPECT_EQ(e.at, At(60));
  EXPECT_FALSE(e.withheld);

  const boost::json::value json = ToJson(e);
  EXPECT_EQ(json.at("kind"), "trigger");
  EXPECT_EQ(json.at("level"), "warning");
  EXPECT_EQ(json.at("dedup_key"), "memory_utilization:alice");
  EXPECT_EQ(json.at("started_at"), "2025-12-03T00:00:00.000Z");
  EXPECT_EQ(json.at("at"), "2025-12-03T00:01:00.000Z");
  EXPECT_EQ(json.at("value").as_double(), 0.93);

  const std::vector<AlertEvent> resolved =
      engine->Evaluate({{"memory_utilization", {{"alice", 0.5}}}}, At(240));
  ASSERT_EQ(resolved.size(), 1u);
  EXPECT_EQ(resolved[0].message,
            "memory utilization 0.5 is back at or under 0.9 on namespace alice after 3 min "
            "firing");
  EXPECT_EQ(resolved[0].started_at, At(0));
}

TEST(AlertEngine, MessagesForUnitsSubjectsAndVanishedSubjects) {
  auto engine = Engine({Rule("processing_time", 5, 0), Rule("cpu_percent", 80, 0),
                        Rule("queue_depth", 100, 0), Rule("memory_utilization", 0.9, 0)});
  std::vector<AlertEvent> events = engine->Evaluate({{"processing_time", {{"", 6.25}}},
                                                     {"cpu_percent", {{"", 91.234}}},
                                                     {"queue_depth", {{"shard-2", 12345}}},
                                                     {"memory_utilization", {{"bob", 0.95}}}},
                                                    At(0));
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].message, "p95 processing time 6.25 s > 5 s");
  EXPECT_EQ(events[0].dedup_key, "processing_time");
  EXPECT_EQ(events[1].message, "CPU 91.2% > 80%");
  EXPECT_EQ(events[2].message, "queue depth 12345 > 100 on shard-2");
  engine->SetSubjectLabel("queue_depth", "shard");
  events = engine->Evaluate(
      {{"queue_depth", {{"shard-2", 200}}}, {"memory_utilization", {{"carol", 0.1}}}}, At(90));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, AlertEventKind::kRenotify);
  EXPECT_EQ(events[0].message, "queue depth 200 > 100 for 90 s on shard shard-2");
  EXPECT_EQ(events[1].kind, AlertEventKind::kResolve);  // bob is no longer reported
  EXPECT_TRUE(std::isnan(events[1].value));
  EXPECT_EQ(events[1].message,
            "memory utilization on namespace bob is no longer reported; resolved after 90 s "
            "firing");
  EXPECT_TRUE(ToJson(events[1]).at("value").is_null());
}

TEST(AlertEngine, RenotifyFloorsPerLevel) {
  struct Case {
    Level level;
    RenotifyIntervals intervals;
    int expected_renotifies;  // evaluations every second from 0 s to 130 s
    int gap_s;
  };
  const Case cases[] = {
      {Level::kInfo, {}, 2, 60},       // at 60, 120
      {Level::kWarning, {}, 4, 30},    // 30, 60, 90, 120
      {Level::kError, {}, 13, 10},     // 10, 20, ..., 130
      {Level::kCritical, {}, 130, 1},  // every evaluation after the trigger
      {Level::kWarning, {.warning = seconds(45)}, 2, 45},
      {Level::kCritical, {.critical = seconds(100)}, 1, 100},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message()
                 << LevelName(c.level) << " every " << c.intervals.For(c.level).count() << " s");
    auto engine = Engine({Rule("m", 1.0, 0, c.level)}, {.renotify = c.intervals});
    std::vector<TimestampMs> notified;
    int renotifies = 0;
    for (int s = 0; s <= 130; ++s) {
      for (const AlertEvent& e : engine->Evaluate(ValuesFor(Input::kAbove), At(s))) {
        notified.push_back(e.at);
        if (e.kind == AlertEventKind::kRenotify) ++renotifies;
      }
    }
    EXPECT_EQ(renotifies, c.expected_renotifies);
    for (std::size_t i = 1; i < notified.size(); ++i) {
      EXPECT_EQ(notified[i] - notified[i - 1], c.gap_s * 1000);
    }
  }
}

TEST(AlertEngine, ForDurationIsMeasuredFromTheFirstTrueEvaluation) {
  auto engine = Engine({Rule("m", 1.0, 60)});
  int fired_at = -1;
  for (int s = 5; s <= 120; s += 10) {  // every 10 s from 5 s: first true at 5
    for (const AlertEvent& e : engine->Evaluate(ValuesFor(Input::kAbove), At(s))) {
      if (e.kind == AlertEventKind::kTrigger) fired_at = s;
    }
  }
  EXPECT_EQ(fired_at, 65);
}

TEST(AlertEngine, ANewBreachAfterResolveIsANewAlert) {
  auto engine = Engine({Rule("m", 1.0, 10)});
  EXPECT_TRUE(engine->Evaluate(ValuesFor(Input::kAbove), At(0)).empty());
  EXPECT_THAT(Kinds(engine->Evaluate(ValuesFor(Input::kAbove), At(10))),
              ElementsAre(AlertEventKind::kTrigger));
  EXPECT_THAT(Kinds(engine->Evaluate(ValuesFor(Input::kBelow), At(20))),
              ElementsAre(AlertEventKind::kResolve));
  EXPECT_TRUE(engine->Evaluate(ValuesFor(Input::kAbove), At(100)).empty());  // pending again
  const std::vector<AlertEvent> again = engine->Evaluate(ValuesFor(Input::kAbove), At(110));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].kind, AlertEventKind::kTrigger);
  EXPECT_EQ(again[0].started_at, At(100));
}

TEST(AlertEngine, SubjectsHaveAlertsOfTheirOwn) {
  auto engine = Engine({Rule("memory_utilization", 0.9, 0), Rule("disk", 0.9, 0)});
  std::vector<AlertEvent> events =
      engine->Evaluate({{"memory_utilization", {{"alice", 0.95}, {"bob", 0.2}, {"carol", 0.99}}},
                        {"disk", {{"", 0.1}}}},
                       At(0));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].dedup_key, "memory_utilization:alice");
  EXPECT_EQ(events[1].dedup_key, "memory_utilization:carol");

  // bob rises, alice falls, carol stays; the disk fills.
  events =
      engine->Evaluate({{"memory_utilization", {{"alice", 0.5}, {"bob", 0.92}, {"carol", 0.99}}},
                        {"disk", {{"", 0.95}}}},
                       At(5));
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].dedup_key, "memory_utilization:alice");
  EXPECT_EQ(events[0].kind, AlertEventKind::kResolve);
  EXPECT_EQ(events[1].dedup_key, "memory_utilization:bob");
  EXPECT_EQ(events[1].kind, AlertEventKind::kTrigger);
  EXPECT_EQ(events[2].dedup_key, "disk");
  EXPECT_EQ(events[2].kind, AlertEventKind::kTrigger);

  std::vector<std::string> keys;
  for (const ActiveAlert& a : engine->Active()) keys.push_back(a.dedup_key);
  EXPECT_THAT(keys, ElementsAre("disk", "memory_utilization:bob", "memory_utilization:carol"));
}

TEST(AlertEngine, ActiveListsPendingAndFiring) {
  auto engine = Engine({Rule("slow", 1.0, 60), Rule("fast", 1.0, 0, Level::kCritical)});
  engine->Evaluate({{"slow", {{"", 2}}}, {"fast", {{"", 3}}}}, At(0));
  engine->Evaluate({{"slow", {{"", 2.5}}}, {"fast", {{"", 3}}}}, At(20));
  const std::vector<ActiveAlert> active = engine->Active();
  ASSERT_EQ(active.size(), 2u);
  const ActiveAlert& fast = active[0];
  EXPECT_EQ(fast.dedup_key, "fast");
  EXPECT_EQ(fast.phase, AlertPhase::kFiring);
  EXPECT_EQ(fast.level, Level::kCritical);
  EXPECT_EQ(fast.fired_at, At(0));
  EXPECT_EQ(fast.last_notified_at, At(20));  // critical: re-notified at every evaluation
  const ActiveAlert& slow = active[1];
  EXPECT_EQ(slow.phase, AlertPhase::kPending);
  EXPECT_EQ(slow.value, 2.5);
  EXPECT_EQ(slow.started_at, At(0));
  EXPECT_EQ(slow.message, "slow 2.5 > 1 for 20 s");

  const boost::json::value json = ToJson(slow);
  EXPECT_EQ(json.at("state"), "pending");
  EXPECT_TRUE(json.at("fired_at").is_null());
  EXPECT_EQ(ToJson(fast).at("state"), "firing");
  EXPECT_EQ(ToJson(fast).at("fired_at"), "2025-12-03T00:00:00.000Z");
}

TEST(AlertEngine, HistoryIsBounded) {
  AlertEngineOptions options;
  options.history_limit = 5;
  auto engine = Engine({Rule("m", 1.0, 0, Level::kCritical)}, options);
  for (int s = 0; s < 12; ++s) engine->Evaluate(ValuesFor(Input::kAbove), At(s));  // 12 events
  const std::vector<AlertEvent> all = engine->History();
  ASSERT_EQ(all.size(), 5u);
  EXPECT_EQ(all.front().sequence, 8u);
  EXPECT_EQ(all.back().sequence, 12u);
  const std::vector<AlertEvent> last = engine->History(2);
  ASSERT_EQ(last.size(), 2u);
  EXPECT_EQ(last[0].sequence, 11u);
  EXPECT_EQ(engine->History(100).size(), 5u);
}

TEST(AlertEngine, GateWithholdsEventsButTheLifecycleGoesOn) {
  auto engine = Engine({Rule("m", 1.0, 0, Level::kCritical), Rule("n", 1.0, 0)});
  std::vector<std::string> asked;
  // "m" is another replica's, delivered there: its events are withheld and not kept.
  NotifyGate only_n;
  only_n.decide = [&](const AlertEvent& event) {
    asked.push_back(event.dedup_key);
    return event.dedup_key.starts_with("n") ? NotifyDecision::kDeliver
                                            : NotifyDecision::kDeliveredElsewhere;
  };
  const MetricValues both = {{"m", {{"", 2}}}, {"n", {{"", 2}}}};
  std::vector<AlertEvent> events = engine->Evaluate(both, At(0), only_n);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_TRUE(events[0].withheld);
  EXPECT_FALSE(events[1].withheld);
  EXPECT_THAT(asked, ElementsAre("m", "n"));

  // Withheld or not, the alert fired: the next one is a Renotify, and the history says which
  // events were withheld.
  events = engine->Evaluate(both, At(1), only_n);
  EXPECT_THAT(Kinds(events), ElementsAre(AlertEventKind::kRenotify));
  const std::vector<AlertEvent> history = engine->History();
  ASSERT_EQ(history.size(), 3u);
  EXPECT_TRUE(history[0].withheld);
  EXPECT_FALSE(history[1].withheld);
  EXPECT_TRUE(history[2].withheld);
  EXPECT_TRUE(ToJson(history[0]).at("withheld").as_bool());

  // A gate that throws lets the event through.
  NotifyGate throwing;
  throwing.decide = [](const AlertEvent&) -> NotifyDecision {
    throw std::runtime_error("lock service unreachable");
  };
  events = engine->Evaluate(both, At(2), throwing);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_FALSE(events[0].withheld);
  EXPECT_TRUE(engine->Pending().empty());
}

// A gate answering from a table by dedup key (kDeliver for keys not in it), recording what it
// was asked and what it gave up.
struct TableGate {
  std::map<std::string, NotifyDecision> answers;
  std::vector<std::string> asked;  // "key kind" or "key kind again" for a withheld one
  std::vector<std::string> given_up;

  NotifyGate Gate(std::chrono::milliseconds max_wait = std::chrono::minutes(3)) {
    NotifyGate gate;
    gate.decide = [this](const AlertEvent& e) {
      asked.push_back(e.dedup_key + " " + std::string(AlertEventKindName(e.kind)) +
                      (e.withheld ? " again" : ""));
      auto it = answers.find(e.dedup_key);
      return it == answers.end() ? NotifyDecision::kDeliver : it->second;
    };
    gate.gave_up = [this](const AlertEvent& e, std::string_view) {
      given_up.push_back(e.dedup_key + " " + std::string(AlertEventKindName(e.kind)));
    };
    gate.max_wait = max_wait;
    return gate;
  }
};

TEST(AlertEngine, WithheldEventsAreAskedAgainAndReleasedInOrder) {
  auto engine = Engine({Rule("m", 1.0, 0), Rule("n", 1.0, 0)});
  TableGate table;
  table.answers = {{"m", NotifyDecision::kWithhold}, {"n", NotifyDecision::kWithhold}};
  const NotifyGate gate = table.Gate();
  const MetricValues above = {{"m", {{"", 2}}}, {"n", {{"", 2}}}};
  const MetricValues below = {{"m", {{"", 0}}}, {"n", {{"", 0}}}};

  std::vector<AlertEvent> events = engine->Evaluate(above, At(0), gate);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_TRUE(events[0].withheld && events[1].withheld);
  ASSERT_EQ(engine->Pending().size(), 2u);

  // Both resolve while their triggers wait: the resolves queue behind them, unasked.
  table.asked.clear();
  events = engine->Evaluate(below, At(1), gate);
  EXPECT_THAT(Kinds(events), ElementsAre(AlertEventKind::kResolve, AlertEventKind::kResolve));
  EXPECT_THAT(table.asked, ElementsAre("m trigger again", "n trigger again"));
  EXPECT_THAT(Kinds(engine->Pending()),
              ElementsAre(AlertEventKind::kTrigger, AlertEventKind::kTrigger,
                          AlertEventKind::kResolve, AlertEventKind::kResolve));

  // m's holder confirmed (its copies are dropped); n's holder died (its lock is free): n's
  // trigger then its resolve are released, in that order, marked taken over, history too.
  table.answers = {{"m", NotifyDecision::kDeliveredElsewhere}};
  table.asked.clear();
  events = engine->Evaluate({}, At(2), gate);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].dedup_key, "n");
  EXPECT_EQ(events[0].kind, AlertEventKind::kTrigger);
  EXPECT_EQ(events[1].kind, AlertEventKind::kResolve);
  EXPECT_TRUE(events[0].taken_over && !events[0].withheld);
  EXPECT_EQ(events[0].at, At(0)) << "the copy as it was withheld";
  EXPECT_THAT(table.asked, ElementsAre("m trigger again", "n trigger again", "m resolve again",
                                       "n resolve again"));
  EXPECT_TRUE(engine->Pending().empty());
  const std::vector<AlertEvent> history = engine->History();
  ASSERT_EQ(history.size(), 4u);
  EXPECT_EQ(history[0].dedup_key, "m");
  EXPECT_TRUE(history[0].withheld);
  EXPECT_EQ(history[1].dedup_key, "n");
  EXPECT_TRUE(history[1].taken_over);
  EXPECT_FALSE(history[1].withheld);
  EXPECT_TRUE(ToJson(history[1]).at("taken_over").as_bool());

  // Nothing more to ask.
  table.asked.clear();
  EXPECT_TRUE(engine->Evaluate({}, At(3), gate).empty());
  EXPECT_TRUE(table.asked.empty());
  EXPECT_TRUE(table.given_up.empty());
}

TEST(AlertEngine, PendingEventsAreBoundedInTimeAndCount) {
  AlertEngineOptions options;
  options.pending_limit = 3;
  auto engine = Engine({Rule("m", 1.0, 0)}, options);
  TableGate table;
  table.answers = {{"m:a", NotifyDecision::kWithhold},
                   {"m:b", NotifyDecision::kWithhold},
                   {"m:c", NotifyDecision::kWithhold},
                   {"m:d", NotifyDecision::kWithhold}};
  const NotifyGate gate = table.Gate(std::chrono::seconds(10));

  // Four withheld triggers, three kept: the oldest is given up.
  engine->Evaluate({{"m", {{"a", 2}, {"b", 2}, {"c", 2}, {"d", 2}}}}, At(0), gate);
  EXPECT_THAT(table.given_up, ElementsAre("m:a trigger"));
  ASSERT_EQ(engine->Pending().size(), 3u);
  EXPECT_EQ(engine->Pending()[0].dedup_key, "m:b");

  // Ten seconds after them they still wait; later they are given up, without asking.
  engine->Evaluate({}, At(10), gate);
  EXPECT_EQ(engine->Pending().size(), 3u);
  table.asked.clear();
  engine->Evaluate({}, At(11), gate);
  EXPECT_TRUE(engine->Pending().empty());
  EXPECT_TRUE(table.asked.empty());
  EXPECT_THAT(table.given_up,
              ElementsAre("m:a trigger", "m:b trigger", "m:c trigger", "m:d trigger"));
}

TEST(AlertEngine, WithoutAGatePendingEventsAreReleased) {
  auto engine = Engine({Rule("m", 1.0, 0)});
  TableGate table;
  table.answers = {{"m", NotifyDecision::kWithhold}};
  engine->Evaluate({{"m", {{"", 2}}}}, At(0), table.Gate());
  ASSERT_EQ(engine->Pending().size(), 1u);
  std::vector<AlertEvent> events = engine->Evaluate({}, At(1));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(events[0].taken_over);
  EXPECT_TRUE(engine->Pending().empty());
}

TEST(AlertEngine, ConcurrentEvaluationsAndReadsAreSafe) {
  AlertEngineOptions options;
  options.history_limit = 10'000;
  auto engine = Engine({Rule("m", 1.0, 0, Level::kCritical)}, options);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        engine->Evaluate(ValuesFor(i % 3 == 0 ? Input::kBelow : Input::kAbove), At(t * 1000 + i));
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < 500; ++i) {
      engine->Active();
      engine->History(10);
    }
  });
  for (std::thread& t : threads) t.join();
  const std::vector<AlertEvent> history = engine->History();
  ASSERT_FALSE(history.empty());
  for (std::size_t i = 1; i < history.size(); ++i) {
    EXPECT_EQ(history[i].sequence, history[i - 1].sequence + 1);
  }
}

}  // namespace
}  // namespace mann::monitor
