// AlertLock: which of several replicas watching one database sends a given alert's
// notifications, and how a copy another replica withheld still goes out when that replica dies
// before delivering it.
//
// Each replica's monitor raises the same alert (same dedup key) at about the same time. The key
// <prefix>alert:<dedup key> names the replica that delivers it; Decide runs one small Lua script
// that takes the key when it is free (`SET key <replica> PX <ttl>`, as `SET ... NX` would) or
// re-takes it when this replica holds it already, so the renotify and the resolve of an alert it
// paged usually come from it too. A holder that dies loses the lock when the TTL runs out.
//
// Confirmation. Once the holder has durably handed an event over (enqueued in the pager's
// outbox), Confirm rewrites the value as "<replica> delivered <stage> <at ms>", keeping the TTL,
// and only while this replica still holds the key. Re-taking the key for a later event writes
// the bare "<replica>" again: the value always speaks of the holder's latest event.
//
// The other replicas' copies. A replica that finds the key held by another withholds its copy
// and keeps it (monitor::AlertEngine's pending list) to ask again at its next evaluations, with
// `retry` set:
//   the key holds a confirmation that covers the copy  -> drop it, someone paged it
//   the key is held by another, without such a confirmation  -> keep waiting
//   the key is gone (the holder died, the TTL ran out)  -> take it, deliver the copy, confirm
// A confirmation covers an event when it is of the same stage and at most one TTL older (the
// holder's copy of the same event: the TTL covers the spread between the replicas' evaluations),
// or of the same or a later stage and not older (trigger < renotify < resolve: a later reminder
// or the resolve already went out, so a late copy would only reopen the alert). The caller gives
// up on a copy after max_wait() (three TTLs: the key of a dead holder is gone after one) and
// calls GiveUp, which logs and counts it.
//
// The lock is per alert, not per event, so the rule is a judgement: when a holder dies right
// after confirming a reminder, the others' reminders of the next TTL count as covered by it and
// are skipped (the alert did page); an alert that resolves and fires again within one TTL can
// likewise have its second trigger taken for the first. Apart from these, an event whose
// holder dies before confirming it is taken over.
//
//   cache::AlertLock lock({.redis = redis, .replica = "web-1:4242", .ttl = 60s});
//   switch (lock.Decide({.dedup_key = key, .stage = AlertStage::kTrigger, .at_ms = now})) ...
//   ... after enqueueing a delivered event: lock.Confirm(same event);
//
// The TTL should cover the spread between the replicas' evaluations of one event (two monitor
// intervals is the default the server uses) and stay below the renotify intervals, so that a
// reminder is one more race that exactly one replica wins. Replicas' clocks are assumed to agree
// to well within a TTL (NTP).
//
// Redis down: every event is let through (a duplicate page is better than none) and counted.
// Metric: mann_alert_lock_decisions_total{result}, result being
//   acquired             this replica took the lock and delivers
//   held                 this replica already held it and delivers
//   withheld             another replica holds it: this one keeps its copy back and asks again
//   waiting              asked again: still held by another and not confirmed for the copy
//   confirmed_elsewhere  another replica confirmed the event: this one drops its copy
//   taken_over           asked again and the lock was free (its holder died before confirming):
//                        this one delivers its copy late
//   gave_up              a withheld copy dropped unconfirmed after max_wait (or a full list)
//   unavailable          Redis could not be asked: this one delivers
//
// Thread-safety: every member is safe to call concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <mann/cache/redis.h>

namespace mann::metrics {
class Counter;
class Registry;
}  // namespace mann::metrics

namespace mann::cache {

struct AlertLockOptions {
  std::shared_ptr<RedisClient> redis = {};  // required
  std::string key_prefix = "mann:";
  // This process's name in the lock; empty: DefaultReplicaName(). Spaces become '_', as the
  // value separates its fields with them.
  std::string replica = {};
  std::chrono::milliseconds ttl{std::chrono::minutes(1)};
  metrics::Registry* registry = nullptr;  // nullptr: metrics::Registry::Default()
};

// "<host name>:<process id>", unique among processes that run at the same time.
std::string DefaultReplicaName();

// Where in its alert's lifecycle an event is, in lifecycle order.
enum class AlertStage { kTrigger, kRenotify, kResolve };

// "trigger", "renotify", "resolve".
std::string_view AlertStageName(AlertStage stage);

// One alert event as the lock sees it.
struct AlertLockEvent {
  std::string dedup_key;
  AlertStage stage = AlertStage::kTrigger;
  std::int64_t at_ms = 0;  // when the event happened on this replica, Unix milliseconds
  bool retry = false;      // asked again for a copy withheld earlier
};

enum class AlertLockDecision {
  kDeliver,             // deliver it now, then Confirm
  kWithhold,            // another replica holds the lock: keep the copy and ask again later
  kDeliveredElsewhere,  // another replica confirmed it: drop the copy
};

class AlertLock {
 public:
  explicit AlertLock(AlertLockOptions options);

  // What this replica does with `event` (see above).
  AlertLockDecision Decide(const AlertLockEvent& event);

  // Marks the lock "delivered" for `event`, which Decide let through and which is now durably
  // handed over; nothing when this replica no longer holds the lock or Redis cannot be asked
  // (the others then take over after the TTL: a duplicate, not a loss).
  void Confirm(const AlertLockEvent& event);

  // Logs and counts a withheld copy that the caller drops unconfirmed.
  void GiveUp(const AlertLockEvent& event, std::string_view reason);

  // How long a withheld copy should wait for a confirmation or a free lock: three TTLs.
  std::chrono::milliseconds max_wait() const { return 3 * options_.ttl; }
  const std::string& replica() const { return options_.replica; }

 private:
  std::string KeyOf(const AlertLockEvent& event) const;

  AlertLockOptions options_;
  metrics::Counter* acquired_ = nullptr;
  metrics::Counter* held_ = nullptr;
  metrics::Counter* withheld_ = nullptr;
  metrics::Counter* waiting_ = nullptr;
  metrics::Counter* confirmed_elsewhere_ = nullptr;
  metrics::Counter* taken_over_ = nullptr;
  metrics::Counter* gave_up_ = nullptr;
  metrics::Counter* unavailable_ = nullptr;
};

}  // namespace mann::cache
