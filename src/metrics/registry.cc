#include <algorithm>
#include <cmath>
#include <exception>
#include <utility>

#include <fmt/format.h>

#include <mann/core/log.h>
#include <mann/core/utf8.h>
#include <mann/metrics/registry.h>

namespace mann::metrics {
namespace {

std::shared_ptr<spdlog::logger> Log() {
  static const std::shared_ptr<spdlog::logger> logger = log::Get("metrics");
  return logger;
}

// --- Names -----------------------------------------------------------------------------------

bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
bool IsUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// True when `word` appears in `name` as a whole '_'-separated word after the first one, the way
// promtool's linter looks for type names and unit abbreviations.
bool HasInnerWord(std::string_view name, std::string_view word) {
  const std::string inner = fmt::format("_{}_", word);
  return name.find(inner) != std::string_view::npos || EndsWith(name, fmt::format("_{}", word));
}

// Units the linter knows, mapped to the base unit it wants instead (itself when already base).
constexpr std::pair<std::string_view, std::string_view> kUnits[] = {
    {"amperes", "amperes"},    {"bytes", "bytes"},     {"celsius", "celsius"},
    {"grams", "grams"},        {"joules", "joules"},   {"kelvin", "kelvin"},
    {"meters", "meters"},      {"metres", "metres"},   {"seconds", "seconds"},
    {"volts", "volts"},        {"minutes", "seconds"}, {"hours", "seconds"},
    {"days", "seconds"},       {"weeks", "seconds"},   {"kelvins", "kelvin"},
    {"fahrenheit", "celsius"}, {"rankine", "celsius"}, {"inches", "meters"},
    {"yards", "meters"},       {"miles", "meters"},    {"bits", "bytes"},
    {"calories", "joules"},    {"pounds", "grams"},    {"ounces", "grams"},
};
constexpr std::string_view kUnitPrefixes[] = {"pico", "nano",  "micro", "milli", "centi", "deci",
                                              "deca", "hecto", "kilo",  "kibi",  "mega",  "mibi",
                                              "giga", "gibi",  "tera",  "tebi",  "peta",  "pebi"};
constexpr std::string_view kUnitAbbreviations[] = {"s",  "ms", "us", "ns", "sec", "b", "kb",
                                                   "mb", "gb", "tb", "pb", "m",   "h", "d"};
constexpr std::string_view kTypeWords[] = {"counter", "gauge", "histogram", "summary", "untyped"};

std::optional<std::string_view> BaseUnit(std::string_view word) {
  for (const auto& [unit, base] : kUnits) {
    if (unit == word) return base;
  }
  return std::nullopt;
}

// The base unit to use instead of a non-base unit word of `name`, and that word.
std::optional<std::pair<std::string_view, std::string_view>> NonBaseUnit(std::string_view name) {
  std::size_t start = 0;
  while (start <= name.size()) {
    std::size_t end = name.find('_', start);
    if (end == std::string_view::npos) end = name.size();
    const std::string_view word = name.substr(start, end - start);
    if (auto base = BaseUnit(word); base && *base != word) return std::pair{*base, word};
    for (std::string_view prefix : kUnitPrefixes) {
      if (word.starts_with(prefix)) {
        if (auto base = BaseUnit(word.substr(prefix.size()))) return std::pair{*base, word};
      }
    }
    start = end + 1;
  }
  return std::nullopt;
}

// --- Exposition text ---------------------------------------------------------------------------

void AppendEscapedHelp(std::string& out, std::string_view help) {
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

void AppendEscapedLabelValue(std::string& out, std::string_view value) {
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

// `name{labels} value` or `name value`.
void AppendSample(std::string& out, std::string_view name, std::string_view suffix,
                  std::string_view label_text, std::string_view value) {
  out += name;
  out += suffix;
  if (!label_text.empty()) {
    out += '{';
    out += label_text;
    out += '}';
  }
  out += ' ';
  out += value;
  out += '\n';
}

std::string JoinNames(const std::vector<std::string>& names) {
  return fmt::format("[{}]", fmt::join(names, ", "));
}

std::string DescribeShape(MetricType type, std::string_view help,
                          const std::vector<std::string>& label_names,
                          const std::vector<double>& bounds) {
  std::string text = fmt::format("{} with labels {} and help \"{}\"", MetricTypeName(type),
                                 JoinNames(label_names), help);
  if (type == MetricType::kHistogram) {
    std::vector<std::string> formatted;
    for (double b : bounds) formatted.push_back(FormatValue(b));
    text += fmt::format(" and buckets {}", JoinNames(formatted));
  }
  return text;
}

Status ValidateHelp(std::string_view metric, std::string_view help) {
  if (help.empty()) {
    return InvalidArgumentError(fmt::format(
        "metric '{}' has empty help text: say what it measures and in which unit", metric));
  }
  if (!IsValidUtf8(help)) {
    return InvalidArgumentError(fmt::format("help text of metric '{}' is not UTF-8", metric));
  }
  return Status::Ok();
}

// Checks the bounds and drops a trailing +Inf.
Status NormalizeBuckets(std::string_view metric, std::vector<double>& bounds) {
  if (!bounds.empty() && bounds.back() == INFINITY) bounds.pop_back();
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) {
      return InvalidArgumentError(
          fmt::format("histogram '{}' bucket bound {} is {}: bounds must be finite (the +Inf "
                      "bucket is implicit)",
                      metric, i, FormatValue(bounds[i])));
    }
    if (i > 0 && !(bounds[i] > bounds[i - 1])) {
      return InvalidArgumentError(
          fmt::format("histogram '{}' bucket bounds must be strictly increasing, got {} after {}",
                      metric, FormatValue(bounds[i]), FormatValue(bounds[i - 1])));
    }
  }
  return Status::Ok();
}

}  // namespace

std::string_view MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

Status ValidateMetricName(std::string_view name, MetricType type) {
  // The exposition's grammar.
  auto grammar = [](char c, bool first) {
    return IsLower(c) || IsUpper(c) || c == '_' || c == ':' || (!first && IsDigit(c));
  };
  bool valid = !name.empty();
  for (std::size_t i = 0; valid && i < name.size(); ++i) valid = grammar(name[i], i == 0);
  if (!valid) {
    return InvalidArgumentError(
        fmt::format("metric name '{}' is not valid: expected [a-zA-Z_:][a-zA-Z0-9_:]*", name));
  }

  // The conventions promtool lints.
  if (name.find(':') != std::string_view::npos) {
    return InvalidArgumentError(
        fmt::format("metric name '{}' contains ':', which is reserved for recording rules", name));
  }
  if (std::any_of(name.begin(), name.end(), IsUpper)) {
    return InvalidArgumentError(
        fmt::format("metric name '{}' must be snake_case in lower case", name));
  }
  const bool total = EndsWith(name, "_total");
  if (type == MetricType::kCounter && !total) {
    return InvalidArgumentError(fmt::format("counter name '{}' must end in _total", name));
  }
  if (type != MetricType::kCounter && total) {
    return InvalidArgumentError(fmt::format(
        "{} name '{}' must not end in _total, which marks counters", MetricTypeName(type), name));
  }
  for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (EndsWith(name, suffix)) {
      return InvalidArgumentError(
          fmt::format("metric name '{}' must not end in {}, which histograms use for their series",
                      name, suffix));
    }
  }
  for (std::string_view word : kTypeWords) {
    if (HasInnerWord(name, word)) {
      return InvalidArgumentError(
          fmt::format("metric name '{}' must not contain the type word '{}'", name, word));
    }
  }
  for (std::string_view word : kUnitAbbreviations) {
    if (HasInnerWord(name, word)) {
      return InvalidArgumentError(fmt::format(
          "metric name '{}' contains the abbreviated unit '{}': spell the base unit out "
          "(seconds, bytes)",
          name, word));
    }
  }
  if (auto unit = NonBaseUnit(name)) {
    return InvalidArgumentError(fmt::format("metric name '{}' uses '{}': use the base unit '{}'",
                                            name, unit->second, unit->first));
  }
  return Status::Ok();
}

Status ValidateLabelName(std::string_view metric, std::string_view label, MetricType type) {
  bool valid = !label.empty();
  for (std::size_t i = 0; valid && i < label.size(); ++i) {
    const char c = label[i];
    valid = IsLower(c) || IsUpper(c) || c == '_' || (i > 0 && IsDigit(c));
  }
  if (!valid) {
    return InvalidArgumentError(
        fmt::format("label name '{}' of metric '{}' is not valid: expected [a-zA-Z_][a-zA-Z0-9_]*",
                    label, metric));
  }
  if (label.starts_with("__")) {
    return InvalidArgumentError(
        fmt::format("label name '{}' of metric '{}' starts with '__', which Prometheus reserves",
                    label, metric));
  }
  if (std::any_of(label.begin(), label.end(), IsUpper)) {
    return InvalidArgumentError(fmt::format(
        "label name '{}' of metric '{}' must be snake_case in lower case", label, metric));
  }
  if (label == "le" || label == "quantile") {
    return InvalidArgumentError(
        fmt::format("label name '{}' of {} '{}' is reserved for histogram and summary buckets",
                    label, MetricTypeName(type), metric));
  }
  return Status::Ok();
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // fmt's default for double is the shortest text that parses back to the same value, and it
  // writes integers below 1e16 (which covers every exact integer up to 2^53) without exponent.
  return fmt::format("{}", value);
}

// --- Histogram ---------------------------------------------------------------------------------

static_assert(std::atomic<double>::is_always_lock_free, "metric updates rely on lock-free atomics");

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds), counts_(new std::atomic<std::uint64_t>[bounds.size() + 1]) {
  for (std::size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) noexcept {
  if (std::isnan(value)) return;
  // Buckets are inclusive upper bounds: the first bound >= value.
  const std::size_t bucket =
      std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

std::vector<std::uint64_t> Histogram::CumulativeCounts() const {
  std::vector<std::uint64_t> out(bounds_.size() + 1);
  std::uint64_t total = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    out[i] = total;
  }
  return out;
}

std::uint64_t Histogram::Count() const { return CumulativeCounts().back(); }

// --- CallbackHandle ----------------------------------------------------------------------------

CallbackHandle::CallbackHandle(CallbackHandle&& other) noexcept
    : family_(std::exchange(other.family_, nullptr)), id_(std::exchange(other.id_, 0)) {}

CallbackHandle& CallbackHandle::operator=(CallbackHandle&& other) noexcept {
  if (this != &other) {
    Reset();
    family_ = std::exchange(other.family_, nullptr);
    id_ = std::exchange(other.id_, 0);
  }
  return *this;
}

void CallbackHandle::Reset() noexcept {
  if (family_ == nullptr) return;
  family_->RemoveCallback(id_);
  family_ = nullptr;
  id_ = 0;
}

// --- FamilyBase --------------------------------------------------------------------------------

FamilyBase::FamilyBase(std::string name, std::string help, MetricType type,
                       std::vector<std::string> label_names, std::vector<double> bucket_bounds)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)),
      bucket_bounds_(std::move(bucket_bounds)) {}

FamilyBase::~FamilyBase() = default;

CallbackHandle FamilyBase::AddCallbackImpl(SamplesCallback callback) {
  std::lock_guard lock(callbacks_mu_);
  const std::uint64_t id = next_callback_id_++;
  callbacks_.emplace(id, std::move(callback));
  return CallbackHandle(this, id);
}

void FamilyBase::RemoveCallback(std::uint64_t id) noexcept {
  std::lock_guard lock(callbacks_mu_);
  callbacks_.erase(id);
}

std::string FamilyBase::LabelText(std::span<const std::string> values) const {
  std::string text;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i > 0) text += ',';
    text += label_names_[i];
    text += "=\"";
    AppendEscapedLabelValue(text, values[i]);
    text += '"';
  }
  return text;
}

void FamilyBase::ReportArityMismatch(std::size_t got) const {
  if (reported_arity_.exchange(true)) return;
  Log()->error(
      "metric label values mismatch metric={} expected={} got={}: the update goes to a child that "
      "is not exported; later mismatches of this metric are not logged",
      name_, label_names_.size(), got);
}

void FamilyBase::CollectCallbackRows(std::vector<Row>& rows) const {
  std::lock_guard lock(callbacks_mu_);
  for (const auto& [id, callback] : callbacks_) {
    std::vector<Sample> samples;
    try {
      samples = callback();
    } catch (const std::exception& e) {
      Log()->warn("metric callback failed metric={} error={}: its samples are left out", name_,
                  e.what());
      continue;
    } catch (...) {
      Log()->warn("metric callback failed metric={} error=unknown: its samples are left out",
                  name_);
      continue;
    }
    for (Sample& sample : samples) {
      if (sample.label_values.size() != label_names_.size()) {
        ReportArityMismatch(sample.label_values.size());
        continue;
      }
      for (std::string& value : sample.label_values) {
        if (!IsValidUtf8(value)) value = ToValidUtf8(value);
      }
      std::string text = LabelText(sample.label_values);
      rows.push_back({std::move(sample.label_values), std::move(text), sample.value});
    }
  }
}

void FamilyBase::Render(std::string& out) const {
  out += "# HELP ";
  out += name_;
  out += ' ';
  AppendEscapedHelp(out, help_);
  out += "\n# TYPE ";
  out += name_;
  out += ' ';
  out += MetricTypeName(type_);
  out += '\n';

  if (type_ == MetricType::kHistogram) {
    RenderHistograms(out);
    return;
  }

  // Children first, then callback samples in registration order; a stable sort keeps the first
  // of any label values that repeat, and the repeats are dropped (Prometheus rejects a scrape
  // with duplicate series).
  std::vector<Row> rows;
  CollectRows(rows);
  CollectCallbackRows(rows);
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return LabelValuesLess{}(a.label_values, b.label_values);
  });
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (i > 0 && rows[i].label_values == rows[i - 1].label_values) {
      if (!reported_duplicate_.exchange(true)) {
        Log()->warn(
            "metric series duplicated metric={} labels={{{}}}: a callback repeats label values "
            "already reported; the repeat is left out, and later repeats are not logged",
            name_, rows[i].label_text);
      }
      continue;
    }
    AppendSample(out, name_, "", rows[i].label_text, FormatValue(rows[i].value));
  }
}

// --- Family<Child> -----------------------------------------------------------------------------

template <typename Child>
Family<Child>::Family(std::string name, std::string help, MetricType type,
                      std::vector<std::string> label_names, std::vector<double> bucket_bounds)
    : FamilyBase(std::move(name), std::move(help), type, std::move(label_names),
                 std::move(bucket_bounds)),
      detached_(MakeChild()) {}

template <typename Child>
std::unique_ptr<Child> Family<Child>::MakeChild() const {
  if constexpr (std::is_same_v<Child, Histogram>) {
    return std::make_unique<Histogram>(bucket_bounds());
  } else {
    return std::make_unique<Child>();
  }
}

template <typename Child>
Child& Family<Child>::WithLabels(std::initializer_list<std::string_view> values) {
  return WithLabels(std::span<const std::string_view>(values.begin(), values.size()));
}

template <typename Child>
Child& Family<Child>::WithLabels(std::span<const std::string> values) {
  std::vector<std::string_view> views(values.begin(), values.end());
  return WithLabels(std::span<const std::string_view>(views));
}

template <typename Child>
Child& Family<Child>::WithLabels(std::span<const std::string_view> values) {
  if (values.size() != label_names().size()) {
    ReportArityMismatch(values.size());
    return *detached_;
  }
  std::vector<std::string> sanitized;
  const bool utf8 = std::all_of(values.begin(), values.end(), IsValidUtf8);
  if (!utf8) {
    for (std::string_view v : values) sanitized.push_back(ToValidUtf8(v));
  }

  std::lock_guard lock(mu_);
  auto it = utf8 ? children_.find(values) : children_.find(sanitized);
  if (it != children_.end()) return *it->second.child;
  std::vector<std::string> key =
      utf8 ? std::vector<std::string>(values.begin(), values.end()) : std::move(sanitized);
  std::string text = LabelText(key);
  auto [inserted, _] = children_.emplace(std::move(key), Entry{std::move(text), MakeChild()});
  return *inserted->second.child;
}

template <typename Child>
void Family<Child>::CollectRows(std::vector<Row>& rows) const {
  if constexpr (!std::is_same_v<Child, Histogram>) {
    std::lock_guard lock(mu_);
    rows.reserve(children_.size());
    for (const auto& [values, entry] : children_) {
      rows.push_back({values, entry.label_text, entry.child->Value()});
    }
  }
}

template <typename Child>
void Family<Child>::RenderHistograms(std::string& out) const {
  if constexpr (std::is_same_v<Child, Histogram>) {
    std::vector<std::string> le;
    for (double bound : bucket_bounds()) le.push_back(fmt::format("le=\"{}\"", FormatValue(bound)));
    le.push_back("le=\"+Inf\"");

    std::lock_guard lock(mu_);
    for (const auto& [values, entry] : children_) {
      const std::vector<std::uint64_t> counts = entry.child->CumulativeCounts();
      const std::string prefix = entry.label_text.empty() ? "" : entry.label_text + ",";
      for (std::size_t i = 0; i < counts.size(); ++i) {
        AppendSample(out, name(), "_bucket", prefix + le[i], fmt::format("{}", counts[i]));
      }
      AppendSample(out, name(), "_sum", entry.label_text, FormatValue(entry.child->Sum()));
      AppendSample(out, name(), "_count", entry.label_text, fmt::format("{}", counts.back()));
    }
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// --- Registry ----------------------------------------------------------------------------------

Registry::Registry() = default;
Registry::~Registry() = default;

Registry& Registry::Default() {
  static Registry* registry = new Registry();
  return *registry;
}

template <typename F>
Result<F*> Registry::FindOrAdd(std::string_view name, std::string_view help, MetricType type,
                               std::vector<std::string> label_names,
                               std::vector<double> bucket_bounds) {
  MANN_RETURN_IF_ERROR(ValidateMetricName(name, type));
  MANN_RETURN_IF_ERROR(ValidateHelp(name, help));
  for (std::size_t i = 0; i < label_names.size(); ++i) {
    MANN_RETURN_IF_ERROR(ValidateLabelName(name, label_names[i], type));
    for (std::size_t j = 0; j < i; ++j) {
      if (label_names[j] == label_names[i]) {
        return InvalidArgumentError(
            fmt::format("metric '{}' lists label '{}' twice", name, label_names[i]));
      }
    }
  }
  if (type == MetricType::kHistogram) MANN_RETURN_IF_ERROR(NormalizeBuckets(name, bucket_bounds));

  std::lock_guard lock(mu_);
  if (auto it = families_.find(name); it != families_.end()) {
    const FamilyBase& existing = *it->second;
    if (existing.type() != type || existing.help() != help ||
        existing.label_names() != label_names || existing.bucket_bounds() != bucket_bounds) {
      return AlreadyExistsError(
          fmt::format("metric '{}' is already registered as {}; cannot register it as {}", name,
                      DescribeShape(existing.type(), existing.help(), existing.label_names(),
                                    existing.bucket_bounds()),
                      DescribeShape(type, help, label_names, bucket_bounds)));
    }
    return static_cast<F*>(it->second.get());
  }
  auto* family = new F(std::string(name), std::string(help), type, std::move(label_names),
                       std::move(bucket_bounds));
  families_.emplace(std::string(name), std::unique_ptr<FamilyBase>(family));
  return family;
}

Result<CounterFamily*> Registry::AddCounter(std::string_view name, std::string_view help,
                                            std::vector<std::string> label_names) {
  return FindOrAdd<CounterFamily>(name, help, MetricType::kCounter, std::move(label_names), {});
}

Result<GaugeFamily*> Registry::AddGauge(std::string_view name, std::string_view help,
                                        std::vector<std::string> label_names) {
  return FindOrAdd<GaugeFamily>(name, help, MetricType::kGauge, std::move(label_names), {});
}

Result<HistogramFamily*> Registry::AddHistogram(std::string_view name, std::string_view help,
                                                std::vector<std::string> label_names,
                                                std::span<const double> bucket_bounds) {
  return FindOrAdd<HistogramFamily>(name, help, MetricType::kHistogram, std::move(label_names),
                                    {bucket_bounds.begin(), bucket_bounds.end()});
}

namespace {

SamplesCallback Unlabelled(ValueCallback callback) {
  return [callback = std::move(callback)]() -> std::vector<Sample> {
    std::optional<double> value = callback();
    if (!value) return {};
    return {Sample{{}, *value}};
  };
}

}  // namespace

Result<CallbackHandle> Registry::AddCounterCallback(std::string_view name, std::string_view help,
                                                    ValueCallback callback) {
  return AddCounterCallback(name, help, {}, Unlabelled(std::move(callback)));
}

Result<CallbackHandle> Registry::AddCounterCallback(std::string_view name, std::string_view help,
                                                    std::vector<std::string> label_names,
                                                    SamplesCallback callback) {
  MANN_ASSIGN_OR_RETURN(CounterFamily * family, AddCounter(name, help, std::move(label_names)));
  return family->AddCallback(std::move(callback));
}

Result<CallbackHandle> Registry::AddGaugeCallback(std::string_view name, std::string_view help,
                                                  ValueCallback callback) {
  return AddGaugeCallback(name, help, {}, Unlabelled(std::move(callback)));
}

Result<CallbackHandle> Registry::AddGaugeCallback(std::string_view name, std::string_view help,
                                                  std::vector<std::string> label_names,
                                                  SamplesCallback callback) {
  MANN_ASSIGN_OR_RETURN(GaugeFamily * family, AddGauge(name, help, std::move(label_names)));
  return family->AddCallback(std::move(callback));
}

std::string Registry::Render() const {
  // Families are never removed, so the pointers stay valid after the lock is released; rendering
  // outside it lets callbacks register metrics.
  std::vector<const FamilyBase*> families;
  {
    std::lock_guard lock(mu_);
    families.reserve(families_.size());
    for (const auto& [name, family] : families_) families.push_back(family.get());
  }
  std::string out;
  for (const FamilyBase* family : families) family->Render(out);
  return out;
}

}  // namespace mann::metrics
