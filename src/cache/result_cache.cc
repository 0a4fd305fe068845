#include <atomic>
#include <set>

#include <fmt/format.h>

#include <mann/cache/result_cache.h>
#include <mann/core/log.h>
#include <mann/metrics/registry.h>
#include <mann/text/analyzer.h>

#include "cache_metrics.h"

namespace mann::cache {

struct ResultCache::SharedState {
  std::shared_ptr<RedisClient> redis;
  std::string epoch_key;  // <prefix>epoch:<scope tag>

  std::mutex mu;
  std::set<std::string, std::less<>> generation_keys;  // guarded by mu: not yet in Redis

  std::mutex epoch_mu;  // one INCR of the epoch per outage, however many lookups wait for it
  // The client's outage count when the epoch was last bumped. Zero at the start, so that a
  // client that could not connect at all (outage 1) also bumps once Redis answers.
  std::atomic<std::uint64_t> outages_covered{0};

  bool EpochCovers(std::uint64_t outages) const {
    return outages_covered.load(std::memory_order_acquire) == outages;
  }

  // After an outage this replica saw, INCR of the epoch, which is part of every key: every
  // answer stored before the outage becomes unreachable on every replica at once, including
  // those of namespaces whose invalidation a replica could not send and never will (it exited).
  // False while Redis does not take the INCR: the caller bypasses the cache.
  bool BumpEpoch() {
    std::lock_guard lock(epoch_mu);
    const std::uint64_t outages = redis->outages();
    if (EpochCovers(outages)) return true;  // another lookup or the listener did it
    Result<RedisReply> reply = redis->Command({"INCR", epoch_key});
    if (!reply.ok() || reply->is_error()) return false;
    outages_covered.store(outages, std::memory_order_release);
    log::Get("cache")->info(
        "cache epoch {} is now {} after a Redis outage: answers stored before it are no longer "
        "served",
        epoch_key, reply->integer);
    return true;
  }

  // INCR of every pending generation key that Redis now takes.
  void Replay() {
    std::lock_guard lock(mu);
    for (auto it = generation_keys.begin(); it != generation_keys.end();) {
      if (!redis->Command({"INCR", *it}).ok()) return;  // still down: keep the rest
      it = generation_keys.erase(it);
    }
  }

  // The recovery listener: the epoch first, so that no replica serves a pre-outage answer
  // between this replica's return and its replay.
  void Recover() {
    if (BumpEpoch()) Replay();
  }

  bool Contains(std::string_view generation_key) {
    std::lock_guard lock(mu);
    return generation_keys.contains(generation_key);
  }
  bool Empty() {
    std::lock_guard lock(mu);
    return generation_keys.empty();
  }
};

namespace {

// Keeps the keys short and free of whatever a scope or a namespace may contain.
std::string ShortDigest(std::string_view text) { return text::Sha256Hex(text).substr(0, 16); }

}  // namespace

ResultCache::ResultCache(ResultCacheOptions options)
    : options_(std::move(options)),
      enabled_(options_.max_entries > 0 && options_.ttl > std::chrono::milliseconds(0)),
      lookups_(internal::RegisterLookupCounters(options_.registry, options_.name)) {
  auto counter = [&](std::string_view name, std::string_view help) {
    return internal::RegisterCacheCounter(internal::RegistryOrDefault(options_.registry), name,
                                          help, options_.name);
  };
  evictions_ = counter("mann_cache_evictions_total",
                       "In-process cache entries dropped to make room (least recently used).");
  invalidations_ = counter("mann_cache_invalidations_total",
                           "Namespace invalidations (a write made the cached answers stale).");

  if (options_.redis != nullptr) {
    shared_state_ = std::make_shared<SharedState>();
    shared_state_->redis = options_.redis;
    shared_state_->epoch_key = EpochKey();
    std::weak_ptr<SharedState> weak = shared_state_;
    options_.redis->OnRecovery([weak] {
      if (auto state = weak.lock()) state->Recover();
    });
  }
}

ResultCache::~ResultCache() = default;

std::string ResultCache::ScopeTag() const {
  return options_.scope.empty() ? "shared" : ShortDigest(options_.scope);
}

std::string ResultCache::GenerationKey(std::string_view ns) const {
  return fmt::format("{}gen:{}:{}", options_.key_prefix, ScopeTag(), ns);
}

std::string ResultCache::EpochKey() const {
  return fmt::format("{}epoch:{}", options_.key_prefix, ScopeTag());
}

ResultCache::Clock::time_point ResultCache::Now() const {
  return options_.clock ? options_.clock() : Clock::now();
}

std::optional<std::string> ResultCache::Lookup(std::string_view ns, std::string_view request_key,
                                               Ticket& ticket) {
  ticket = Ticket{};
  if (!enabled_) return std::nullopt;
  auto count = [](metrics::Counter* c) {
    if (c != nullptr) c->Inc();
  };

  if (!shared()) {
    std::lock_guard lock(mu_);
    const std::uint64_t generation = local_generations_[std::string(ns)];
    std::string key = fmt::format("{}\n{}\n{}", ns, generation, request_key);
    auto it = index_.find(key);
    if (it != index_.end() && it->second->expires > Now()) {
      order_.splice(order_.begin(), order_, it->second);
      count(lookups_.hits);
      return it->second->value;
    }
    if (it != index_.end()) {  // expired
      order_.erase(it->second);
      index_.erase(it);
    }
    count(lookups_.misses);
    ticket.key = std::move(key);
    ticket.storable = true;
    return std::nullopt;
  }

  // Shared. After an outage of this replica's client, the epoch moves before anything is read:
  // the client is up again before its recovery listener has run.
  SharedState& state = *shared_state_;
  const std::uint64_t outages = options_.redis->outages();
  if (!state.EpochCovers(outages) && !state.BumpEpoch()) {
    count(lookups_.bypassed);
    return std::nullopt;
  }
  // An invalidation that did not reach Redis keeps its namespace out of the cache.
  const std::string generation_key = GenerationKey(ns);
  if (!state.Empty()) state.Replay();
  if (state.Contains(generation_key)) {
    count(lookups_.bypassed);
    return std::nullopt;
  }
  // The generation and the epoch in one round trip, as a lookup took before there was an epoch.
  Result<RedisReply> read = options_.redis->Command({"MGET", generation_key, state.epoch_key});
  if (!read.ok() || read->type != RedisReply::Type::kArray || read->elements.size() != 2) {
    count(lookups_.bypassed);
    return std::nullopt;
  }
  auto number = [](const RedisReply& reply) -> std::string_view {
    return reply.type == RedisReply::Type::kString ? std::string_view(reply.text) : "0";
  };
  const std::string value_key =
      fmt::format("{}cache:{}:{}:{}", options_.key_prefix, options_.name, ScopeTag(),
                  text::Sha256Hex(fmt::format("{}\n{}\n{}\n{}", ns, number(read->elements[0]),
                                              number(read->elements[1]), request_key)));
  Result<RedisReply> value = options_.redis->Command({"GET", value_key});
  if (!value.ok() || value->is_error()) {
    count(lookups_.bypassed);
    return std::nullopt;
  }
  // An outage that began and ended since the check above may have let the MGET read the epoch
  // before this replica's bump: neither serve nor store what it found.
  if (options_.redis->outages() != outages) {
    count(lookups_.bypassed);
    return std::nullopt;
  }
  if (value->type == RedisReply::Type::kString) {
    count(lookups_.hits);
    return std::move(value->text);
  }
  count(lookups_.misses);
  ticket.key = value_key;
  ticket.storable = true;
  return std::nullopt;
}

void ResultCache::Store(const Ticket& ticket, std::string value) {
  if (!enabled_ || !ticket.storable) return;
  if (shared()) {
    // A failure is the client's to count and log; the answer was served all the same.
    (void)options_.redis->Command(
        {"SET", ticket.key, value, "PX", std::to_string(options_.ttl.count())});
    return;
  }

  std::lock_guard lock(mu_);
  const Clock::time_point expires = Now() + options_.ttl;
  if (auto it = index_.find(ticket.key); it != index_.end()) {
    it->second->value = std::move(value);
    it->second->expires = expires;
    order_.splice(order_.begin(), order_, it->second);
    return;
  }
  order_.push_front({ticket.key, std::move(value), expires});
  index_.emplace(ticket.key, order_.begin());
  while (order_.size() > options_.max_entries) {
    index_.erase(order_.back().key);
    order_.pop_back();
    if (evictions_ != nullptr) evictions_->Inc();
  }
}

void ResultCache::InvalidateNamespace(std::string_view ns) {
  if (!enabled_) return;
  if (invalidations_ != nullptr) invalidations_->Inc();
  if (!shared()) {
    // Entries of older generations stay until LRU or TTL removes them: finding them would cost a
    // scan of the whole cache on every write.
    std::lock_guard lock(mu_);
    ++local_generations_[std::string(ns)];
    return;
  }
  const std::string generation_key = GenerationKey(ns);
  Result<RedisReply> reply = options_.redis->Command({"INCR", generation_key});
  // Not sent: this replica saw an outage, so it bumps the epoch when Redis is back, before the
  // replay. If it alone lost Redis (a partition) the others did not, and they invalidate for
  // it: only replicas of one database share a scope, and each applies the others' writes from
  // the database's change log (runtime::ReplicaFollower), invalidating the namespace in Redis
  // as it does, whether or not this process lives to replay.
  if (!reply.ok() || reply->is_error()) {
    std::lock_guard lock(shared_state_->mu);
    shared_state_->generation_keys.insert(generation_key);
  }
}

std::size_t ResultCache::local_size() const {
  std::lock_guard lock(mu_);
  return order_.size();
}

}  // namespace mann::cache
