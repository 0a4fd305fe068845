// Metrics: the process's registry of Prometheus metrics and its text exposition (format 0.0.4).
//
// A component declares each metric family once, with its name, help text and label names, looks
// up the children it updates (one per combination of label values) once, and from then on only
// touches atomics:
//
//   auto& registry = mann::metrics::Registry::Default();
//   MANN_ASSIGN_OR_RETURN(auto* requests,
//                         registry.AddCounter("http_requests_total", "HTTP requests answered.",
//                                             {"method", "route", "code"}));
//   mann::metrics::Counter& ok = requests->WithLabels({"GET", "/health", "200"});
//   ok.Inc();  // one atomic add, no lock
//
// Values that already live elsewhere (the bank's utilization, /proc) are read at scrape time by
// callbacks; each registration returns a CallbackHandle whose destruction removes the callback:
//
//   MANN_ASSIGN_OR_RETURN(handle_, registry.AddGaugeCallback(
//       "mann_memory_utilization", "Entries over memory_size, per namespace.", {"namespace"},
//       [this] { return UtilizationSamples(); }));
//
// `GET /metrics` answers Registry::Render() with Content-Type kContentType.
//
// Naming. Registration checks the exposition's grammar and also the conventions that
// `promtool check metrics` lints, so that every registered metric renders lint-clean:
//   - metric names match [a-z_][a-z0-9_]*: the format also allows capitals and ':', but the
//     linter flags camelCase and reserves ':' for recording rules;
//   - counters, and only counters, end in `_total`; no family ends in `_bucket`, `_sum` or
//     `_count` (the series names a histogram makes);
//   - no type name (`_counter`, `_gauge`, `_histogram`, `_summary`, `_untyped`) as a word of the
//     name, no abbreviated unit word (`_s`, `_ms`, `_kb`, ...), only base units (`seconds`, not
//     `milliseconds`; `bytes`, not `kilobytes` or `bits`);
//   - label names match [a-z_][a-z0-9_]*, do not start with `__` (reserved by Prometheus) and are
//     not `le` or `quantile` (made by histograms and summaries);
//   - help text is non-empty UTF-8.
// A violation is InvalidArgument naming the metric and the rule.
//
// Registering an existing name with the same shape (type, help, label names and, for
// histograms, bucket bounds) returns the existing family, so two components may share one. A
// different shape is AlreadyExists: the registry never holds two families of one name.
//
// Thread-safety: every member of every class here is safe to call concurrently, except that one
// CallbackHandle object, like any value, belongs to one thread at a time. Counter, Gauge
// and Histogram updates are lock-free atomic operations. Registration, WithLabels and Render take
// short internal locks. Render reads each value atomically but not all values at one instant:
// a histogram scraped during an Observe may show the new sum with the old counts. Its bucket
// counts and _count always agree, because _count is the +Inf bucket.
//
// Lifetime: families and children live as long as their registry; references and pointers to
// them stay valid until then. Registry::Default() is never destroyed.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <mann/core/status.h>

namespace mann::metrics {

// The Content-Type of Render()'s output.
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

// Bucket upper bounds, in seconds, for request and operation durations. 0.2 s is the latency
// objective, so a bucket boundary sits exactly there and the objective can be read off exactly.
inline constexpr std::array<double, 12> kLatencyBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.2,
                                                           0.25,  0.5,  1,     2.5,  5,   10};

enum class MetricType { kCounter, kGauge, kHistogram };

// "counter", "gauge" or "histogram", as written on the # TYPE line.
std::string_view MetricTypeName(MetricType type);

// The checks registration applies (see "Naming" above); InvalidArgument naming the rule broken.
Status ValidateMetricName(std::string_view name, MetricType type);
Status ValidateLabelName(std::string_view metric, std::string_view label, MetricType type);

// A sample value as the exposition writes it: integers without exponent where the double holds
// them exactly ("3", "-7", "9007199254740992"), other values in the shortest form that parses
// back to the same double ("0.1", "1e+21"), and "+Inf", "-Inf", "NaN".
std::string FormatValue(double value);

// A monotonically increasing count.
class Counter {
 public:
  // Adds `amount`. A negative or NaN amount would break monotonicity: it is a caller's bug and
  // is dropped.
  void Inc(double amount = 1.0) noexcept {
    if (amount >= 0.0) value_.fetch_add(amount, std::memory_order_relaxed);
  }
  double Value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down.
class Gauge {
 public:
  void Set(double value) noexcept { value_.store(value, std::memory_order_relaxed); }
  void Inc(double amount = 1.0) noexcept { value_.fetch_add(amount, std::memory_order_relaxed); }
  void Dec(double amount = 1.0) noexcept { value_.fetch_sub(amount, std::memory_order_relaxed); }
  double Value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Counts observations into buckets with fixed upper bounds (inclusive), plus their sum.
class Histogram {
 public:
  // `bounds` are the family's finite, strictly increasing upper bounds; they must outlive this
  // child (the family owns them). The +Inf bucket is implicit.
  explicit Histogram(std::span<const double> bounds);

  // Counts `value` in the first bucket whose bound is >= value, and adds it to the sum. NaN
  // carries no magnitude to bucket: it is a caller's bug and is dropped.
  void Observe(double value) noexcept;

  // Cumulative counts per bound, then the +Inf bucket (== Count()).
  std::vector<std::uint64_t> CumulativeCounts() const;
  std::uint64_t Count() const;
  double Sum() const noexcept { return sum_.load(std::memory_order_relaxed); }

 private:
  std::span<const double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;  // per bucket, not cumulative
  std::atomic<double> sum_{0.0};
};

// One sample a callback reports: label values in the family's label order, and the value.
struct Sample {
  std::vector<std::string> label_values;
  double value = 0.0;
};

// Computes a family's samples at scrape time. Called with an internal lock held: it must not
// reset its own CallbackHandle, must not call Render, and must not wait for a thread that is
// destroying a handle. It may read other metrics and register new ones. An exception is caught,
// logged, and the callback's samples are left out of that scrape.
using SamplesCallback = std::function<std::vector<Sample>()>;
// The same for a family without labels; std::nullopt leaves the sample out (e.g. unreadable).
using ValueCallback = std::function<std::optional<double>()>;

class FamilyBase;

// Keeps a callback registered; destroying or Reset()ting it removes the callback, waiting for a
// scrape that is running it to finish, so the callback never runs after that returns. The
// registry must outlive the handle. Move-only.
class [[nodiscard]] CallbackHandle {
 public:
  CallbackHandle() = default;
  CallbackHandle(CallbackHandle&& other) noexcept;
  CallbackHandle& operator=(CallbackHandle&& other) noexcept;
  CallbackHandle(const CallbackHandle&) = delete;
  CallbackHandle& operator=(const CallbackHandle&) = delete;
  ~CallbackHandle() { Reset(); }

  void Reset() noexcept;
  bool registered() const { return family_ != nullptr; }

 private:
  friend class FamilyBase;
  CallbackHandle(FamilyBase* family, std::uint64_t id) : family_(family), id_(id) {}

  FamilyBase* family_ = nullptr;
  std::uint64_t id_ = 0;
};

// What every family has: its shape, its callbacks, and its rendering. Not used directly; see
// CounterFamily, GaugeFamily and HistogramFamily.
class FamilyBase {
 public:
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;
  virtual ~FamilyBase();

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  MetricType type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  // Finite upper bounds of a histogram's buckets; empty for other types.
  const std::vector<double>& bucket_bounds() const { return bucket_bounds_; }

  // Appends the family's # HELP, # TYPE and sample lines.
  void Render(std::string& out) const;

 protected:
  FamilyBase(std::string name, std::string help, MetricType type,
             std::vector<std::string> label_names, std::vector<double> bucket_bounds);

  CallbackHandle AddCallbackImpl(SamplesCallback callback);

  // The escaped `a="x",b="y"` text of `values`, which have the family's arity.
  std::string LabelText(std::span<const std::string> values) const;
  // Logs, once per family, that a caller passed `got` label values.
  void ReportArityMismatch(std::size_t got) const;

  // One counter or gauge sample on its way to the exposition.
  struct Row {
    std::vector<std::string> label_values;
    std::string label_text;  // escaped, without braces
    double value;
  };
  // Appends a counter's or gauge's children as rows; nothing for histograms.
  virtual void CollectRows(std::vector<Row>& rows) const = 0;
  // Appends a histogram's sample lines; nothing for other types.
  virtual void RenderHistograms(std::string& out) const = 0;

 private:
  friend class CallbackHandle;

  void CollectCallbackRows(std::vector<Row>& rows) const;
  void RemoveCallback(std::uint64_t id) noexcept;

  const std::string name_;
  const std::string help_;
  const MetricType type_;
  const std::vector<std::string> label_names_;
  const std::vector<double> bucket_bounds_;

  // Held while callbacks run, so that RemoveCallback waits for a running scrape.
  mutable std::mutex callbacks_mu_;
  std::map<std::uint64_t, SamplesCallback> callbacks_;  // guarded by callbacks_mu_
  std::uint64_t next_callback_id_ = 1;                  // guarded by callbacks_mu_
  mutable std::atomic<bool> reported_arity_{false};
  mutable std::atomic<bool> reported_duplicate_{false};
};

// Orders label-value lists lexicographically; transparent, so a lookup by string_views needs no
// allocation.
struct LabelValuesLess {
  using is_transparent = void;
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    return std::lexicographical_compare(
        a.begin(), a.end(), b.begin(), b.end(),
        [](std::string_view x, std::string_view y) { return x < y; });
  }
};

// A family of children of type Child (Counter, Gauge or Histogram), one per label values.
template <typename Child>
class Family final : public FamilyBase {
 public:
  // The child for `values`, given in label_names() order, created on first use. The reference
  // stays valid for the registry's lifetime: look it up once, then update it freely. Values are
  // any UTF-8 text (bytes that are not UTF-8 become U+FFFD, which keeps the scrape parseable);
  // keep their number bounded, e.g. a route template rather than the raw path.
  //
  // A number of values different from the number of label names is a caller's bug: it is logged
  // (once per family) and the call returns a detached child that is never rendered, so the
  // caller keeps working and the exposition stays valid.
  Child& WithLabels(std::initializer_list<std::string_view> values = {});
  Child& WithLabels(std::span<const std::string> values);
  Child& WithLabels(std::span<const std::string_view> values);

  // Adds a callback whose samples are rendered with this family's (counters and gauges only).
  // A sample whose label values do not match the family's arity, or that repeats the label
  // values of a child or an earlier sample, is left out and logged once per family.
  CallbackHandle AddCallback(SamplesCallback callback) requires(!std::is_same_v<Child, Histogram>) {
    return AddCallbackImpl(std::move(callback));
  }

 private:
  friend class Registry;
  Family(std::string name, std::string help, MetricType type, std::vector<std::string> label_names,
         std::vector<double> bucket_bounds);

  struct Entry {
    std::string label_text;
    std::unique_ptr<Child> child;
  };
  std::unique_ptr<Child> MakeChild() const;
  void CollectRows(std::vector<Row>& rows) const override;
  void RenderHistograms(std::string& out) const override;

  mutable std::mutex mu_;
  std::map<std::vector<std::string>, Entry, LabelValuesLess> children_;  // guarded by mu_
  std::unique_ptr<Child> detached_;  // returned on an arity mismatch; guarded by mu_
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

// Owns metric families and renders them. Registry::Default() is the process's; tests construct
// their own.
class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The process-wide registry that /metrics serves. Never destroyed, so components may hold
  // references to its metrics from static storage and during shutdown.
  static Registry& Default();

  // Register a family, or return the existing one of the same name and shape. Errors:
  // InvalidArgument for a name, label name, help text or bucket list that breaks the rules above;
  // AlreadyExists when the name is taken by a family of another shape.
  Result<CounterFamily*> AddCounter(std::string_view name, std::string_view help,
                                    std::vector<std::string> label_names = {});
  Result<GaugeFamily*> AddGauge(std::string_view name, std::string_view help,
                                std::vector<std::string> label_names = {});
  // `bucket_bounds`: finite and strictly increasing; a trailing +Inf is accepted and dropped,
  // since the +Inf bucket is always there.
  Result<HistogramFamily*> AddHistogram(std::string_view name, std::string_view help,
                                        std::vector<std::string> label_names,
                                        std::span<const double> bucket_bounds = kLatencyBuckets);

  // Register (or find) a counter or gauge family and add a scrape-time callback to it. Same
  // errors as above.
  Result<CallbackHandle> AddCounterCallback(std::string_view name, std::string_view help,
                                            ValueCallback callback);
  Result<CallbackHandle> AddCounterCallback(std::string_view name, std::string_view help,
                                            std::vector<std::string> label_names,
                                            SamplesCallback callback);
  Result<CallbackHandle> AddGaugeCallback(std::string_view name, std::string_view help,
                                          ValueCallback callback);
  Result<CallbackHandle> AddGaugeCallback(std::string_view name, std::string_view help,
                                          std::vector<std::string> label_names,
                                          SamplesCallback callback);

  // The exposition of every family, sorted by name; children sorted by label values. A family
  // without samples renders only its # HELP and # TYPE lines.
  std::string Render() const;

 private:
  template <typename F>
  Result<F*> FindOrAdd(std::string_view name, std::string_view help, MetricType type,
                       std::vector<std::string> label_names, std::vector<double> bucket_bounds);

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<FamilyBase>, std::less<>> families_;  // guarded by mu_
};

}  // namespace mann::metrics
