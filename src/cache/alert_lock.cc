#include <fmt/format.h>
#include <unistd.h>

#include <mann/cache/alert_lock.h>
#include <mann/core/log.h>
#include <mann/metrics/registry.h>

namespace mann::cache {

std::string DefaultReplicaName() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return fmt::format("{}:{}", host[0] != '\0' ? host : "unknown-host", ::getpid());
}

AlertLock::AlertLock(AlertLockOptions options) : options_(std::move(options)) {
  if (options_.replica.empty()) options_.replica = DefaultReplicaName();
  if (options_.ttl < std::chrono::milliseconds(1)) options_.ttl = std::chrono::milliseconds(1);
  metrics::Registry& registry =
      options_.registry != nullptr ? *options_.registry : metrics::Registry::Default();
  auto family = registry.AddCounter(
      "mann_alert_lock_decisions_total",
      "Alert events by what the cluster-wide alert lock decided: acquired, held, withheld "
      "(another replica delivers) or unavailable (Redis down: delivered anyway).",
      {"result"});
  if (!family.ok()) {
    log::Get("monitor")->error("alert lock decisions will not be counted: {}",
                               family.status().ToString());
    return;
  }
  acquired_ = &(*family)->WithLabels({"acquired"});
  held_ = &(*family)->WithLabels({"held"});
  withheld_ = &(*family)->WithLabels({"withheld"});
  unavailable_ = &(*family)->WithLabels({"unavailable"});
}

bool AlertLock::MayNotify(const std::string& dedup_key) {
  auto decide = [](metrics::Counter* counter, bool deliver) {
    if (counter != nullptr) counter->Inc();
    return deliver;
  };
  const std::string key = options_.key_prefix + "alert:" + dedup_key;
  const std::string ttl = std::to_string(options_.ttl.count());

  Result<RedisReply> set = options_.redis->Command({"SET", key, options_.replica, "NX", "PX", ttl});
  if (!set.ok() || set->is_error()) return decide(unavailable_, true);
  if (set->type == RedisReply::Type::kStatus) return decide(acquired_, true);

  // Taken: by us, in an earlier event of this alert, or by another replica. The GET and the
  // PEXPIRE are two steps, so the lock may expire in between; then at worst two replicas
  // deliver once, never none.
  Result<RedisReply> holder = options_.redis->Command({"GET", key});
  if (!holder.ok() || holder->is_error()) return decide(unavailable_, true);
  // Expired since the SET: nobody holds it, so deliver rather than risk that nobody does.
  if (holder->is_nil()) return decide(acquired_, true);
  if (holder->type == RedisReply::Type::kString && holder->text == options_.replica) {
    (void)options_.redis->Command({"PEXPIRE", key, ttl});
    return decide(held_, true);
  }
  log::Get("monitor")->debug("alert event withheld dedup_key={}: replica {} delivers it", dedup_key,
                             holder->text);
  return decide(withheld_, false);
}

}  // namespace mann::cache
