#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#include <fmt/format.h>

#include <mann/cache/embedding_cache.h>
#include <mann/core/log.h>

#include "cache_metrics.h"

namespace mann::cache {
namespace {

using internal::kRequestsFamily;
using internal::kRequestsHelp;  // for the in-process tier's callback series

// Keys per MGET and values per EVAL: bounds one command's size (256 sentence vectors are about
// 0.5 MB) so that it stays well inside redis.command_timeout.
constexpr std::size_t kChunk = 256;

// SET of every KEYS[i] to ARGV[i + 1] with the TTL ARGV[1]: one round trip for a batch, which
// MSET cannot give as it takes no TTL.
constexpr std::string_view kSetManyScript =
    "for i, key in ipairs(KEYS) do redis.call('SET', key, ARGV[i + 1], 'PX', ARGV[1]) end "
    "return #KEYS";

void AppendLittleEndian(std::string& out, std::uint32_t word) {
  for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<char>(word >> shift));
}

std::uint32_t ReadLittleEndian(const char* bytes) {
  std::uint32_t word = 0;
  for (int i = 0; i < 4; ++i) {
    word |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  }
  return word;
}

void Count(metrics::Counter* counter, std::size_t n = 1) {
  if (counter != nullptr && n > 0) counter->Inc(static_cast<double>(n));
}

}  // namespace

std::string EncodeEmbedding(std::span<const float> vector) {
  std::string out;
  out.reserve(4 + 4 * vector.size());
  AppendLittleEndian(out, static_cast<std::uint32_t>(vector.size()));
  for (const float value : vector) AppendLittleEndian(out, std::bit_cast<std::uint32_t>(value));
  return out;
}

std::optional<encode::Vector> DecodeEmbedding(std::string_view value, std::size_t dimension) {
  if (value.size() < 4 || (value.size() - 4) / 4 != dimension || (value.size() - 4) % 4 != 0) {
    return std::nullopt;
  }
  if (ReadLittleEndian(value.data()) != dimension) return std::nullopt;
  encode::Vector vector(dimension);
  for (std::size_t i = 0; i < dimension; ++i) {
    vector[i] = std::bit_cast<float>(ReadLittleEndian(value.data() + 4 + 4 * i));
    if (!std::isfinite(vector[i])) return std::nullopt;
  }
  return vector;
}

Result<std::shared_ptr<RedisEmbeddingCache>> RedisEmbeddingCache::Create(
    RedisEmbeddingCacheOptions options) {
  if (options.redis == nullptr) {
    return InvalidArgumentError("shared embedding cache: no Redis client (redis.url)");
  }
  if (options.ttl <= std::chrono::milliseconds(0)) {
    return InvalidArgumentError(fmt::format(
        "shared embedding cache: cache.ttl must be positive, got {} ms", options.ttl.count()));
  }
  return std::shared_ptr<RedisEmbeddingCache>(new RedisEmbeddingCache(std::move(options)));
}

RedisEmbeddingCache::RedisEmbeddingCache(RedisEmbeddingCacheOptions options)
    : options_(std::move(options)),
      lookups_(internal::RegisterLookupCounters(options_.registry, options_.name)),
      rejected_(internal::RegisterCacheCounter(
          internal::RegistryOrDefault(options_.registry), "mann_cache_rejected_values_total",
          "Cached values that did not decode (wrong length or dimension), treated as misses and "
          "overwritten.",
          options_.name)) {}

void RedisEmbeddingCache::WarnOnce(const std::string& what) {
  auto log = log::Get("cache");
  if (!warned_.exchange(true, std::memory_order_relaxed)) {
    log->warn(
        "shared embedding cache: {}; embeddings are computed without it (further errors of this "
        "kind are logged at debug level); check Redis's maxmemory and its log",
        what);
  } else {
    log->debug("shared embedding cache: {}", what);
  }
}

std::string RedisEmbeddingCache::RedisKey(std::string_view digest) const {
  return fmt::format("{}emb:{}", options_.key_prefix, digest);
}

void RedisEmbeddingCache::GetMany(std::span<const std::string> keys, std::size_t dimension,
                                  std::vector<encode::Vector>* out) {
  out->assign(keys.size(), encode::Vector{});
  for (std::size_t begin = 0; begin < keys.size(); begin += kChunk) {
    const std::size_t end = std::min(keys.size(), begin + kChunk);
    std::vector<std::string> args;
    args.reserve(1 + end - begin);
    args.emplace_back("MGET");
    for (std::size_t i = begin; i < end; ++i) args.push_back(RedisKey(keys[i]));

    // Down or refusing: the rest of the batch is not asked for either, it would fail the same.
    Result<RedisReply> reply = options_.redis->Command(args);
    if (!reply.ok() || reply->type != RedisReply::Type::kArray ||
        reply->elements.size() != end - begin) {
      if (reply.ok()) WarnOnce(fmt::format("MGET answered {}", reply->text));
      Count(lookups_.bypassed, keys.size() - begin);
      return;
    }

    for (std::size_t i = begin; i < end; ++i) {
      const RedisReply& element = reply->elements[i - begin];
      if (element.type != RedisReply::Type::kString) {
        Count(lookups_.misses);
        continue;
      }
      std::optional<encode::Vector> vector = DecodeEmbedding(element.text, dimension);
      if (!vector) {
        Count(rejected_);
        Count(lookups_.misses);
        continue;
      }
      (*out)[i] = std::move(*vector);
      Count(lookups_.hits);
    }
  }
}

void RedisEmbeddingCache::PutMany(std::span<const std::string> keys,
                                  std::span<const encode::Vector> values) {
  const std::size_t n = std::min(keys.size(), values.size());
  const std::string ttl = std::to_string(options_.ttl.count());
  for (std::size_t begin = 0; begin < n; begin += kChunk) {
    if (!options_.redis->up()) return;  // dropped: the next embed of these texts recomputes
    const std::size_t end = std::min(n, begin + kChunk);
    std::vector<std::string> args;
    if (end - begin == 1) {
      args = {"SET", RedisKey(keys[begin]), EncodeEmbedding(values[begin]), "PX", ttl};
    } else {
      args.reserve(3 + 2 * (end - begin) + 1);
      args.emplace_back("EVAL");
      args.emplace_back(kSetManyScript);
      args.push_back(std::to_string(end - begin));
      for (std::size_t i = begin; i < end; ++i) args.push_back(RedisKey(keys[i]));
      args.push_back(ttl);
      for (std::size_t i = begin; i < end; ++i) args.push_back(EncodeEmbedding(values[i]));
    }
    // A failure to reach Redis is the client's to count and log; the vectors were served anyway.
    Result<RedisReply> reply = options_.redis->Command(args);
    if (reply.ok() && reply->is_error()) {
      WarnOnce(fmt::format("storing {} vectors answered {}", end - begin, reply->text));
      return;
    }
  }
}

Result<metrics::CallbackHandle> RegisterLocalEmbeddingMetrics(const encode::EmbeddingCache& cache,
                                                              metrics::Registry& registry) {
  return registry.AddCounterCallback(kRequestsFamily, kRequestsHelp, {"cache", "result"}, [&cache] {
    return std::vector<metrics::Sample>{
        {{"embedding", "hit"}, static_cast<double>(cache.hits())},
        {{"embedding", "miss"}, static_cast<double>(cache.misses())}};
  });
}

}  // namespace mann::cache
