// AlertLock: which of several replicas watching one database sends a given alert's
// notifications. Each replica's monitor raises the same alert (same dedup key) at about the
// same time; the first to ask takes `SET <prefix>alert:<dedup key> <replica> NX PX <ttl>` and
// delivers, the others see the key held by someone else and withhold their copy. The holder
// asking again within the TTL is let through and extends the TTL, so the resolve of an alert it
// paged usually comes from it too; a holder that dies loses the lock when the TTL runs out.
//
//   cache::AlertLock lock({.redis = redis, .replica = "web-1:4242", .ttl = 60s});
//   monitor_options.may_notify = [&lock](const std::string& key) { return lock.MayNotify(key); };
//
// The TTL should cover the spread between the replicas' evaluations of one event (two monitor
// intervals is the default the server uses) and stay below the renotify intervals, so that a
// reminder is one more race that exactly one replica wins.
//
// TODO(#6): an event withheld because another replica holds the lock is not delivered later if
// that holder dies before delivering it (its outbox row is durable, but a holder that crashes
// between taking the lock and enqueueing loses the event, and the other replica's copy was
// already withheld). Delivery after a confirmed enqueue would need the lock to carry the event.
//
// Redis down: every event is let through (a duplicate page is better than none) and counted.
// Metric: mann_alert_lock_decisions_total{result}, result being
//   acquired     this replica took the lock and delivers
//   held         this replica already held it and delivers
//   withheld     another replica holds it: this one does not deliver
//   unavailable  Redis could not be asked: this one delivers
//
// Thread-safety: MayNotify is safe to call concurrently.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <mann/cache/redis.h>

namespace mann::metrics {
class Counter;
class Registry;
}  // namespace mann::metrics

namespace mann::cache {

struct AlertLockOptions {
  std::shared_ptr<RedisClient> redis = {};  // required
  std::string key_prefix = "mann:";
  std::string replica = {};  // this process's name in the lock; empty: DefaultReplicaName()
  std::chrono::milliseconds ttl{std::chrono::minutes(1)};
  metrics::Registry* registry = nullptr;  // nullptr: metrics::Registry::Default()
};

// "<host name>:<process id>", unique among processes that run at the same time.
std::string DefaultReplicaName();

class AlertLock {
 public:
  explicit AlertLock(AlertLockOptions options);

  // True when this replica should deliver the event of the alert `dedup_key`.
  bool MayNotify(const std::string& dedup_key);

  const std::string& replica() const { return options_.replica; }

 private:
  AlertLockOptions options_;
  metrics::Counter* acquired_ = nullptr;
  metrics::Counter* held_ = nullptr;
  metrics::Counter* withheld_ = nullptr;
  metrics::Counter* unavailable_ = nullptr;
};

}  // namespace mann::cache
