// Rate limits: per-route request budgets per API key (or per client address without one).
//
//   MANN_ASSIGN_OR_RETURN(options.rules, security::ParseRateLimitRules(
//       "POST /memories=10/minute, * /search=120/minute, * *=600/minute"));
//   router.Use(security::RateLimitMiddleware(std::move(options)));  // after Auth
//
// A request is checked against every rule whose method ("*" or the request's; HEAD counts as
// GET, since the GET handler answers it) and route ("*" or the request's route template; a
// request that matched no route meets only "*" rules) match, and must pass all of them. Each
// (caller, rule) pair has its own bucket; the caller is "key:<key name>" for a request carrying
// a Principal, else "ip:<client address>" without the port. Every request a rule sees counts
// against it when it has room, even if another rule refuses the request: a client that keeps
// sending while refused keeps spending its other budgets.
//
// Over a limit: 429 with Retry-After (whole seconds, rounded up, at least 1) and a detail naming
// the rule ("rate limit exceeded: 10 requests per minute on POST /memories"); the handler is not
// reached. Metric: mann_http_rate_limited_total{route}, route being the refusing rule's route
// text ("/memories", "*"), which keeps the label set as small as the rule list.
//
// Algorithm: GCRA, the generic cell rate algorithm. A bucket stores one time, the theoretical
// arrival time (TAT) its requests would have reached at exactly limit per period; a request is
// allowed when max(TAT, now) + period/limit - now <= period, and that sum becomes the new TAT. So
// `limit` requests may come at once, then one per period/limit; a bucket whose TAT has passed
// is the same as a fresh one, which is what lets the store forget it.
//
// Thread-safety: everything here is safe to call concurrently, including a RateLimitStore.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <mann/core/status.h>
#include <mann/server/router.h>

namespace mann::metrics {
class Counter;
class Registry;
}  // namespace mann::metrics

namespace mann::cache {
class RedisClient;
}

namespace mann::security {

struct RateLimitRule {
  std::string method;                  // "*" or an upper-case method
  std::string route;                   // "*" or a route template, as registered with server::Router
  std::int64_t limit = 0;              // requests per period; at least 1
  std::chrono::nanoseconds period{0};  // greater than zero

  // "POST /memories=10/minute", as ParseRateLimitRules reads it (a period other than one
  // second, minute or hour is written in seconds or nanoseconds, which it does not read).
  std::string ToString() const;
  // "10 requests per minute on POST /memories", for the 429 detail.
  std::string Describe() const;

  friend bool operator==(const RateLimitRule&, const RateLimitRule&) = default;
};

// Parses comma-separated rules `METHOD ROUTE=N/UNIT`:
//   POST /memories=10/minute, * /search=120/minute, * *=600/minute
// METHOD is "*" or a method (upper-cased); ROUTE is "*" or a template starting with '/'; N is an
// integer in 1..1000000000; UNIT is second, minute or hour (or s, m, h; plurals accepted).
// Blanks around rules and around '=' and '/' are trimmed; empty rules are skipped; the empty
// string gives no rules. InvalidArgument naming the rule and what is wrong, also for a rule
// written twice.
Result<std::vector<RateLimitRule>> ParseRateLimitRules(std::string_view comma_separated);

// InvalidArgument naming the first rule whose route is neither "*" nor one of `routes` (the
// templates of server::Router::Routes()): such a rule would never apply, which is almost
// certainly a typo.
Status CheckRuleRoutes(const std::vector<RateLimitRule>& rules,
                       const std::vector<std::pair<std::string, std::string>>& routes);

// The outcome of one request against one rule's bucket.
struct Decision {
  bool allowed = false;
  std::chrono::nanoseconds retry_after{0};  // when refused: how long until one request fits
  std::int64_t remaining = 0;               // requests the bucket would take right now
};

// Holds bucket state. The local store keeps it in process; a shared store (e.g. Redis, for
// limits across replicas) implements the same call. `now` is the middleware's clock: a shared
// store may use its own clock instead, since steady_clock times do not travel between
// processes. Acquire cannot fail: a store that loses its backend decides its own fallback
// (allowing, and counting that it did, keeps the API up), since the middleware has no better
// answer. Implementations must be safe to call concurrently.
class RateLimitStore {
 public:
  virtual ~RateLimitStore() = default;

  // Counts one request against `bucket_key` under `rule` if it fits, and says whether it did.
  virtual Decision Acquire(std::string_view bucket_key, const RateLimitRule& rule,
                           std::chrono::steady_clock::time_point now) = 0;
};

struct LocalRateLimitStoreOptions {
  // The most buckets held at once, across all shards. Each costs about 100 bytes plus its key.
  std::size_t max_entries = 100'000;
  // Independent maps with a mutex each, so concurrent requests rarely wait for one another.
  std::size_t shards = 16;
  // How often (by the `now` callers pass) each shard drops the buckets whose TAT has passed.
  std::chrono::nanoseconds sweep_interval = std::chrono::seconds(30);
};

// The in-process store. Memory stays bounded two ways:
//   sweep: at most once per sweep_interval per shard, a call to Acquire first drops that shard's
//     buckets whose TAT is not after `now` (they hold no debt: a fresh bucket behaves the same);
//   cap: each shard holds at most ceil(max_entries / shards) buckets. A new bucket arriving at a
//     full shard first forces a sweep; if the shard is still full, the bucket with the earliest
//     TAT is evicted, being the one closest to expiring, whose caller gains the least from
//     being forgotten. Evictions are counted (evictions()) and logged at most once a minute:
//     they mean max_entries is too small for the number of callers.
class LocalRateLimitStore final : public RateLimitStore {
 public:
  explicit LocalRateLimitStore(LocalRateLimitStoreOptions options = {});
  ~LocalRateLimitStore() override;

  Decision Acquire(std::string_view bucket_key, const RateLimitRule& rule,
                   std::chrono::steady_clock::time_point now) override;

  // Drops every shard's expired buckets now; returns how many went.
  std::size_t Sweep(std::chrono::steady_clock::time_point now);

  std::size_t size() const;  // buckets held
  std::uint64_t evictions() const;

 private:
  struct Shard;
  Shard& ShardFor(std::string_view key);
  // Counts an eviction into the next log line, and writes the line when one is due.
  void ReportEviction(std::int64_t now_ns);

  LocalRateLimitStoreOptions options_;
  std::size_t shard_capacity_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<std::uint64_t> evictions_{0};
  std::atomic<std::uint64_t> unlogged_evictions_{0};
  std::atomic<std::int64_t> next_eviction_log_{INT64_MIN};  // steady-clock ns
};

struct RedisRateLimitStoreOptions {
  std::shared_ptr<cache::RedisClient> redis = {};  // required
  std::string key_prefix = "mann:";                // buckets are <prefix>rl:<bucket key>
  // Decides while Redis is down; nullptr: a LocalRateLimitStore with default options.
  std::shared_ptr<RateLimitStore> fallback = {};
  // Where mann_rate_limit_fallbacks_total goes; nullptr: metrics::Registry::Default().
  metrics::Registry* registry = nullptr;
};

// The shared store: every replica using the same Redis spends the same buckets, so a limit
// holds for the cluster rather than per replica. Each Acquire is one EVALSHA of a Lua script
// doing the GCRA step above atomically in Redis, on Redis's clock (TIME), so the replicas'
// clocks never meet; it works in microseconds, so an interval shorter than 1 us (more than a
// million requests per second on one rule) counts as 1 us. Retry-After and the remaining count
// are computed as the local store computes them. The script is loaded with SCRIPT LOAD on first
// use and again when Redis answers NOSCRIPT (after a restart or SCRIPT FLUSH). Bucket keys
// expire in Redis when their TAT passes, which is what keeps Redis's memory bounded.
//
// While Redis is unreachable the fallback store decides (limits are then per replica), each
// such decision is counted in mann_rate_limit_fallbacks_total, and the next Acquire after the
// client reconnects goes to Redis again: the state in Redis is what it was, the fallback's is
// not carried over.
class RedisRateLimitStore final : public RateLimitStore {
 public:
  explicit RedisRateLimitStore(RedisRateLimitStoreOptions options);
  ~RedisRateLimitStore() override;

  Decision Acquire(std::string_view bucket_key, const RateLimitRule& rule,
                   std::chrono::steady_clock::time_point now) override;

  std::uint64_t fallbacks() const { return fallbacks_.load(std::memory_order_relaxed); }

 private:
  // The script's SHA1 as Redis knows it, loading the script when it does not; empty when Redis
  // could not be reached.
  std::string ScriptSha(bool reload);

  RedisRateLimitStoreOptions options_;
  std::atomic<std::uint64_t> fallbacks_{0};
  metrics::Counter* fallback_counter_ = nullptr;
  std::mutex sha_mu_;
  std::string sha_;  // guarded by sha_mu_
};

struct RateLimitOptions {
  std::vector<RateLimitRule> rules;
  // Bucket state; nullptr: a LocalRateLimitStore with default options.
  std::shared_ptr<RateLimitStore> store;
  // The time for GCRA; empty: std::chrono::steady_clock::now. Tests inject their own.
  std::function<std::chrono::steady_clock::time_point()> clock;
  // Where mann_http_rate_limited_total goes; nullptr: metrics::Registry::Default(). Must
  // outlive the middleware.
  metrics::Registry* registry = nullptr;
};

// The middleware described above. Without rules it only calls next. Rules with a limit below 1
// or a period of zero or less (which ParseRateLimitRules never returns) refuse nothing.
server::Middleware RateLimitMiddleware(RateLimitOptions options);

}  // namespace mann::security
