#include <algorithm>
#include <charconv>
#include <optional>
#include <vector>

#include <fmt/format.h>
#include <unistd.h>

#include <mann/cache/alert_lock.h>
#include <mann/core/log.h>
#include <mann/metrics/registry.h>

namespace mann::cache {
namespace {

// KEYS[1] the alert's lock, ARGV[1] this replica, ARGV[2] the TTL in ms. Takes a free key or
// re-takes this replica's own (marking the new event unconfirmed and renewing the TTL) in one
// step, so no other replica's hold is ever overwritten. Replies {"acquired"}, {"held"} or
// {"other", <value>}.
constexpr std::string_view kDecideScript = R"lua(
local value = redis.call('GET', KEYS[1])
if not value then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {'acquired'}
end
if string.match(value, '^[^ ]+') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {'held'}
end
return {'other', value}
)lua";

// KEYS[1] the alert's lock, ARGV[1] this replica, ARGV[2] the confirmed value. Writes it, with
// the TTL kept, only while this replica holds the key. Replies 1 when written, else 0.
constexpr std::string_view kConfirmScript = R"lua(
local value = redis.call('GET', KEYS[1])
if value and string.match(value, '^[^ ]+') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
)lua";

struct Confirmation {
  AlertStage stage;
  std::int64_t at_ms;
};

std::optional<AlertStage> ParseStage(std::string_view name) {
  for (AlertStage stage : {AlertStage::kTrigger, AlertStage::kRenotify, AlertStage::kResolve}) {
    if (AlertStageName(stage) == name) return stage;
  }
  return std::nullopt;
}

// "<replica> delivered <stage> <at ms>"; std::nullopt for a bare "<replica>" (not confirmed) or
// anything else.
std::optional<Confirmation> ParseConfirmation(std::string_view value) {
  std::vector<std::string_view> fields;
  while (!value.empty() && fields.size() < 5) {
    const std::size_t space = value.find(' ');
    fields.push_back(value.substr(0, space));
    value = space == std::string_view::npos ? std::string_view() : value.substr(space + 1);
  }
  if (fields.size() != 4 || fields[1] != "delivered") return std::nullopt;
  std::optional<AlertStage> stage = ParseStage(fields[2]);
  std::int64_t at_ms = 0;
  const auto [end, error] =
      std::from_chars(fields[3].data(), fields[3].data() + fields[3].size(), at_ms);
  if (!stage || error != std::errc() || end != fields[3].data() + fields[3].size()) {
    return std::nullopt;
  }
  return Confirmation{*stage, at_ms};
}

// The rule of the header: the holder's copy of the same event, or a later stage not older.
bool Covers(const Confirmation& confirmed, const AlertLockEvent& event,
            std::chrono::milliseconds ttl) {
  if (confirmed.stage < event.stage) return false;
  const std::int64_t slack = confirmed.stage == event.stage ? ttl.count() : 0;
  return confirmed.at_ms >= event.at_ms - slack;
}

}  // namespace

std::string DefaultReplicaName() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return fmt::format("{}:{}", host[0] != '\0' ? host : "unknown-host", ::getpid());
}

std::string_view AlertStageName(AlertStage stage) {
  switch (stage) {
    case AlertStage::kTrigger:
      return "trigger";
    case AlertStage::kRenotify:
      return "renotify";
    case AlertStage::kResolve:
      return "resolve";
  }
  return "trigger";
}

AlertLock::AlertLock(AlertLockOptions options) : options_(std::move(options)) {
  if (options_.replica.empty()) options_.replica = DefaultReplicaName();
  std::replace(options_.replica.begin(), options_.replica.end(), ' ', '_');
  if (options_.ttl < std::chrono::milliseconds(1)) options_.ttl = std::chrono::milliseconds(1);
  metrics::Registry& registry =
      options_.registry != nullptr ? *options_.registry : metrics::Registry::Default();
  auto family = registry.AddCounter(
      "mann_alert_lock_decisions_total",
      "Alert events by what the cluster-wide alert lock decided: acquired, held, withheld "
      "(another replica delivers), waiting (asked again, still unconfirmed), "
      "confirmed_elsewhere (copy dropped), taken_over (holder died: delivered late), gave_up "
      "(copy dropped unconfirmed) or unavailable (Redis down: delivered anyway).",
      {"result"});
  if (!family.ok()) {
    log::Get("monitor")->error("alert lock decisions will not be counted: {}",
                               family.status().ToString());
    return;
  }
  acquired_ = &(*family)->WithLabels({"acquired"});
  held_ = &(*family)->WithLabels({"held"});
  withheld_ = &(*family)->WithLabels({"withheld"});
  waiting_ = &(*family)->WithLabels({"waiting"});
  confirmed_elsewhere_ = &(*family)->WithLabels({"confirmed_elsewhere"});
  taken_over_ = &(*family)->WithLabels({"taken_over"});
  gave_up_ = &(*family)->WithLabels({"gave_up"});
  unavailable_ = &(*family)->WithLabels({"unavailable"});
}

std::string AlertLock::KeyOf(const AlertLockEvent& event) const {
  return options_.key_prefix + "alert:" + event.dedup_key;
}

AlertLockDecision AlertLock::Decide(const AlertLockEvent& event) {
  auto decide = [](metrics::Counter* counter, AlertLockDecision decision) {
    if (counter != nullptr) counter->Inc();
    return decision;
  };
  Result<RedisReply> reply =
      options_.redis->Command({"EVAL", kDecideScript, "1", KeyOf(event), options_.replica,
                               std::to_string(options_.ttl.count())});
  if (!reply.ok() || reply->type != RedisReply::Type::kArray || reply->elements.empty()) {
    if (reply.ok()) {
      log::Get("monitor")->warn("alert lock answer unexpected dedup_key={} reply={}: delivering",
                                event.dedup_key, reply->text);
    }
    return decide(unavailable_, AlertLockDecision::kDeliver);
  }
  const std::string& outcome = reply->elements[0].text;
  if (outcome == "acquired") {
    if (event.retry) {
      log::Get("monitor")->warn(
          "alert event taken over dedup_key={} kind={}: the replica that held its lock never "
          "confirmed it, delivering this replica's copy",
          event.dedup_key, AlertStageName(event.stage));
      return decide(taken_over_, AlertLockDecision::kDeliver);
    }
    return decide(acquired_, AlertLockDecision::kDeliver);
  }
  if (outcome == "held") return decide(held_, AlertLockDecision::kDeliver);

  const std::string value = reply->elements.size() > 1 ? reply->elements[1].text : "";
  if (std::optional<Confirmation> confirmed = ParseConfirmation(value);
      confirmed && Covers(*confirmed, event, options_.ttl)) {
    log::Get("monitor")->debug("alert event dropped dedup_key={} kind={}: lock says \"{}\"",
                               event.dedup_key, AlertStageName(event.stage), value);
    return decide(confirmed_elsewhere_, AlertLockDecision::kDeliveredElsewhere);
  }
  log::Get("monitor")->debug("alert event withheld dedup_key={} kind={}: lock says \"{}\"",
                             event.dedup_key, AlertStageName(event.stage), value);
  return decide(event.retry ? waiting_ : withheld_, AlertLockDecision::kWithhold);
}

void AlertLock::Confirm(const AlertLockEvent& event) {
  const std::string confirmed =
      fmt::format("{} delivered {} {}", options_.replica, AlertStageName(event.stage), event.at_ms);
  Result<RedisReply> reply = options_.redis->Command(
      {"EVAL", kConfirmScript, "1", KeyOf(event), options_.replica, confirmed});
  if (!reply.ok() || reply->is_error() || reply->integer != 1) {
    log::Get("monitor")->debug(
        "alert delivery not confirmed dedup_key={} kind={} reason={}: another replica may "
        "deliver its copy too",
        event.dedup_key, AlertStageName(event.stage),
        !reply.ok() ? reply.status().ToString()
                    : (reply->is_error() ? reply->text : "lock no longer held"));
  }
}

void AlertLock::GiveUp(const AlertLockEvent& event, std::string_view reason) {
  log::Get("monitor")->warn(
      "alert event given up dedup_key={} kind={} reason=\"{}\": no replica confirmed delivering "
      "it; check the outbox of the replica named in {}",
      event.dedup_key, AlertStageName(event.stage), reason, KeyOf(event));
  if (gave_up_ != nullptr) gave_up_->Inc();
}

}  // namespace mann::cache
