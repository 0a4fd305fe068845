#include <set>

#include <fmt/format.h>

#include <mann/cache/result_cache.h>
#include <mann/core/log.h>
#include <mann/metrics/registry.h>
#include <mann/text/analyzer.h>

namespace mann::cache {

struct ResultCache::Pending {
  std::shared_ptr<RedisClient> redis;
  std::mutex mu;
  std::set<std::string, std::less<>> generation_keys;  // guarded by mu

  // INCR of every pending generation key that Redis now takes.
  void Replay() {
    std::lock_guard lock(mu);
    for (auto it = generation_keys.begin(); it != generation_keys.end();) {
      if (!redis->Command({"INCR", *it}).ok()) return;  // still down: keep the rest
      it = generation_keys.erase(it);
    }
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
      enabled_(options_.max_entries > 0 && options_.ttl > std::chrono::milliseconds(0)) {
  metrics::Registry& registry =
      options_.registry != nullptr ? *options_.registry : metrics::Registry::Default();
  auto log = log::Get("cache");
  if (auto family = registry.AddCounter("mann_cache_requests_total",
                                        "Cache lookups, by cache and result (hit or miss).",
                                        {"cache", "result"});
      family.ok()) {
    hits_ = &(*family)->WithLabels({options_.name, "hit"});
    misses_ = &(*family)->WithLabels({options_.name, "miss"});
  } else {
    log->error("cache lookups will not be counted: {}", family.status().ToString());
  }
  auto counter = [&](const char* name, const char* help) -> metrics::Counter* {
    auto family = registry.AddCounter(name, help, {"cache"});
    if (!family.ok()) {
      log->error("{} will not be counted: {}", name, family.status().ToString());
      return nullptr;
    }
    return &(*family)->WithLabels({options_.name});
  };
  bypassed_ = counter("mann_cache_bypassed_total",
                      "Cache lookups that skipped the shared cache because Redis was down.");
  evictions_ = counter("mann_cache_evictions_total",
                       "In-process cache entries dropped to make room (least recently used).");
  invalidations_ = counter("mann_cache_invalidations_total",
                           "Namespace invalidations (a write made the cached answers stale).");

  if (options_.redis != nullptr) {
    pending_ = std::make_shared<Pending>();
    pending_->redis = options_.redis;
    std::weak_ptr<Pending> weak = pending_;
    options_.redis->OnRecovery([weak] {
      if (auto pending = weak.lock()) pending->Replay();
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
      count(hits_);
      return it->second->value;
    }
    if (it != index_.end()) {  // expired
      order_.erase(it->second);
      index_.erase(it);
    }
    count(misses_);
    ticket.key = std::move(key);
    ticket.storable = true;
    return std::nullopt;
  }

  // Shared: an invalidation that did not reach Redis keeps its namespace out of the cache.
  const std::string generation_key = GenerationKey(ns);
  if (!pending_->Empty()) pending_->Replay();
  if (pending_->Contains(generation_key)) {
    count(bypassed_);
    return std::nullopt;
  }
  Result<RedisReply> generation = options_.redis->Command({"GET", generation_key});
  if (!generation.ok() || generation->is_error()) {
    count(bypassed_);
    return std::nullopt;
  }
  const std::string value_key = fmt::format(
      "{}cache:{}:{}:{}", options_.key_prefix, options_.name, ScopeTag(),
      text::Sha256Hex(fmt::format("{}\n{}\n{}", ns, generation->is_nil() ? "0" : generation->text,
                                  request_key)));
  Result<RedisReply> value = options_.redis->Command({"GET", value_key});
  if (!value.ok() || value->is_error()) {
    count(bypassed_);
    return std::nullopt;
  }
  if (value->type == RedisReply::Type::kString) {
    count(hits_);
    return std::move(value->text);
  }
  count(misses_);
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
  // TODO(#6): a pending invalidation lives in this process only. Other replicas may serve the
  // namespace's pre-outage answers between Redis's return and this replica's replay (at most
  // one reconnection backoff, 5 s), and for up to cache.ttl if this process exits first. A
  // generation bump by whichever replica first sees Redis back would close both gaps.
  if (!reply.ok() || reply->is_error()) {
    std::lock_guard lock(pending_->mu);
    pending_->generation_keys.insert(generation_key);
  }
}

std::size_t ResultCache::local_size() const {
  std::lock_guard lock(mu_);
  return order_.size();
}

}  // namespace mann::cache
