// RedisRateLimitStore: the GCRA of rate_limit.cc, run in Redis so that replicas share buckets.
#include <algorithm>

#include <mann/cache/redis.h>
#include <mann/core/log.h>
#include <mann/metrics/registry.h>
#include <mann/security/rate_limit.h>

namespace mann::security {
namespace {

// KEYS[1]: the bucket. ARGV[1]: the emission interval, ARGV[2]: the period, both in whole
// microseconds with period >= interval >= 1. Returns {allowed (0/1), retry_after_us, remaining}.
// The TAT is kept as an integer number of microseconds since the epoch: about 1.7e15, exact in
// Lua's doubles (below 2^53), and written with %d because tostring keeps only 14 digits.
constexpr const char* kGcraScript = R"lua(
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > period then
  return {0, new_tat - period - now, 0}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX',
           math.ceil((new_tat - now) / 1000))
return {1, 0, math.floor((period - (new_tat - now)) / interval)}
)lua";

using std::chrono::microseconds;
using std::chrono::nanoseconds;

}  // namespace

RedisRateLimitStore::RedisRateLimitStore(RedisRateLimitStoreOptions options)
    : options_(std::move(options)) {
  if (!options_.fallback) options_.fallback = std::make_shared<LocalRateLimitStore>();
  metrics::Registry& registry =
      options_.registry != nullptr ? *options_.registry : metrics::Registry::Default();
  auto family = registry.AddCounter(
      "mann_rate_limit_fallbacks_total",
      "Rate limit decisions taken by the per-replica store because Redis was unavailable.");
  if (family.ok()) {
    fallback_counter_ = &(*family)->WithLabels();
  } else {
    log::Get("security")
        ->error("rate limit fallbacks will not be counted: {}", family.status().ToString());
  }
}

RedisRateLimitStore::~RedisRateLimitStore() = default;

std::string RedisRateLimitStore::ScriptSha(bool reload) {
  std::lock_guard lock(sha_mu_);
  if (!sha_.empty() && !reload) return sha_;
  Result<cache::RedisReply> loaded = options_.redis->Command({"SCRIPT", "LOAD", kGcraScript});
  if (!loaded.ok()) return {};
  if (loaded->type != cache::RedisReply::Type::kString) {
    log::Get("security")->error("redis refused the rate limit script: {}", loaded->text);
    return {};
  }
  sha_ = loaded->text;
  return sha_;
}

Decision RedisRateLimitStore::Acquire(std::string_view bucket_key, const RateLimitRule& rule,
                                      std::chrono::steady_clock::time_point now) {
  // The same interval and period as the local store's Step, in whole microseconds.
  const std::int64_t limit = std::max<std::int64_t>(1, rule.limit);
  const std::int64_t period_us =
      std::max<std::int64_t>(1, std::chrono::duration_cast<microseconds>(rule.period).count());
  const std::int64_t interval_us = std::max<std::int64_t>(1, period_us / limit);
  const std::string key = options_.key_prefix + "rl:" + std::string(bucket_key);

  auto evaluate = [&](const std::string& sha) {
    return options_.redis->Command({"EVALSHA", sha, "1", key, std::to_string(interval_us),
                                    std::to_string(std::max(interval_us, period_us))});
  };
  Result<cache::RedisReply> reply = UnavailableError("redis unavailable");
  if (std::string sha = ScriptSha(false); !sha.empty()) {
    reply = evaluate(sha);
    // Redis forgets scripts when it restarts or is told SCRIPT FLUSH.
    if (reply.ok() && reply->is_error() && reply->text.starts_with("NOSCRIPT")) {
      if (sha = ScriptSha(true); !sha.empty()) reply = evaluate(sha);
    }
  }

  if (reply.ok() && reply->type == cache::RedisReply::Type::kArray && reply->elements.size() == 3) {
    const auto& e = reply->elements;
    return {.allowed = e[0].integer == 1,
            .retry_after = nanoseconds(microseconds(e[1].integer)),
            .remaining = e[2].integer};
  }
  if (reply.ok()) {
    // An answer of another shape is a defect on one side or the other: say it, then decide
    // locally like for an outage.
    log::Get("security")->error("redis answered the rate limit script with \"{}\"", reply->text);
  }
  fallbacks_.fetch_add(1, std::memory_order_relaxed);
  if (fallback_counter_ != nullptr) fallback_counter_->Inc();
  return options_.fallback->Acquire(bucket_key, rule, now);
}

}  // namespace mann::security
