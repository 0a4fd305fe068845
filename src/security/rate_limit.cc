#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <mutex>
#include <unordered_map>

#include <fmt/format.h>

#include <mann/core/log.h>
#include <mann/core/strings.h>
#include <mann/metrics/registry.h>
#include <mann/security/principal.h>
#include <mann/security/rate_limit.h>

namespace mann::security {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::nanoseconds;

constexpr std::int64_t kMaxLimit = 1'000'000'000;

// "minute", "90 seconds", "1500 ns": the period as a phrase after "per".
std::string PeriodText(nanoseconds period) {
  using namespace std::chrono_literals;
  if (period == 1s) return "second";
  if (period == 1min) return "minute";
  if (period == 1h) return "hour";
  if (period % 1s == nanoseconds(0)) return fmt::format("{} seconds", period / 1s);
  return fmt::format("{} ns", period.count());
}

std::optional<nanoseconds> ParseUnit(std::string_view unit) {
  using namespace std::chrono_literals;
  const std::string lower = AsciiLower(unit);
  if (lower == "s" || lower == "second" || lower == "seconds") return 1s;
  if (lower == "m" || lower == "minute" || lower == "minutes") return 1min;
  if (lower == "h" || lower == "hour" || lower == "hours") return 1h;
  return std::nullopt;
}

Result<RateLimitRule> ParseRule(std::string_view text) {
  auto refuse = [&](std::string_view why) {
    return InvalidArgumentError(fmt::format("rate limit rule \"{}\": {}", text, why));
  };
  const std::size_t equals = text.rfind('=');
  if (equals == std::string_view::npos) {
    return refuse("must be METHOD ROUTE=N/UNIT, e.g. \"POST /memories=10/minute\"");
  }

  // METHOD ROUTE
  std::vector<std::string_view> words;
  std::string_view lhs = TrimSpace(text.substr(0, equals));
  while (!lhs.empty()) {
    std::size_t end = 0;
    while (end < lhs.size() && !std::isspace(static_cast<unsigned char>(lhs[end]))) ++end;
    words.push_back(lhs.substr(0, end));
    lhs = TrimSpace(lhs.substr(end));
  }
  if (words.size() != 2) {
    return refuse("must name a method and a route before '=', e.g. \"POST /memories\" or \"* *\"");
  }
  RateLimitRule rule;
  rule.method = words[0];
  if (rule.method != "*") {
    if (!std::all_of(rule.method.begin(), rule.method.end(),
                     [](char c) { return std::isalpha(static_cast<unsigned char>(c)); })) {
      return refuse(
          fmt::format("the method must be \"*\" or a word such as POST, got \"{}\"", rule.method));
    }
    for (char& c : rule.method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  rule.route = words[1];
  if (rule.route != "*" && !rule.route.starts_with('/')) {
    return refuse(fmt::format(
        "the route must be \"*\" or a route template starting with '/', got \"{}\"", rule.route));
  }

  // N/UNIT
  const std::string_view rhs = TrimSpace(text.substr(equals + 1));
  const std::size_t slash = rhs.find('/');
  if (slash == std::string_view::npos) {
    return refuse("the limit must be N/UNIT, e.g. 10/minute");
  }
  const std::string_view count = TrimSpace(rhs.substr(0, slash));
  const std::string_view unit = TrimSpace(rhs.substr(slash + 1));
  std::int64_t limit = 0;
  const auto [end, ec] = std::from_chars(count.data(), count.data() + count.size(), limit);
  if (count.empty() || ec != std::errc() || end != count.data() + count.size() || limit < 1 ||
      limit > kMaxLimit) {
    return refuse(
        fmt::format("the count must be an integer in 1..{}, got \"{}\"", kMaxLimit, count));
  }
  const std::optional<nanoseconds> period = ParseUnit(unit);
  if (!period) {
    return refuse(
        fmt::format("the unit must be second, minute or hour (or s, m, h), got \"{}\"", unit));
  }
  rule.limit = limit;
  rule.period = *period;
  return rule;
}

// ---- GCRA ------------------------------------------------------------------------------------

// Emission interval: the spacing of requests at the sustained rate. At least 1 ns, so a limit
// above the period's nanoseconds cannot divide to zero.
std::int64_t IntervalNs(const RateLimitRule& rule) {
  const std::int64_t limit = std::max<std::int64_t>(1, rule.limit);
  return std::max<std::int64_t>(1, rule.period.count() / limit);
}

// One GCRA step on `tat` (the bucket's theoretical arrival time, in ns of the steady clock).
Decision Step(std::int64_t& tat, const RateLimitRule& rule, std::int64_t now) {
  const std::int64_t interval = IntervalNs(rule);
  const std::int64_t period = std::max<std::int64_t>(interval, rule.period.count());
  const std::int64_t new_tat = std::max(tat, now) + interval;
  // Allowed while the backlog, including this request, fits in one period.
  if (new_tat - now > period) {
    return {false, nanoseconds(new_tat - period - now), 0};
  }
  tat = new_tat;
  return {true, nanoseconds(0), (period - (new_tat - now)) / interval};
}

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};

std::int64_t Ns(Clock::time_point t) { return t.time_since_epoch().count(); }

}  // namespace

// ---- Rules -----------------------------------------------------------------------------------

std::string RateLimitRule::ToString() const {
  using namespace std::chrono_literals;
  std::string unit = PeriodText(period);
  if (period % 1s == 0ns && period > 1s && period != 1min && period != 1h) {
    unit = fmt::format("{}s", period / 1s);
  } else if (period % 1s != 0ns) {
    unit = fmt::format("{}ns", period.count());
  }
  return fmt::format("{} {}={}/{}", method, route, limit, unit);
}

std::string RateLimitRule::Describe() const {
  std::string target;
  if (method == "*" && route == "*") {
    target = "all requests";
  } else if (method == "*") {
    target = route;
  } else if (route == "*") {
    target = method + " requests";
  } else {
    target = method + " " + route;
  }
  return fmt::format("{} request{} per {} on {}", limit, limit == 1 ? "" : "s", PeriodText(period),
                     target);
}

Result<std::vector<RateLimitRule>> ParseRateLimitRules(std::string_view comma_separated) {
  std::vector<RateLimitRule> rules;
  std::string_view rest = comma_separated;
  while (!rest.empty()) {
    const std::size_t comma = rest.find(',');
    const std::string_view text = TrimSpace(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (text.empty()) continue;
    MANN_ASSIGN_OR_RETURN(RateLimitRule rule, ParseRule(text));
    if (std::find(rules.begin(), rules.end(), rule) != rules.end()) {
      return InvalidArgumentError(
          fmt::format("rate limit rule \"{}\" is written twice", rule.ToString()));
    }
    rules.push_back(std::move(rule));
  }
  return rules;
}

Status CheckRuleRoutes(const std::vector<RateLimitRule>& rules,
                       const std::vector<std::pair<std::string, std::string>>& routes) {
  for (const RateLimitRule& rule : rules) {
    if (rule.route == "*") continue;
    const bool known = std::any_of(routes.begin(), routes.end(),
                                   [&](const auto& route) { return route.second == rule.route; });
    if (!known) {
      return InvalidArgumentError(fmt::format(
          "rate limit rule \"{}\": no route has the template \"{}\", so it would never apply; "
          "write a template as the API documents it (e.g. /memories/{{id}}) or \"*\"",
          rule.ToString(), rule.route));
    }
  }
  return Status::Ok();
}

// ---- LocalRateLimitStore ---------------------------------------------------------------------

struct LocalRateLimitStore::Shard {
  std::mutex mu;
  // Bucket key -> TAT in ns of the steady clock. Guarded by mu.
  std::unordered_map<std::string, std::int64_t, StringHash, std::equal_to<>> buckets;
  std::int64_t next_sweep = 0;  // guarded by mu

  std::size_t SweepLocked(std::int64_t now) {
    return std::erase_if(buckets, [now](const auto& bucket) { return bucket.second <= now; });
  }
};

LocalRateLimitStore::LocalRateLimitStore(LocalRateLimitStoreOptions options) : options_(options) {
  options_.shards = std::max<std::size_t>(1, options_.shards);
  options_.max_entries = std::max(options_.max_entries, options_.shards);
  shard_capacity_ = (options_.max_entries + options_.shards - 1) / options_.shards;
  shards_.reserve(options_.shards);
  for (std::size_t i = 0; i < options_.shards; ++i) shards_.push_back(std::make_unique<Shard>());
}

LocalRateLimitStore::~LocalRateLimitStore() = default;

LocalRateLimitStore::Shard& LocalRateLimitStore::ShardFor(std::string_view key) {
  return *shards_[StringHash()(key) % shards_.size()];
}

Decision LocalRateLimitStore::Acquire(std::string_view bucket_key, const RateLimitRule& rule,
                                      Clock::time_point now) {
  const std::int64_t now_ns = Ns(now);
  Shard& shard = ShardFor(bucket_key);
  std::lock_guard lock(shard.mu);

  // Periodic sweep: buckets whose TAT has passed carry nothing a fresh bucket would not.
  if (now_ns >= shard.next_sweep) {
    shard.SweepLocked(now_ns);
    shard.next_sweep = now_ns + std::max<std::int64_t>(1, options_.sweep_interval.count());
  }

  auto it = shard.buckets.find(bucket_key);
  if (it == shard.buckets.end()) {
    // A fresh bucket starts with its TAT at now: the full burst is available.
    std::int64_t tat = now_ns;
    const Decision decision = Step(tat, rule, now_ns);
    if (shard.buckets.size() >= shard_capacity_ && shard.SweepLocked(now_ns) == 0) {
      // Still full: forget the bucket nearest to expiring.
      auto oldest =
          std::min_element(shard.buckets.begin(), shard.buckets.end(),
                           [](const auto& a, const auto& b) { return a.second < b.second; });
      shard.buckets.erase(oldest);
      evictions_.fetch_add(1, std::memory_order_relaxed);
      ReportEviction(now_ns);
    }
    shard.buckets.emplace(std::string(bucket_key), tat);
    return decision;
  }
  return Step(it->second, rule, now_ns);
}

std::size_t LocalRateLimitStore::Sweep(Clock::time_point now) {
  std::size_t dropped = 0;
  for (auto& shard : shards_) {
    std::lock_guard lock(shard->mu);
    dropped += shard->SweepLocked(Ns(now));
  }
  return dropped;
}

std::size_t LocalRateLimitStore::size() const {
  std::size_t total = 0;
  for (const auto& shard : shards_) {
    std::lock_guard lock(shard->mu);
    total += shard->buckets.size();
  }
  return total;
}

void LocalRateLimitStore::ReportEviction(std::int64_t now_ns) {
  unlogged_evictions_.fetch_add(1, std::memory_order_relaxed);
  std::int64_t due = next_eviction_log_.load(std::memory_order_relaxed);
  // One line a minute at most, however many callers evict at once: only the thread that moves
  // the deadline logs, and it reports every eviction since the last line.
  if (now_ns < due || !next_eviction_log_.compare_exchange_strong(
                          due, now_ns + std::chrono::nanoseconds(std::chrono::minutes(1)).count(),
                          std::memory_order_relaxed)) {
    return;
  }
  const std::uint64_t count = unlogged_evictions_.exchange(0, std::memory_order_relaxed);
  log::Get("security")
      ->warn(
          "rate limit buckets evicted count={} max_entries={}: there are more callers than the "
          "store holds, and an evicted caller starts with a fresh budget; raise max_entries",
          count, options_.max_entries);
}

std::uint64_t LocalRateLimitStore::evictions() const {
  return evictions_.load(std::memory_order_relaxed);
}

// ---- Middleware ------------------------------------------------------------------------------

namespace {

// A rule as the middleware serves it.
struct ServedRule {
  RateLimitRule rule;
  std::string id;      // part of the bucket key; the period in ns keeps odd periods apart
  std::string detail;  // the 429 detail
  metrics::Counter* limited = nullptr;

  bool Matches(const server::Request& request) const {
    if (rule.method != "*" && rule.method != request.method &&
        !(rule.method == "GET" && request.method == "HEAD")) {
      return false;
    }
    return rule.route == "*" || (!request.route.empty() && rule.route == request.route);
  }
};

// "127.0.0.1:50312" -> "127.0.0.1", "[::1]:50312" -> "[::1]"; an address without a port is kept.
std::string_view WithoutPort(std::string_view address) {
  if (address.starts_with('[')) {
    const std::size_t close = address.find(']');
    return close == std::string_view::npos ? address : address.substr(0, close + 1);
  }
  const std::size_t colon = address.find(':');
  if (colon == std::string_view::npos || address.find(':', colon + 1) != std::string_view::npos) {
    return address;  // no port, or an unbracketed IPv6 address
  }
  return address.substr(0, colon);
}

std::string CallerOf(const server::Request& request) {
  if (const Principal* principal = PrincipalOf(request)) return "key:" + principal->key_name;
  const std::string_view ip = WithoutPort(request.client_address);
  return "ip:" + std::string(ip.empty() ? "unknown" : ip);
}

std::int64_t RetryAfterSeconds(nanoseconds wait) {
  const std::int64_t ns = wait.count();
  return std::max<std::int64_t>(1, (ns + 999'999'999) / 1'000'000'000);
}

}  // namespace

server::Middleware RateLimitMiddleware(RateLimitOptions options) {
  auto log = log::Get("security");
  metrics::CounterFamily* family = nullptr;
  if (!options.rules.empty()) {
    metrics::Registry& registry =
        options.registry != nullptr ? *options.registry : metrics::Registry::Default();
    auto added =
        registry.AddCounter("mann_http_rate_limited_total",
                            "Requests refused by a rate limit, by the rule's route.", {"route"});
    if (added.ok()) {
      family = *added;
    } else {
      // Only a family of the same name and another shape gets here; limiting still works.
      log->error("rate-limited requests will not be counted: {}", added.status().ToString());
    }
  }

  std::vector<ServedRule> rules;
  for (RateLimitRule& rule : options.rules) {
    if (rule.limit < 1 || rule.period <= nanoseconds(0)) {
      log->error(
          "rate limit rule ignored rule=\"{}\": it needs a limit of at least 1 and a "
          "positive period",
          rule.ToString());
      continue;
    }
    ServedRule served;
    served.id =
        fmt::format("{} {}={}/{}ns", rule.method, rule.route, rule.limit, rule.period.count());
    served.detail = "rate limit exceeded: " + rule.Describe();
    if (family != nullptr) served.limited = &family->WithLabels({rule.route});
    served.rule = std::move(rule);
    rules.push_back(std::move(served));
  }
  if (rules.empty()) {
    return [](server::Request& request, const server::Next& next) { return next(request); };
  }

  std::shared_ptr<RateLimitStore> store =
      options.store ? std::move(options.store) : std::make_shared<LocalRateLimitStore>();
  std::function<Clock::time_point()> clock =
      options.clock ? std::move(options.clock) : [] { return Clock::now(); };

  return [rules = std::move(rules), store = std::move(store), clock = std::move(clock),
          log = std::move(log)](server::Request& request,
                                const server::Next& next) -> server::Response {
    const ServedRule* refused_by = nullptr;
    nanoseconds wait{0};
    std::string caller;
    Clock::time_point now;
    for (const ServedRule& served : rules) {
      if (!served.Matches(request)) continue;
      if (caller.empty()) {
        caller = CallerOf(request);
        now = clock();
      }
      const Decision decision = store->Acquire(caller + "|" + served.id, served.rule, now);
      if (!decision.allowed && (refused_by == nullptr || decision.retry_after > wait)) {
        refused_by = &served;
        wait = decision.retry_after;
      }
    }
    if (refused_by == nullptr) return next(request);

    if (refused_by->limited != nullptr) refused_by->limited->Inc();
    log->debug("request rate limited caller={} rule=\"{}\" request_id={}", caller,
               refused_by->rule.ToString(), request.request_id);
    server::Response response = server::ErrorResponse(429, refused_by->detail);
    response.headers.Set("Retry-After", std::to_string(RetryAfterSeconds(wait)));
    return response;
  };
}

}  // namespace mann::security
