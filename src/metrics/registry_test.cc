#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mann/metrics/process_collector.h>
#include <mann/metrics/registry.h>

namespace mann::metrics {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// --- Rendering ---------------------------------------------------------------------------------

TEST(RegistryRender, CounterChildrenSortedByLabelValues) {
  Registry registry;
  CounterFamily* requests =
      registry.AddCounter("http_requests_total", "HTTP requests answered.", {"method", "code"})
          .value();
  requests->WithLabels({"GET", "200"}).Inc();
  requests->WithLabels({"GET", "200"}).Inc(2);
  requests->WithLabels({"POST", "500"}).Inc(0.5);
  requests->WithLabels({"DELETE", "204"});  // created at zero

  EXPECT_EQ(registry.Render(),
            "# HELP http_requests_total HTTP requests answered.\n"
            "# TYPE http_requests_total counter\n"
            "http_requests_total{method=\"DELETE\",code=\"204\"} 0\n"
            "http_requests_total{method=\"GET\",code=\"200\"} 3\n"
            "http_requests_total{method=\"POST\",code=\"500\"} 0.5\n");
  EXPECT_EQ(requests->WithLabels({"GET", "200"}).Value(), 3.0);
}

TEST(RegistryRender, GaugesSortedByFamilyName) {
  Registry registry;
  Gauge& queue = registry.AddGauge("zeta_queue_depth", "Jobs waiting.").value()->WithLabels();
  Gauge& free = registry.AddGauge("alpha_free_bytes", "Free space.").value()->WithLabels();
  queue.Set(10);
  queue.Inc();
  queue.Dec(4);
  free.Set(-2.5);

  EXPECT_EQ(registry.Render(),
            "# HELP alpha_free_bytes Free space.\n"
            "# TYPE alpha_free_bytes gauge\n"
            "alpha_free_bytes -2.5\n"
            "# HELP zeta_queue_depth Jobs waiting.\n"
            "# TYPE zeta_queue_depth gauge\n"
            "zeta_queue_depth 7\n");
}

TEST(RegistryRender, HistogramBucketsAreCumulativeWithSumAndCount) {
  Registry registry;
  const double bounds[] = {0.25, 0.5, 1};
  HistogramFamily* latency =
      registry.AddHistogram("op_duration_seconds", "Operation time.", {"op"}, bounds).value();
  Histogram& read = latency->WithLabels({"read"});
  for (double v : {0.125, 0.25, 0.375, 3.0}) read.Observe(v);  // 0.25 is inside le="0.25"

  EXPECT_EQ(registry.Render(),
            "# HELP op_duration_seconds Operation time.\n"
            "# TYPE op_duration_seconds histogram\n"
            "op_duration_seconds_bucket{op=\"read\",le=\"0.25\"} 2\n"
            "op_duration_seconds_bucket{op=\"read\",le=\"0.5\"} 3\n"
            "op_duration_seconds_bucket{op=\"read\",le=\"1\"} 3\n"
            "op_duration_seconds_bucket{op=\"read\",le=\"+Inf\"} 4\n"
            "op_duration_seconds_sum{op=\"read\"} 3.75\n"
            "op_duration_seconds_count{op=\"read\"} 4\n");
  EXPECT_EQ(read.CumulativeCounts(), (std::vector<std::uint64_t>{2, 3, 3, 4}));
  EXPECT_EQ(read.Count(), 4u);
  EXPECT_EQ(read.Sum(), 3.75);
}

TEST(RegistryRender, UnlabelledHistogramWithDefaultLatencyBuckets) {
  Registry registry;
  HistogramFamily* family =
      registry.AddHistogram("turn_duration_seconds", "Turn time.", {}).value();
  EXPECT_EQ(family->bucket_bounds(),
            std::vector<double>(kLatencyBuckets.begin(), kLatencyBuckets.end()));
  family->WithLabels().Observe(0.2);  // the objective: counted in le="0.2"
  family->WithLabels().Observe(0.21);

  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("turn_duration_seconds_bucket{le=\"0.1\"} 0\n"
                              "turn_duration_seconds_bucket{le=\"0.2\"} 1\n"
                              "turn_duration_seconds_bucket{le=\"0.25\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("turn_duration_seconds_bucket{le=\"10\"} 2\n"
                              "turn_duration_seconds_bucket{le=\"+Inf\"} 2\n"
                              "turn_duration_seconds_sum 0.41000000000000003\n"
                              "turn_duration_seconds_count 2\n"));
}

TEST(RegistryRender, HistogramSpecialObservations) {
  Registry registry;
  const double bounds[] = {1};
  Histogram& h =
      registry.AddHistogram("odd_values_seconds", "Odd.", {}, bounds).value()->WithLabels();
  h.Observe(-5);    // below every bound: first bucket
  h.Observe(kNaN);  // dropped
  h.Observe(kInf);  // only the +Inf bucket
  EXPECT_EQ(h.CumulativeCounts(), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(h.Sum(), kInf);
  EXPECT_THAT(registry.Render(), HasSubstr("odd_values_seconds_sum +Inf\n"));
}

TEST(RegistryRender, FamilyWithoutChildrenRendersOnlyHelpAndType) {
  Registry registry;
  ASSERT_TRUE(registry.AddCounter("evictions_total", "Entries evicted.", {"reason"}).ok());
  ASSERT_TRUE(registry.AddHistogram("wait_seconds", "Wait.", {"queue"}).ok());
  EXPECT_EQ(registry.Render(),
            "# HELP evictions_total Entries evicted.\n"
            "# TYPE evictions_total counter\n"
            "# HELP wait_seconds Wait.\n"
            "# TYPE wait_seconds histogram\n");
}

TEST(RegistryRender, EscapesHelpAndLabelValues) {
  Registry registry;
  CounterFamily* family =
      registry
          .AddCounter("paths_total", "Paths like C:\\dir, \"quoted\",\nover two lines.", {"path"})
          .value();
  family->WithLabels({"a\"b"}).Inc();
  family->WithLabels({"c\\d"}).Inc();
  family->WithLabels({"e\nf"}).Inc();

  // In help, only backslash and newline are escaped; in label values the double quote too.
  EXPECT_EQ(registry.Render(),
            "# HELP paths_total Paths like C:\\\\dir, \"quoted\",\\nover two lines.\n"
            "# TYPE paths_total counter\n"
            "paths_total{path=\"a\\\"b\"} 1\n"
            "paths_total{path=\"c\\\\d\"} 1\n"
            "paths_total{path=\"e\\nf\"} 1\n");
}

TEST(RegistryRender, InvalidUtf8LabelValuesBecomeReplacementCharacters) {
  Registry registry;
  CounterFamily* family = registry.AddCounter("routes_total", "Routes.", {"route"}).value();
  Counter& bad = family->WithLabels({"/caf\xE9"});  // Latin-1 e-acute, not UTF-8
  bad.Inc();
  // The sanitized value names the same child on the next lookup.
  EXPECT_EQ(&family->WithLabels({"/caf\xE9"}), &bad);
  family->WithLabels({"/caf\xC3\xA9"}).Inc(2);  // UTF-8 e-acute is kept as is

  // Sorted by bytes: U+00E9 (C3 A9) before U+FFFD (EF BF BD).
  EXPECT_THAT(registry.Render(), HasSubstr("routes_total{route=\"/caf\xC3\xA9\"} 2\n"
                                           "routes_total{route=\"/caf\xEF\xBF\xBD\"} 1\n"));
}

TEST(RegistryRender, WrongNumberOfLabelValuesGoesToDetachedChild) {
  Registry registry;
  CounterFamily* family = registry.AddCounter("calls_total", "Calls.", {"method"}).value();
  Counter& detached = family->WithLabels({"GET", "extra"});
  detached.Inc(5);
  EXPECT_EQ(&family->WithLabels(), &detached);
  family->WithLabels({"GET"}).Inc();
  EXPECT_EQ(registry.Render(),
            "# HELP calls_total Calls.\n"
            "# TYPE calls_total counter\n"
            "calls_total{method=\"GET\"} 1\n");
}

TEST(RegistryRender, ChildReferencesAreStableAcrossLookupsAndGrowth) {
  Registry registry;
  GaugeFamily* family = registry.AddGauge("shard_entries", "Entries.", {"shard"}).value();
  Gauge& first = family->WithLabels({"0"});
  for (int i = 1; i < 1000; ++i) family->WithLabels({std::to_string(i)});
  EXPECT_EQ(&family->WithLabels({"0"}), &first);
  const std::vector<std::string> dynamic = {"0"};
  EXPECT_EQ(&family->WithLabels(dynamic), &first);
  const std::vector<std::string_view> views = {"0"};
  EXPECT_EQ(&family->WithLabels(views), &first);
}

TEST(RegistryRender, CounterDropsNegativeAndNaNIncrements) {
  Counter counter;
  counter.Inc(2);
  counter.Inc(-1);
  counter.Inc(kNaN);
  counter.Inc(0);
  EXPECT_EQ(counter.Value(), 2.0);
}

// --- Value formatting --------------------------------------------------------------------------

TEST(MetricsFormat, ValuesParseBackExactly) {
  const struct {
    double value;
    const char* text;
  } cases[] = {
      {0, "0"},
      {1, "1"},
      {-7, "-7"},
      {0.5, "0.5"},
      {0.1, "0.1"},
      {123456.789, "123456.789"},
      {1e15, "1000000000000000"},
      {9007199254740992.0, "9007199254740992"},  // 2^53, the last of the exact integers
      {1e21, "1e+21"},
      {1.5e-7, "1.5e-07"},
      {-0.0, "-0"},
      {kInf, "+Inf"},
      {-kInf, "-Inf"},
      {kNaN, "NaN"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(FormatValue(c.value), c.text) << c.text;
  }
}

TEST(MetricsFormat, ShortestTextRoundTripsRandomDoubles) {
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<std::uint64_t> bits;
  int tested = 0;
  while (tested < 10000) {
    const std::uint64_t b = bits(rng);
    double v;
    std::memcpy(&v, &b, sizeof v);
    if (!std::isfinite(v)) continue;
    ++tested;
    const std::string text = FormatValue(v);
    ASSERT_EQ(std::strtod(text.c_str(), nullptr), v) << text;
  }
}

// --- Registration ------------------------------------------------------------------------------

TEST(RegistryRegistration, SameShapeReturnsTheSameFamily) {
  Registry registry;
  auto first = registry.AddCounter("hits_total", "Cache hits.", {"cache"});
  auto second = registry.AddCounter("hits_total", "Cache hits.", {"cache"});
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(*first, *second);
  const double bounds[] = {1, 2};
  auto h1 = registry.AddHistogram("load_seconds", "Load.", {}, bounds);
  auto h2 = registry.AddHistogram("load_seconds", "Load.", {}, bounds);
  ASSERT_TRUE(h1.ok() && h2.ok());
  EXPECT_EQ(*h1, *h2);
}

TEST(RegistryRegistration, DifferentShapeIsAlreadyExists) {
  Registry registry;
  ASSERT_TRUE(registry.AddGauge("pool_size", "Pool size.", {"pool"}).ok());
  const double bounds[] = {1, 2};
  ASSERT_TRUE(registry.AddHistogram("load_seconds", "Load.", {}, bounds).ok());

  const Status conflicts[] = {
      registry.AddGauge("pool_size", "Another help.", {"pool"}).status(),
      registry.AddGauge("pool_size", "Pool size.", {"kind"}).status(),
      registry.AddGauge("pool_size", "Pool size.", {}).status(),
      registry.AddHistogram("pool_size", "Pool size.", {"pool"}).status(),
      registry.AddHistogram("load_seconds", "Load.", {}, kLatencyBuckets).status(),
  };
  for (const Status& s : conflicts) {
    EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.ToString();
    EXPECT_THAT(s.message(), HasSubstr("is already registered as")) << s.ToString();
  }
  EXPECT_THAT(conflicts[0].message(),
              HasSubstr("'pool_size' is already registered as gauge with labels [pool] and help "
                        "\"Pool size.\"; cannot register it as gauge with labels [pool] and help "
                        "\"Another help.\""));
  EXPECT_THAT(conflicts[4].message(), HasSubstr("buckets [1, 2]"));
}

TEST(RegistryRegistration, CallbackJoinsTheFamilyOfTheSameShape) {
  Registry registry;
  GaugeFamily* family = registry.AddGauge("pool_size", "Pool size.", {"pool"}).value();
  family->WithLabels({"a"}).Set(1);
  auto joined = registry.AddGaugeCallback("pool_size", "Pool size.", {"pool"}, [] {
    return std::vector<Sample>{{{"b"}, 2}};
  });
  ASSERT_TRUE(joined.ok());
  EXPECT_THAT(registry.Render(), HasSubstr("pool_size{pool=\"a\"} 1\npool_size{pool=\"b\"} 2\n"));

  auto other_help = registry.AddGaugeCallback("pool_size", "Other.", {"pool"},
                                              [] { return std::vector<Sample>{}; });
  EXPECT_EQ(other_help.status().code(), StatusCode::kAlreadyExists);
  auto as_counter = registry.AddCounterCallback("pool_size", "Pool size.", {"pool"},
                                                [] { return std::vector<Sample>{}; });
  EXPECT_EQ(as_counter.status().code(), StatusCode::kInvalidArgument);  // no _total
}

TEST(RegistryRegistration, RejectsBadHelpLabelsAndBuckets) {
  Registry registry;
  const double decreasing[] = {1, 0.5};
  const double repeated[] = {1, 1};
  const double with_nan[] = {1, kNaN};
  const double inf_inside[] = {1, kInf, 2};
  const double neg_inf[] = {-kInf, 1};
  const struct {
    Status status;
    const char* message;
  } cases[] = {
      {registry.AddGauge("a_ratio", "").status(), "metric 'a_ratio' has empty help text"},
      {registry.AddGauge("b_ratio", "bad \xFF").status(),
       "help text of metric 'b_ratio' is not UTF-8"},
      {registry.AddGauge("c_ratio", "C.", {"x", "y", "x"}).status(), "lists label 'x' twice"},
      {registry.AddHistogram("d_seconds", "D.", {}, decreasing).status(),
       "strictly increasing, got 0.5 after 1"},
      {registry.AddHistogram("e_seconds", "E.", {}, repeated).status(),
       "strictly increasing, got 1 after 1"},
      {registry.AddHistogram("f_seconds", "F.", {}, with_nan).status(), "bound 1 is NaN"},
      {registry.AddHistogram("g_seconds", "G.", {}, inf_inside).status(), "bound 1 is +Inf"},
      {registry.AddHistogram("h_seconds", "H.", {}, neg_inf).status(), "bound 0 is -Inf"},
      {registry.AddHistogram("i_seconds", "I.", {"le"}).status(), "label name 'le'"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(c.status.code(), StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(c.status.message(), HasSubstr(c.message));
  }
  // Nothing invalid was registered.
  EXPECT_EQ(registry.Render(), "");
}

TEST(RegistryRegistration, TrailingInfBoundIsImplicit) {
  Registry registry;
  const double with_inf[] = {0.5, 1, kInf};
  const double without[] = {0.5, 1};
  HistogramFamily* a = registry.AddHistogram("x_seconds", "X.", {}, with_inf).value();
  EXPECT_EQ(a->bucket_bounds(), (std::vector<double>{0.5, 1}));
  EXPECT_EQ(registry.AddHistogram("x_seconds", "X.", {}, without).value(), a);
  const std::span<const double> none;
  HistogramFamily* b = registry.AddHistogram("y_seconds", "Y.", {}, none).value();
  b->WithLabels().Observe(3);
  EXPECT_THAT(registry.Render(), HasSubstr("# TYPE y_seconds histogram\n"
                                           "y_seconds_bucket{le=\"+Inf\"} 1\n"
                                           "y_seconds_sum 3\n"
                                           "y_seconds_count 1\n"));
}

// --- Names: our rules, and the same verdicts from promtool's linter ---------------------------

struct NameCase {
  std::string metric;
  MetricType type;
  std::string label;        // empty: no label
  std::string error;        // empty: accepted; else a substring of the error
  bool stricter_than_lint;  // rejected by us, accepted by promtool
};

const std::vector<NameCase>& NameCases() {
  static const std::vector<NameCase> cases = {
      {"http_requests_total", MetricType::kCounter, "", "", false},
      {"mann_memory_utilization", MetricType::kGauge, "", "", false},
      {"request_duration_seconds", MetricType::kHistogram, "", "", false},
      {"_private_entries", MetricType::kGauge, "", "", false},
      {"temperature_celsius", MetricType::kGauge, "", "", false},
      {"encode_cpu_seconds_total", MetricType::kCounter, "", "", false},
      {"disk_free_bytes", MetricType::kGauge, "mount_point", "", false},
      {"millisecond_ticks", MetricType::kGauge, "", "", false},
      {"http_requests", MetricType::kCounter, "", "must end in _total", false},
      {"queue_total", MetricType::kGauge, "", "must not end in _total", false},
      {"wait_total", MetricType::kHistogram, "", "must not end in _total", false},
      {"request_duration_milliseconds", MetricType::kHistogram, "",
       "uses 'milliseconds': use the base unit 'seconds'", false},
      {"payload_kilobytes", MetricType::kGauge, "", "use the base unit 'bytes'", false},
      {"payload_bits", MetricType::kGauge, "", "use the base unit 'bytes'", false},
      {"uptime_hours", MetricType::kGauge, "", "use the base unit 'seconds'", false},
      {"oven_fahrenheit", MetricType::kGauge, "", "use the base unit 'celsius'", false},
      {"latency_ms", MetricType::kGauge, "", "abbreviated unit 'ms'", false},
      {"size_kb_used", MetricType::kGauge, "", "abbreviated unit 'kb'", false},
      {"delay_s", MetricType::kGauge, "", "abbreviated unit 's'", false},
      {"items_count", MetricType::kGauge, "", "must not end in _count", false},
      {"items_sum", MetricType::kGauge, "", "must not end in _sum", false},
      {"items_bucket", MetricType::kGauge, "", "must not end in _bucket", false},
      {"queue_gauge", MetricType::kGauge, "", "type word 'gauge'", false},
      {"errors_counter_total", MetricType::kCounter, "", "type word 'counter'", false},
      {"job:requests:rate5m", MetricType::kGauge, "", "reserved for recording rules", false},
      {"fooBar", MetricType::kGauge, "", "snake_case", false},
      {"cache_entries", MetricType::kGauge, "myLabel", "snake_case", false},
      {"cache_hits_total", MetricType::kCounter, "le", "reserved for histogram", false},
      {"cache_misses_total", MetricType::kCounter, "quantile", "reserved for histogram", false},
      {"FOO_BAR", MetricType::kGauge, "", "snake_case", true},
      {"cache_size_bytes", MetricType::kGauge, "Tier", "snake_case", true},
      {"shard_load_ratio", MetricType::kGauge, "__shard", "starts with '__'", true},
      // Outside the exposition's grammar: never reaches promtool.
      {"", MetricType::kGauge, "", "is not valid", false},
      {"9lives", MetricType::kGauge, "", "is not valid", false},
      {"dash-name", MetricType::kGauge, "", "is not valid", false},
      {"colon_label_ok", MetricType::kGauge, "a:b", "is not valid", false},
      {"digit_label_ok", MetricType::kGauge, "1st", "is not valid", false},
  };
  return cases;
}

Status ValidateCase(const NameCase& c) {
  MANN_RETURN_IF_ERROR(ValidateMetricName(c.metric, c.type));
  if (!c.label.empty()) MANN_RETURN_IF_ERROR(ValidateLabelName(c.metric, c.label, c.type));
  return Status::Ok();
}

TEST(RegistryNames, ValidationFollowsTheNamingRules) {
  for (const NameCase& c : NameCases()) {
    const Status s = ValidateCase(c);
    if (c.error.empty()) {
      EXPECT_TRUE(s.ok()) << c.metric << " " << c.label << ": " << s.ToString();
    } else {
      EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.metric << " " << c.label;
      EXPECT_THAT(s.message(), HasSubstr(c.error)) << c.metric << " " << c.label;
    }
  }
}

TEST(RegistryNames, RegistrationAppliesTheRules) {
  Registry registry;
  EXPECT_THAT(registry.AddCounter("requests", "R.").status().message(),
              HasSubstr("counter name 'requests' must end in _total"));
  EXPECT_THAT(registry.AddGauge("load_ms", "L.").status().message(),
              HasSubstr("abbreviated unit 'ms'"));
  EXPECT_THAT(registry.AddGauge("x_ratio", "X.", {"__name__"}).status().message(),
              HasSubstr("label name '__name__' of metric 'x_ratio' starts with '__'"));
  EXPECT_THAT(registry.AddGaugeCallback("Bad", "B.", [] { return 1.0; }).status().message(),
              HasSubstr("metric name 'Bad' must be snake_case"));
}

// --- Callbacks ---------------------------------------------------------------------------------

TEST(RegistryCallbacks, GaugeCallbackIsReadAtScrapeTimeUntilItsHandleDies) {
  Registry registry;
  std::atomic<double> utilization = 0.25;
  {
    CallbackHandle handle = registry
                                .AddGaugeCallback("mann_memory_utilization", "Entries per size.",
                                                  [&] { return utilization.load(); })
                                .value();
    EXPECT_TRUE(handle.registered());
    EXPECT_THAT(registry.Render(), HasSubstr("\nmann_memory_utilization 0.25\n"));
    utilization = 0.75;
    EXPECT_THAT(registry.Render(), HasSubstr("\nmann_memory_utilization 0.75\n"));

    CallbackHandle moved = std::move(handle);
    EXPECT_FALSE(handle.registered());  // NOLINT(bugprone-use-after-move): checking the move
    EXPECT_THAT(registry.Render(), HasSubstr("\nmann_memory_utilization 0.75\n"));
  }
  EXPECT_EQ(registry.Render(),
            "# HELP mann_memory_utilization Entries per size.\n"
            "# TYPE mann_memory_utilization gauge\n");
}

TEST(RegistryCallbacks, ResetAndMoveAssignmentUnregister) {
  Registry registry;
  CallbackHandle a =
      registry.AddCounterCallback("a_events_total", "A.", [] { return 1.0; }).value();
  CallbackHandle b =
      registry.AddCounterCallback("b_events_total", "B.", [] { return 2.0; }).value();
  EXPECT_THAT(registry.Render(), HasSubstr("a_events_total 1\n"));
  a.Reset();
  EXPECT_FALSE(a.registered());
  EXPECT_THAT(registry.Render(), Not(HasSubstr("a_events_total 1\n")));
  EXPECT_THAT(registry.Render(), HasSubstr("b_events_total 2\n"));
  b = CallbackHandle();  // move-assigning unregisters what b held
  EXPECT_THAT(registry.Render(), Not(HasSubstr("b_events_total 2\n")));
  a.Reset();  // twice is harmless
}

TEST(RegistryCallbacks, MissingValueLeavesTheSampleOut) {
  Registry registry;
  CallbackHandle handle =
      registry
          .AddGaugeCallback("sensor_volts", "Volts.",
                            []() -> std::optional<double> { return std::nullopt; })
          .value();
  EXPECT_EQ(registry.Render(), "# HELP sensor_volts Volts.\n# TYPE sensor_volts gauge\n");
}

TEST(RegistryCallbacks, LabelledSamplesMergeWithChildrenAndDropDuplicates) {
  Registry registry;
  GaugeFamily* family = registry.AddGauge("bank_entries", "Entries.", {"namespace"}).value();
  family->WithLabels({"bob"}).Set(5);
  CallbackHandle first = family->AddCallback([] {
    return std::vector<Sample>{{{"carol"}, 3}, {{"alice"}, 1}, {{"bob"}, 99}, {{"x", "y"}, 7}};
  });
  CallbackHandle second =
      registry
          .AddGaugeCallback("bank_entries", "Entries.", {"namespace"},
                            [] {
                              return std::vector<Sample>{{{"alice"}, 42}, {{"dave"}, 4}};
                            })
          .value();
  // Sorted by label values; the child's bob and the first callback's alice win over repeats;
  // the sample with two values for one label is left out.
  EXPECT_EQ(registry.Render(),
            "# HELP bank_entries Entries.\n"
            "# TYPE bank_entries gauge\n"
            "bank_entries{namespace=\"alice\"} 1\n"
            "bank_entries{namespace=\"bob\"} 5\n"
            "bank_entries{namespace=\"carol\"} 3\n"
            "bank_entries{namespace=\"dave\"} 4\n");
}

TEST(RegistryCallbacks, ThrowingCallbackIsLeftOutAndOthersRender) {
  Registry registry;
  CallbackHandle bad = registry
                           .AddGaugeCallback("flaky_ratio", "Flaky.",
                                             []() -> std::optional<double> {
                                               throw std::runtime_error("sensor gone");
                                             })
                           .value();
  CallbackHandle good =
      registry.AddGaugeCallback("steady_ratio", "Steady.", [] { return 0.5; }).value();
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("# TYPE flaky_ratio gauge\n# HELP steady_ratio"));
  EXPECT_THAT(text, HasSubstr("\nsteady_ratio 0.5\n"));
}

TEST(RegistryCallbacks, CallbackMayRegisterAndReadMetrics) {
  Registry registry;
  Counter& scrapes = registry.AddCounter("scrapes_total", "Scrapes.").value()->WithLabels();
  CallbackHandle handle = registry
                              .AddGaugeCallback("lazy_ratio", "Lazy.",
                                                [&] {
                                                  auto late = registry.AddGauge("late_ratio", "L.");
                                                  scrapes.Inc();
                                                  return late.ok() ? 1.0 : 0.0;
                                                })
                              .value();
  EXPECT_THAT(registry.Render(), HasSubstr("\nlazy_ratio 1\n"));
  EXPECT_THAT(registry.Render(), HasSubstr("# TYPE late_ratio gauge\n"));
  EXPECT_EQ(scrapes.Value(), 2.0);
}

TEST(RegistryCallbacks, ResetWaitsForARunningScrape) {
  Registry registry;
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> callback_done = false;
  CallbackHandle handle = registry
                              .AddGaugeCallback("slow_ratio", "Slow.",
                                                [&] {
                                                  entered.set_value();
                                                  released.wait();
                                                  callback_done = true;
                                                  return 1.0;
                                                })
                              .value();
  std::thread scraper([&] { registry.Render(); });
  entered.get_future().wait();

  std::atomic<bool> reset_done = false;
  std::thread resetter([&] {
    handle.Reset();
    // The callback must have finished before Reset returns.
    EXPECT_TRUE(callback_done.load());
    reset_done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(reset_done.load());
  release.set_value();
  resetter.join();
  scraper.join();
  EXPECT_TRUE(reset_done.load());
  EXPECT_THAT(registry.Render(), Not(HasSubstr("slow_ratio 1")));
}

// --- Concurrency -------------------------------------------------------------------------------

TEST(RegistryConcurrency, ConcurrentUpdatesGiveExactTotals) {
  Registry registry;
  CounterFamily* counters = registry.AddCounter("ops_total", "Ops.", {"worker"}).value();
  Counter& shared = registry.AddCounter("shared_ops_total", "Ops.").value()->WithLabels();
  Gauge& in_flight = registry.AddGauge("in_flight_ops", "In flight.").value()->WithLabels();
  const double bounds[] = {0.5};
  Histogram& sizes =
      registry.AddHistogram("op_size_bytes", "Sizes.", {}, bounds).value()->WithLabels();

  constexpr int kThreads = 4;
  constexpr int kIterations = 200'000;
  std::atomic<bool> stop = false;
  std::thread scraper([&] {
    // Scrapes race with the updates and with children being created.
    while (!stop.load()) ASSERT_THAT(registry.Render(), HasSubstr("# TYPE ops_total counter"));
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      Counter& mine = counters->WithLabels({std::to_string(t)});
      for (int i = 0; i < kIterations; ++i) {
        shared.Inc();
        mine.Inc(0.5);
        in_flight.Inc();
        sizes.Observe(i % 2 == 0 ? 0.25 : 1.0);
        in_flight.Dec();
      }
    });
  }
  for (std::thread& w : workers) w.join();
  stop = true;
  scraper.join();

  EXPECT_EQ(shared.Value(), kThreads * kIterations);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(counters->WithLabels({std::to_string(t)}).Value(), kIterations * 0.5);
  }
  EXPECT_EQ(in_flight.Value(), 0.0);
  EXPECT_EQ(sizes.CumulativeCounts(),
            (std::vector<std::uint64_t>{kThreads * kIterations / 2, kThreads * kIterations}));
  EXPECT_EQ(sizes.Sum(), kThreads * kIterations / 2 * 1.25);
}

TEST(RegistryConcurrency, ConcurrentRegistrationReturnsOneFamily) {
  Registry registry;
  constexpr int kThreads = 4;
  std::vector<CounterFamily*> seen(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      seen[t] = registry.AddCounter("shared_total", "Shared.", {"k"}).value();
      for (int i = 0; i < 1000; ++i) seen[t]->WithLabels({std::to_string(i % 10)}).Inc();
    });
  }
  for (std::thread& t : threads) t.join();
  for (CounterFamily* f : seen) EXPECT_EQ(f, seen[0]);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(seen[0]->WithLabels({std::to_string(i)}).Value(), kThreads * 100);
  }
}

// --- The real consumer: promtool ---------------------------------------------------------------

// Where promtool is on PATH, or empty.
std::string FindPromtool() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const fs::path candidate = fs::path(dir.empty() ? "." : dir) / "promtool";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return "";
}

struct CheckResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs `promtool check metrics` on `exposition`, the way an operator validates an endpoint
// (`curl -s .../metrics | promtool check metrics`).
CheckResult PromtoolCheck(const std::string& promtool, const std::string& exposition) {
  std::string dir_template = (fs::path(::testing::TempDir()) / "mann-metrics-XXXXXX").string();
  const char* dir = ::mkdtemp(dir_template.data());
  if (dir == nullptr) return {-1, "mkdtemp failed"};
  const fs::path in = fs::path(dir) / "exposition.txt";
  const fs::path out = fs::path(dir) / "promtool.out";
  std::ofstream(in, std::ios::binary) << exposition;
  const std::string command =
      fmt::format("'{}' check metrics < '{}' > '{}' 2>&1", promtool, in.string(), out.string());
  const int status = std::system(command.c_str());
  CheckResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream output(out);
  result.output.assign(std::istreambuf_iterator<char>(output), {});
  fs::remove_all(dir);
  return result;
}

// promtool comes from Debian's `prometheus` package, which scripts/setup.sh installs. A missing
// promtool fails these tests instead of skipping them: a skip would let the exposition go
// unchecked by its real consumer without anyone noticing.
std::string RequirePromtool() {
  std::string promtool = FindPromtool();
  EXPECT_FALSE(promtool.empty())
      << "promtool is not on PATH: install the Debian package 'prometheus' (apt-get install "
         "--no-install-recommends prometheus), which provides /usr/bin/promtool";
  return promtool;
}

TEST(MetricsPromtool, FullExpositionIsValidAndLintClean) {
  const std::string promtool = RequirePromtool();
  if (promtool.empty()) return;

  Registry registry;
  CounterFamily* requests = registry
                                .AddCounter("http_requests_total",
                                            "HTTP requests answered, by method, route and code.\n"
                                            "Counted when the response is sent; see C:\\docs.",
                                            {"method", "route", "code"})
                                .value();
  requests->WithLabels({"GET", "/health", "200"}).Inc(3);
  requests->WithLabels({"POST", "/v1/\"quoted\"\\path\nnext", "500"}).Inc();
  requests->WithLabels({"GET", "/caf\xE9", "404"}).Inc(1e21);  // not UTF-8, huge
  requests->WithLabels({"GET", "/t\xC3\xB4i", "200"}).Inc(0.1);
  ASSERT_TRUE(registry.AddCounter("evictions_total", "Entries evicted.", {"reason"}).ok());

  HistogramFamily* durations =
      registry.AddHistogram("http_request_duration_seconds", "Time to answer.", {"route"}).value();
  for (double v : {0.001, 0.2, 0.3, 7.0, 100.0}) durations->WithLabels({"/v1/chat"}).Observe(v);
  durations->WithLabels({"/health"});
  Histogram& odd = registry.AddHistogram("odd_seconds", "Odd.", {}).value()->WithLabels();
  odd.Observe(kInf);

  GaugeFamily* gauges = registry.AddGauge("mann_cache_fill_ratio", "Fill.", {"cache"}).value();
  gauges->WithLabels({"embeddings"}).Set(kNaN);
  gauges->WithLabels({"replies"}).Set(-kInf);
  gauges->WithLabels({"answers"}).Set(-0.0);
  gauges->WithLabels({"queries"}).Set(1.5e-300);

  CallbackHandle utilization =
      registry
          .AddGaugeCallback("mann_memory_utilization", "Entries over memory_size.", {"namespace"},
                            [] {
                              return std::vector<Sample>{{{"alice"}, 0.5}, {{"b\xFF"}, 1.25}};
                            })
          .value();
  CallbackHandle outbox =
      registry.AddCounterCallback("pager_sent_total", "Pages delivered.", [] { return 7.0; })
          .value();
  ProcessCollector process = ProcessCollector::Register(registry).value();

  const std::string exposition = registry.Render();
  ASSERT_THAT(exposition, HasSubstr("process_open_fds "));
  ASSERT_THAT(exposition, HasSubstr("mann_memory_utilization{namespace=\"b\xEF\xBF\xBD\"} 1.25"));
  const CheckResult result = PromtoolCheck(promtool, exposition);
  EXPECT_EQ(result.exit_code, 0) << result.output << "\n--- exposition:\n" << exposition;
  EXPECT_EQ(result.output, "") << "\n--- exposition:\n" << exposition;
}

TEST(MetricsPromtool, LintAgreesWithOurNameRules) {
  const std::string promtool = RequirePromtool();
  if (promtool.empty()) return;

  // One exposition with a family per grammatical case; promtool prints one line per problem,
  // starting with the family's name.
  std::string exposition;
  std::set<std::string> names;
  for (const NameCase& c : NameCases()) {
    if (c.error == "is not valid") continue;
    ASSERT_TRUE(names.insert(c.metric).second) << "case names must be unique: " << c.metric;
    const std::string labels = c.label.empty() ? "" : fmt::format("{{{}=\"v\"}}", c.label);
    exposition +=
        fmt::format("# HELP {0} Help.\n# TYPE {0} {1}\n", c.metric, MetricTypeName(c.type));
    if (c.type == MetricType::kHistogram) {
      exposition += fmt::format("{0}_bucket{{le=\"+Inf\"}} 1\n{0}_sum 1\n{0}_count 1\n", c.metric);
    } else {
      exposition += fmt::format("{}{} 1\n", c.metric, labels);
    }
  }
  const CheckResult result = PromtoolCheck(promtool, exposition);
  ASSERT_EQ(result.output.find("error while linting"), std::string::npos) << result.output;
  std::set<std::string> flagged;
  std::istringstream lines(result.output);
  for (std::string line; std::getline(lines, line);) flagged.insert(line.substr(0, line.find(' ')));

  for (const NameCase& c : NameCases()) {
    if (c.error == "is not valid") continue;
    const bool lint_ok = c.error.empty() || c.stricter_than_lint;
    EXPECT_EQ(flagged.count(c.metric) == 0, lint_ok)
        << c.metric << " label=" << c.label << "\n--- promtool:\n"
        << result.output;
  }
}

}  // namespace
}  // namespace mann::metrics
