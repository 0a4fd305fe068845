// ResultCache: answers of read endpoints (POST /search), kept so that a repeated request skips
// encoding and scoring, and dropped as soon as the namespace they read is written.
//
//   cache::ResultCache cache({.max_entries = 1000, .ttl = 1h, .redis = redis, .name = "search"});
//   cache::ResultCache::Ticket ticket;
//   if (auto hit = cache.Lookup(ns, request_key, ticket)) return *hit;
//   std::string answer = Compute();
//   cache.Store(ticket, answer);
//   ...
//   cache.InvalidateNamespace(ns);  // after every write to ns, from any replica
//
// Two tiers, chosen by options.redis:
//   in process (no Redis): an LRU of at most max_entries values, each living ttl.
//   shared (Redis): values in Redis under SET ... PX ttl, so every replica sharing the Redis
//     sees the others' answers; Redis's own memory policy bounds them, max_entries does not.
//     No in-process copy sits in front: a local copy would outlive an invalidation made by
//     another replica.
//
// Invalidation is by generation: each namespace has a counter (in Redis: INCR of
// <prefix>gen:<scope>:<ns>), every key embeds the generation read before the answer was
// computed, and InvalidateNamespace increments it. Old answers are then unreachable at once on
// every replica and age out by TTL (or LRU). An answer computed while a write happened is stored
// under the generation read before it, where no later lookup looks. So a hit is exactly the bytes
// a miss stored for the same namespace, scope, generation and request key.
//
// In Redis every key also embeds the cache-wide epoch, <prefix>epoch:<scope tag>, read with the
// generation in one MGET (a lookup is an MGET and a GET, two round trips as without the epoch).
//
// Degraded mode: while Redis is down the shared tier is bypassed (a lookup misses and nothing is
// stored; counted in mann_cache_bypassed_total), rather than falling back to an in-process copy
// that another replica's writes could not invalidate. An invalidation that cannot reach Redis is
// remembered and replayed when Redis is back (RedisClient::OnRecovery, and before each lookup);
// until then the namespace is not served from the cache. Before that replay, and before its
// first lookup after any outage its client saw (a failed first connection included), a replica
// INCRs the epoch: every answer stored before the outage is then unreachable on every replica
// at once, whichever replica is back first and whether or not the one that wrote during the
// outage is still alive. A lookup that raced an outage is neither served nor storable, and a
// ticket taken before the outage stores under the old epoch, where no lookup looks. The cost
// is a cold cache after each outage. A replica cut off from Redis alone (the others reach it
// and see no outage) is covered by the others: replicas sharing a scope share a database, and
// each invalidates a namespace when it applies another's write from the change log.
//
// Metrics (options.registry, else metrics::Registry::Default()), `cache` being options.name:
//   mann_cache_requests_total{cache,result}  lookups, result "hit" or "miss"
//   mann_cache_bypassed_total{cache}         lookups that skipped the cache (Redis down)
//   mann_cache_evictions_total{cache}        in-process entries dropped for room (LRU)
//   mann_cache_invalidations_total{cache}    InvalidateNamespace calls
//
// Thread-safety: every member is safe to call concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include <mann/cache/lookup_counters.h>
#include <mann/cache/redis.h>

namespace mann::metrics {
class Counter;
class Registry;
}  // namespace mann::metrics

namespace mann::cache {

struct ResultCacheOptions {
  std::size_t max_entries = 1000;                        // in-process tier; 0 turns the cache off
  std::chrono::milliseconds ttl{std::chrono::hours(1)};  // 0 turns the cache off
  std::shared_ptr<RedisClient> redis = {};               // nullptr: the in-process tier
  std::string key_prefix = "mann:";                      // of every Redis key
  // Tells apart caches of different data behind one Redis: replicas sharing one database pass
  // the same scope; a server with a database of its own passes something unique to it.
  std::string scope = {};
  std::string name = "search";  // the `cache` label of the metrics and part of the keys
  metrics::Registry* registry = nullptr;
  // The in-process tier's clock for TTLs; empty: steady_clock. Tests inject their own.
  std::function<std::chrono::steady_clock::time_point()> clock = {};
};

class ResultCache {
 public:
  // Where a miss's answer goes: the key of the generation the lookup read.
  struct Ticket {
    std::string key;
    bool storable = false;  // false: the cache is off or bypassed; Store does nothing
  };

  explicit ResultCache(ResultCacheOptions options);
  ~ResultCache();
  ResultCache(const ResultCache&) = delete;
  ResultCache& operator=(const ResultCache&) = delete;

  // The stored answer for (ns, request_key) at the namespace's current generation, or nullopt
  // after filling `ticket` for Store. request_key must determine the answer together with the
  // bank's state: the caller normalizes the request's fields into it.
  std::optional<std::string> Lookup(std::string_view ns, std::string_view request_key,
                                    Ticket& ticket);
  // Keeps `value` under the ticket's key for ttl. Failures (Redis down) are counted, not raised.
  void Store(const Ticket& ticket, std::string value);

  // Makes every answer stored for `ns` unreachable, on every replica sharing the Redis.
  void InvalidateNamespace(std::string_view ns);

  bool enabled() const { return enabled_; }
  bool shared() const { return options_.redis != nullptr; }
  std::size_t local_size() const;  // entries of the in-process tier

 private:
  using Clock = std::chrono::steady_clock;
  struct LocalEntry {
    std::string key;
    std::string value;
    Clock::time_point expires;
  };

  // The shared tier's state that the recovery listener needs (the epoch, the pending
  // invalidations); the listener holds it weakly, as the client may outlive us.
  struct SharedState;

  Clock::time_point Now() const;
  // "shared" for the empty scope, else a digest of it.
  std::string ScopeTag() const;
  // <prefix>gen:<scope tag>:<ns>, the namespace's generation counter in Redis.
  std::string GenerationKey(std::string_view ns) const;
  // <prefix>epoch:<scope tag>, bumped by each replica whose client recovers from an outage.
  std::string EpochKey() const;

  const ResultCacheOptions options_;
  const bool enabled_;

  const LookupCounters lookups_;
  metrics::Counter* evictions_ = nullptr;
  metrics::Counter* invalidations_ = nullptr;

  mutable std::mutex mu_;
  // In-process tier, guarded by mu_: most recently used first.
  std::list<LocalEntry> order_;
  std::unordered_map<std::string, std::list<LocalEntry>::iterator> index_;
  std::unordered_map<std::string, std::uint64_t> local_generations_;
  // Shared tier: the epoch's bookkeeping and the invalidations that have not reached Redis.
  std::shared_ptr<SharedState> shared_state_;
};

}  // namespace mann::cache
