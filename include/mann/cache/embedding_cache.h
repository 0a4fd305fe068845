// RedisEmbeddingCache: the embedding tier replicas share (encode::SharedEmbeddingCache in Redis),
// behind each Router's in-process LRU, so that a query or a memory one replica embedded is not
// embedded again by the others.
//
//   MANN_ASSIGN_OR_RETURN(auto shared, cache::RedisEmbeddingCache::Create(
//       {.redis = redis, .ttl = config.cache.ttl, .key_prefix = config.redis.key_prefix}));
//   router.SetSharedCache(std::move(shared));
//
// Keys are content-addressed: <prefix>emb:<hex digest>, the digest being the Router's SHA-256
// of the lane's provenance (encoder id and parameters, gloss lexicon) and the encoder's input.
// The same key therefore always means the same vector, on every replica and at every time, so
// nothing is ever invalidated: values only age out by TTL (SET ... PX ttl) or Redis's memory
// policy. For the same reason an in-process copy in front (the Router's LRU) is safe, unlike for
// search answers (cache::ResultCache). Two deployments whose encoders share an id but not their
// weights (two remote endpoints serving different models under one name) must not share a
// key_prefix.
//
// Value: the dimension as an unsigned 32-bit little-endian integer, then that many IEEE-754
// float32 values, little-endian (4 + 4 * dimension bytes; 2052 for the 512-dimension sentence
// encoder). A value of another length, another dimension than the lane's encoder, or holding a
// NaN or infinity is a miss, counted, and overwritten by the vector the Router then computes.
//
// Round trips: GetMany is one MGET per 256 keys; PutMany is one SET for one value and one EVAL
// (a loop of SET ... PX) per 256 values for more.
//
// Degraded mode: while Redis is down (RedisClient answers Unavailable at once) the tier is
// bypassed: every lookup is a miss counted in mann_cache_bypassed_total, writes are dropped, and
// embeds go on through the encoder. RedisClient reconnects by itself and logs the outage once;
// lookups then hit again without anything done here.
//
// Metrics (options.registry, else metrics::Registry::Default()), `cache` being options.name:
//   mann_cache_requests_total{cache,result}   keys looked up, result "hit" or "miss"
//   mann_cache_bypassed_total{cache}          keys not looked up because Redis was down
//   mann_cache_rejected_values_total{cache}   values that did not decode (counted as misses)
// The families are those cache::ResultCache declares, so one query covers every cache.
//
// Thread-safety: every member is safe to call concurrently.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <mann/cache/lookup_counters.h>
#include <mann/cache/redis.h>
#include <mann/core/status.h>
#include <mann/encode/router.h>
#include <mann/encode/shared_cache.h>
#include <mann/metrics/registry.h>

namespace mann::cache {

// The value format above.
std::string EncodeEmbedding(std::span<const float> vector);
// The vector of `value`, or nullopt when it is not exactly `dimension` finite floats in the
// format above.
std::optional<encode::Vector> DecodeEmbedding(std::string_view value, std::size_t dimension);

struct RedisEmbeddingCacheOptions {
  std::shared_ptr<RedisClient> redis = {};               // required
  std::chrono::milliseconds ttl{std::chrono::hours(1)};  // of every value; must be positive
  std::string key_prefix = "mann:";                      // of every Redis key
  std::string name = "embedding_shared";                 // the `cache` label of the metrics
  metrics::Registry* registry = nullptr;                 // must outlive the cache
};

class RedisEmbeddingCache final : public encode::SharedEmbeddingCache {
 public:
  // InvalidArgument without a client or with a TTL that is not positive.
  static Result<std::shared_ptr<RedisEmbeddingCache>> Create(RedisEmbeddingCacheOptions options);

  void GetMany(std::span<const std::string> keys, std::size_t dimension,
               std::vector<encode::Vector>* out) override;
  void PutMany(std::span<const std::string> keys, std::span<const encode::Vector> values) override;

  // <prefix>emb:<digest>: where the vector of `digest` (a Router cache key) lives.
  std::string RedisKey(std::string_view digest) const;

 private:
  explicit RedisEmbeddingCache(RedisEmbeddingCacheOptions options);
  // An error reply (OOM under maxmemory noeviction, a misconfigured proxy) is logged as a
  // warning the first time, at debug level after: it would otherwise repeat on every embed.
  void WarnOnce(const std::string& what);

  const RedisEmbeddingCacheOptions options_;
  const LookupCounters lookups_;
  metrics::Counter* rejected_ = nullptr;
  std::atomic<bool> warned_{false};
};

// Reports the Router's in-process embedding cache in the same families, as
// mann_cache_requests_total{cache="embedding",result="hit"|"miss"}, read from `cache` at scrape
// time. `cache` must outlive the returned handle.
Result<metrics::CallbackHandle> RegisterLocalEmbeddingMetrics(const encode::EmbeddingCache& cache,
                                                              metrics::Registry& registry);

}  // namespace mann::cache
